"""Shared pytest setup: markers and a JAX configuration for every test."""

import os

# Tests run on CPU; eight fake devices let sharding tests build real meshes.
# Set before JAX initializes its backend (conftest is imported first).
os.environ.setdefault('JAX_PLATFORMS', 'cpu')


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: takes more than a few seconds; deselect with -m "not slow"')
