"""Suite-wide setup: float64 is switched on once, by importing overgmm, before any test.

After each test module, every compiled program the worker holds is dropped (JAX's
in-memory caches, the driver's loops, the programs loaded from the cache folder). A worker
that keeps every executable of the suite holds tens of thousands of memory mappings by the
end (40k seen), and XLA aborts when a process reaches the kernel's limit
(``vm.max_map_count``, 65530 by default): a native crash that pytest-xdist does not recover
from. The cache folder still serves later modules."""

import os

# Compilation is most of the suite's time (measured in the nineteenth session: XLA's backend
# compile 924 s and tracing 283 s of 1723 s of test time). Every test process, and every
# process a test starts, compiles with XLA's backend optimisation off and XLA:CPU's older
# loop emitters, the build the estimator already uses for small data (overgmm._xla): the
# same arithmetic, compiled faster (tests/test_xla.py checks the two stay the same). The
# quick reproductions, whose quadrature runs 2.5x slower so built, run in one new process
# per paper with the caller's own XLA_FLAGS (tests/experiments/conftest.py).
# OVERGMM_TEST_XLA_DEFAULTS=1 keeps XLA's defaults here.
# XLA reads XLA_FLAGS when JAX starts its backend, after this; pytest-xdist's workers
# inherit the variable, and OVERGMM_TEST_XLA_FLAGS keeps the caller's flags for them.
CALLER_XLA_FLAGS = os.environ.setdefault("OVERGMM_TEST_XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
if os.environ.get("OVERGMM_TEST_XLA_DEFAULTS") != "1":
    os.environ["XLA_FLAGS"] = f"{CALLER_XLA_FLAGS} {FAST_COMPILE_FLAGS}".strip()

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import overgmm  # noqa: E402, F401  (enables jax_enable_x64)
from overgmm import _mappings  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    yield
    _mappings.release()  # the driver's loops, the stored programs, JAX's caches
