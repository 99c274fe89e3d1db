"""Suite-wide setup: float64 is switched on once, by importing overgmm, before any test.

After each test module, every compiled program the worker holds is dropped (JAX's
in-memory caches, the driver's loops, the programs loaded from the cache folder). A worker
that keeps every executable of the suite holds tens of thousands of memory mappings by the
end (40k seen), and XLA aborts when a process reaches the kernel's limit
(``vm.max_map_count``, 65530 by default): a native crash that pytest-xdist does not recover
from. The cache folder still serves later modules."""

import numpy as np
import pytest

import overgmm  # noqa: F401  (enables jax_enable_x64)
from overgmm import _mappings


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    yield
    _mappings.release()  # the driver's loops, the stored programs, JAX's caches
