"""Shared pytest setup: markers, a JAX configuration for every test, fixtures."""

import os
import tempfile

import pytest

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


@pytest.fixture(name='qwen_dir', scope='session')
def _qwen_dir(tmp_path_factory):
  """The Qwen2.5 tokenizer directory, built once per test process."""
  from g2po_jax import qwen_tokenizer  # pylint: disable=g-import-not-at-top
  return qwen_tokenizer.qwen2_5_dir(str(tmp_path_factory.mktemp('cache')))
