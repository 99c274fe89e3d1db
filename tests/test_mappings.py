"""overgmm._mappings: compiled programs released before the process runs out of memory
mappings (a native crash of XLA), and the fit that follows one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import overgmm as og
from overgmm import _mappings, driver


@pytest.fixture
def counted(monkeypatch):
    """Pretend counts: ``counted[0]`` mappings of a limit of 1000; every call counts anew."""
    state = [0]
    monkeypatch.setattr(_mappings, "map_count", lambda: (state[0], 1000))
    monkeypatch.setattr(_mappings, "_last", [float("-inf")])
    released = []
    monkeypatch.setattr(_mappings, "_HOOKS", [*_mappings._HOOKS, lambda: released.append(1)])
    return state, released


def test_programs_are_released_past_half_the_limit_and_not_below(counted):
    state, released = counted
    f = jax.jit(lambda x: jnp.sin(x) * 3.0)
    f(jnp.arange(3.0))
    driver._CACHE["probe"] = object()
    state[0] = 400
    assert not _mappings.release_if_crowded(every=0.0)
    assert f._cache_size() == 1 and "probe" in driver._CACHE and not released
    state[0] = 600
    assert _mappings.release_if_crowded(every=0.0)
    assert f._cache_size() == 0 and not driver._CACHE and released == [1]
    # counted at most once per `every` seconds
    assert not _mappings.release_if_crowded(every=3600.0)
    assert released == [1]


def test_a_fit_after_a_release_is_the_same_fit(counted, rng):
    state, released = counted
    X = np.concatenate([rng.normal(size=(150, 2)), rng.normal(size=(150, 2)) + 6])
    a = og.OverparamGMM(random_state=0).fit(X)
    state[0] = 900
    _mappings._last[0] = float("-inf")
    b = og.OverparamGMM(random_state=0).fit(X)  # the fit releases first, then compiles again
    assert released and b.n_components_ == a.n_components_ == 2
    np.testing.assert_allclose(b.score_samples(X), a.score_samples(X), rtol=1e-12)


def test_the_count_is_read_on_linux():
    counted = _mappings.map_count()
    if counted is None:
        pytest.skip("no /proc/self/maps here")
    count, limit = counted
    assert 0 < count < limit
