"""Shared pytest setup: markers and a JAX configuration for every test."""

import os
import tempfile

# Tests run on CPU. Set before JAX initializes its backend (conftest is
# imported first).
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Many tests build the same programs from fresh closures (a sampler per
# training run): a persistent compilation cache, shared by the xdist workers,
# compiles each once per machine.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), 'g2po_jax_test_xla_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: takes more than a few seconds; deselect with -m "not slow"')
