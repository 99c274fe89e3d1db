"""Compile options by problem size (overgmm._xla): which build a call compiles."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from overgmm import chunks as C
from overgmm import streaming
from overgmm._xla import FAST_COMPILE, LIGHT_ROWS, SMALL_ROWS, compile_options, jit_by_rows, small
from test_streaming import students


def _double():
    """A new function per test: jit's caches are shared by every wrapper of one function."""
    return lambda x: 2.0 * x


def test_rows_pick_the_build_and_data_rows_overrides_them():
    f = jit_by_rows(lambda x: x.shape[0])(_double())
    x = jnp.arange(8.0)
    np.testing.assert_array_equal(f(x), 2 * x)
    assert (f.fast._cache_size(), f.full._cache_size()) == (1, 0)
    # a chunk of 8 rows of data with more than SMALL_ROWS rows: the optimised build
    np.testing.assert_array_equal(f(x, data_rows=SMALL_ROWS + 1), 2 * x)
    assert (f.fast._cache_size(), f.full._cache_size()) == (1, 1)
    # and the other way round: a large chunk of small data is never called so, but the
    # override decides alone
    f(jnp.arange(float(SMALL_ROWS + 1)), data_rows=4)
    assert f.fast._cache_size() == 2


def test_under_a_transformation_the_outer_program_decides():
    f = jit_by_rows(lambda x: x.shape[0])(_double())
    out = jax.jit(lambda x: f(x, data_rows=4) + 1.0)(jnp.ones(3))
    np.testing.assert_array_equal(out, np.full(3, 3.0))
    assert f.fast._cache_size() == 0  # traced inline, no program of its own
    assert float(jax.grad(lambda x: f(x).sum())(jnp.ones(2))[0]) == 2.0


def test_options_on_cpu():
    assert small(SMALL_ROWS) and not small(SMALL_ROWS + 1)
    assert compile_options(10) == FAST_COMPILE and compile_options(SMALL_ROWS + 1) is None
    assert SMALL_ROWS < LIGHT_ROWS and small(LIGHT_ROWS, LIGHT_ROWS) and not small(LIGHT_ROWS + 1, LIGHT_ROWS)


def test_light_programs_keep_the_fast_build_up_to_light_rows():
    """Between SMALL_ROWS and LIGHT_ROWS rows the solver's kind of program gets the optimised
    build and a light one (run once or twice per fit) the fast one; beyond, both optimised."""
    heavy = jit_by_rows(lambda x: x.shape[0])(_double())
    light = jit_by_rows(lambda x: x.shape[0], light=True)(_double())
    x = jnp.ones(4)
    for f in (heavy, light):
        f(x, data_rows=SMALL_ROWS + 1)
        f(x, data_rows=LIGHT_ROWS + 1)
    assert (heavy.fast._cache_size(), heavy.full._cache_size()) == (0, 1)
    assert (light.fast._cache_size(), light.full._cache_size()) == (1, 1)


def test_chunked_fit_of_large_data_in_small_chunks_keeps_the_optimised_build():
    """The per-chunk E-step of data over SMALL_ROWS rows compiles XLA's optimised build even
    when each chunk is small; small data in the same chunks compiles the fast one."""
    kernel = streaming._moments_kernel
    X = np.random.default_rng(0).normal(size=(SMALL_ROWS + 100, 2))
    S = students(X[:500], "diag", R=1, n=3)
    before = (kernel.fast._cache_size(), kernel.full._cache_size())
    streaming.statistics_sums(C.ArrayChunks(X, chunk_rows=4096), streaming.ALL, S)
    assert kernel.full._cache_size() == before[1] + 1
    assert kernel.fast._cache_size() == before[0]
    streaming.statistics_sums(C.ArrayChunks(X[:5000], chunk_rows=4096), streaming.ALL, S)
    assert kernel.fast._cache_size() == before[0] + 1


def test_the_suite_compiles_with_the_fast_build():
    """tests/conftest.py sets XLA_FLAGS to FAST_COMPILE's options before JAX starts (so it
    cannot import them): every option is there with its value."""
    if os.environ.get("OVERGMM_TEST_XLA_DEFAULTS") == "1":
        pytest.skip("OVERGMM_TEST_XLA_DEFAULTS=1: the suite runs with XLA's defaults")
    flags = dict(f.removeprefix("--").split("=", 1) for f in os.environ["XLA_FLAGS"].split() if "=" in f)
    assert {k: flags.get(k) for k in FAST_COMPILE} == {k: str(v).lower() for k, v in FAST_COMPILE.items()}
