"""Compiled programs in the cache folder (overgmm._executables): what is stored, what is
loaded, and that a loaded program computes what the compiled one does."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from overgmm import _executables as E
from overgmm import _mappings
from overgmm._compilation_cache import AtomicFileCache


@pytest.fixture
def store(tmp_path, monkeypatch):
    s = AtomicFileCache(tmp_path / E.FOLDER)
    monkeypatch.setattr(E, "_store", lambda: s)
    return s


def entries(store):
    return sorted(p.name for p in store._path.iterdir() if not p.name.startswith("."))


def scaled_sum(x, w=None, *, power):
    """A module-level function: stored under its module and qualified name."""
    return {"total": jnp.sum(w * x**power), "rows": x.shape[0]}, x * 2


def no_compile(monkeypatch):
    """From here on, lowering anything fails the test (a program must be loaded)."""

    def refuse(*a, **k):
        raise AssertionError("compiled again instead of loaded")

    monkeypatch.setattr(jax.stages.Traced, "lower", refuse)


def test_a_program_is_stored_once_and_loaded_by_a_new_wrapper(store, monkeypatch):
    x, w = np.arange(4.0), np.ones(4)
    f = E.persistent(scaled_sum, static_argnames=("power",))
    out, doubled = f(x, w, power=2)
    assert float(out["total"]) == 14.0 and out["rows"] == 4
    np.testing.assert_array_equal(doubled, 2 * x)
    assert len(entries(store)) == 1 and f._cache_size() == 1
    f(x + 1.0, w, power=2)  # same shapes and static arguments: the same entry
    assert len(entries(store)) == 1 and f._cache_size() == 1

    # a new process's wrapper: loads the entry, traces and compiles nothing
    no_compile(monkeypatch)
    g = E.persistent(scaled_sum, static_argnames=("power",))
    out2, doubled2 = g(x, w, power=2)
    assert float(out2["total"]) == 14.0 and out2["rows"] == 4
    np.testing.assert_array_equal(doubled2, doubled)
    assert g._cache_size() == 1


def test_keys_separate_static_arguments_shapes_dtypes_and_structure(store):
    f = E.persistent(scaled_sum, static_argnames=("power",))
    f(np.arange(4.0), np.ones(4), power=2)
    f(np.arange(4.0), np.ones(4), power=3)
    assert float(f(np.arange(4.0), np.ones(4), power=3)[0]["total"]) == 36.0
    f(np.arange(5.0), np.ones(5), power=2)
    f(np.arange(4, dtype=np.int32), np.ones(4, np.int32), power=2)
    f(np.arange(4.0), np.ones(4), power=2)  # same as the first
    assert len(entries(store)) == 4
    f(np.arange(4.0), w=np.ones(4), power=2)  # the same leaves in another structure
    assert len(entries(store)) == 5
    f(np.arange(4.0), np.ones(4), power=2.0)  # a static argument equal to 2, of another type
    assert len(entries(store)) == 6


def test_closures_and_transformations_take_the_plain_jit(store):
    k = 3.0
    f = E.persistent(lambda x: k * x)
    np.testing.assert_array_equal(f(np.ones(2)), [3.0, 3.0])
    g = E.persistent(scaled_sum, static_argnames=("power",))
    inner = jax.jit(lambda x: g(x, jnp.ones(2), power=1)[0]["total"])(np.ones(2))
    assert float(inner) == 2.0
    assert float(jax.grad(lambda x: g(x, jnp.ones(2), power=2)[0]["total"])(jnp.ones(2))[0]) == 2.0
    assert entries(store) == []


def test_a_damaged_entry_is_compiled_and_stored_again(store, monkeypatch):
    f = E.persistent(scaled_sum, static_argnames=("power",))
    f(np.arange(3.0), np.ones(3), power=1)
    (name,) = entries(store)
    key = name.removesuffix(AtomicFileCache.SUFFIX)
    store._file(key).unlink()
    store.put(key, b"not a pickle")  # intact as a file, not a program
    g = E.persistent(scaled_sum, static_argnames=("power",))
    assert float(g(np.arange(3.0), np.ones(3), power=1)[0]["total"]) == 3.0
    assert store.get(key) not in (None, b"not a pickle")
    no_compile(monkeypatch)  # the entry written anew loads
    h = E.persistent(scaled_sum, static_argnames=("power",))
    assert float(h(np.arange(3.0), np.ones(3), power=1)[0]["total"]) == 3.0


def with_callback(x):
    return jax.pure_callback(lambda a: np.asarray(a) + 1.0, jax.ShapeDtypeStruct(x.shape, x.dtype), x)


def test_a_program_with_a_host_callback_is_not_stored(store):
    f = E.persistent(with_callback)
    np.testing.assert_array_equal(f(np.zeros(2)), [1.0, 1.0])
    (name,) = entries(store)
    assert store.get(name.removesuffix(AtomicFileCache.SUFFIX)) == E._NOT_STORED
    np.testing.assert_array_equal(E.persistent(with_callback)(np.zeros(2)), [1.0, 1.0])  # marker read


def test_release_drops_the_programs_and_the_next_call_loads_them(store, monkeypatch):
    f = E.persistent(scaled_sum, static_argnames=("power",))
    f(np.arange(3.0), np.ones(3), power=2)
    assert f._cache_size() >= 1
    _mappings.release()
    assert f._cache_size() == 0
    no_compile(monkeypatch)
    assert float(f(np.arange(3.0), np.ones(3), power=2)[0]["total"]) == 5.0
    assert f._cache_size() == 1


def in_a_new_process(script: str, cache) -> dict:
    """Run ``script`` in a fresh Python on the cache folder ``cache``; its last line's JSON."""
    env = {**os.environ, "OVERGMM_CACHE_DIR": str(cache), "OVERGMM_CACHE": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


COUNT = """
import jax
from overgmm import _executables as E
counts = {"loads": 0, "lowers": 0, "modules": 0}
_load, _lower = E._load, jax.stages.Traced.lower
def counted_module(event, seconds, **kwargs):  # every program lowered to MLIR, eager operations too
    counts["modules"] += event == "/jax/core/compile/jaxpr_to_mlir_module_duration"
jax.monitoring.register_event_duration_secs_listener(counted_module)
def counted_load(blob):
    out = _load(blob)
    counts["loads"] += 1
    return out
def counted_lower(self, *a, **k):
    counts["lowers"] += 1
    return _lower(self, *a, **k)
E._load, jax.stages.Traced.lower = counted_load, counted_lower
"""

LINALG = (
    COUNT
    + """
import json, sys
import jax, jax.numpy as jnp, numpy as np
import overgmm

def solve(a, b):
    c = jnp.linalg.cholesky(a)
    return jax.scipy.linalg.cho_solve((c, True), b), jnp.linalg.eigh(a)[0]

a = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]])
x, ev = E.persistent(solve, "test.solve")(a, np.ones(3))
print(json.dumps({"x": np.asarray(x).tolist(), "ev": np.asarray(ev).tolist(), **counts}))
"""
)


def test_a_new_process_loads_a_program_that_calls_lapack(tmp_path):
    """The second process lowers nothing, so no LAPACK kernel was registered when the
    program is loaded (before _custom_calls_ready: a segmentation fault)."""
    first = in_a_new_process(LINALG, tmp_path / "cache")
    stored = sorted(os.listdir(tmp_path / "cache" / E.FOLDER))
    second = in_a_new_process(LINALG, tmp_path / "cache")
    assert sorted(os.listdir(tmp_path / "cache" / E.FOLDER)) == stored  # nothing new
    assert (first["loads"], second["loads"], second["lowers"]) == (0, 1, 0)  # loaded, nothing lowered
    a = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]])
    np.testing.assert_allclose(first["x"], np.linalg.solve(a, np.ones(3)), rtol=1e-12)
    np.testing.assert_allclose(first["ev"], np.linalg.eigvalsh(a), rtol=1e-12)
    assert (second["x"], second["ev"]) == (first["x"], first["ev"])


FIT = (
    COUNT
    + """
import json, sys, time, warnings
import numpy as np
from sklearn.datasets import load_iris
from overgmm import OverparamGMM
warnings.simplefilter("ignore")
X = load_iris().data
t = time.perf_counter()
est = OverparamGMM(random_state=0).fit(X)
print(json.dumps({"seconds": time.perf_counter() - t, "lb": est.lower_bound_,
                  "k": int(est.n_components_), "type": est.covariance_type_,
                  "scores": est.score_samples(X[:5]).tolist(), **counts}))
"""
)


def test_a_second_process_loads_the_fit_and_fits_the_same(tmp_path):
    """Two fresh processes on one empty cache folder: the first stores the fit's compiled
    programs, the second loads them; both fit the same model to the last digit."""
    first = in_a_new_process(FIT, tmp_path / "cache")
    stored = list((tmp_path / "cache" / E.FOLDER).iterdir())
    assert len(stored) >= 10
    second = in_a_new_process(FIT, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / E.FOLDER).iterdir())) == len(stored)  # nothing new
    assert first["loads"] == 0 and second["loads"] == len(stored)  # every stored program loaded
    # and nothing else compiled: no eager operation either (a tolerance passed as
    # jnp.asarray(float) compiled a small program in every new process, 0.03-0.13 s)
    assert second["modules"] == 0 and first["modules"] >= len(stored)
    assert (second["lb"], second["k"], second["type"], second["scores"]) == (
        first["lb"],
        first["k"],
        first["type"],
        first["scores"],
    )


def test_python_numbers_are_keyed_as_weakly_typed(store):
    f = E.persistent(scaled_sum, static_argnames=("power",))
    assert float(f(np.arange(3.0), 2.0, power=1)[0]["total"]) == 6.0  # a Python float
    assert float(f(np.arange(3.0), np.float64(2.0), power=1)[0]["total"]) == 6.0  # a NumPy scalar
    assert len(entries(store)) == 2


def test_a_loaded_program_that_rejects_the_arguments_falls_back_to_jit(store, monkeypatch):
    f = E.persistent(scaled_sum, static_argnames=("power",))
    f(np.arange(3.0), np.ones(3), power=1)

    refused = []

    def refusing(*a, **k):
        refused.append(1)
        raise TypeError("this program takes other arguments")

    g = E.persistent(scaled_sum, static_argnames=("power",))
    monkeypatch.setattr(E, "_load", lambda blob: (refusing, jax.tree_util.tree_structure(0)))
    assert float(g(np.arange(3.0), np.ones(3), power=1)[0]["total"]) == 3.0
    assert float(g(np.arange(3.0), np.ones(3), power=1)[0]["total"]) == 3.0  # remembered: plain jit
    assert refused == [1]


def test_a_loaded_program_that_fails_when_run_is_compiled_and_stored_anew(store, monkeypatch):
    f = E.persistent(scaled_sum, static_argnames=("power",))
    f(np.arange(3.0), np.ones(3), power=1)
    (name,) = entries(store)
    key = name.removesuffix(AtomicFileCache.SUFFIX)
    stale = []

    def failing(*a, **k):
        stale.append(1)
        raise RuntimeError("Function broadcast_multiply_fusion not found")

    real = E._load
    monkeypatch.setattr(E, "_load", lambda blob: (failing, jax.tree_util.tree_structure(0)))
    before = store.get(key)
    g = E.persistent(scaled_sum, static_argnames=("power",))
    assert float(g(np.arange(3.0), np.ones(3), power=1)[0]["total"]) == 3.0
    assert stale == [1] and store.get(key) not in (None, before, E._NOT_STORED)  # replaced
    monkeypatch.setattr(E, "_load", real)
    no_compile(monkeypatch)
    h = E.persistent(scaled_sum, static_argnames=("power",))
    assert float(h(np.arange(3.0), np.ones(3), power=1)[0]["total"]) == 3.0


def test_a_key_that_holds_a_memory_address_is_never_stored(store):
    class Scale:  # no value-based repr: its text is an address, which another object may reuse
        def __init__(self, c):
            self.c = c

    def scaled(x, *, by):
        return x * by.c

    f = E.persistent(scaled, "test.scaled", static_argnames=("by",))
    assert float(f(np.ones(2), by=Scale(2.0))[0]) == 2.0
    assert float(f(np.ones(2), by=Scale(3.0))[0]) == 3.0
    assert entries(store) == []


def test_settings_that_change_the_traced_program_are_in_the_key(store):
    f = E.persistent(scaled_sum, static_argnames=("power",))
    f(np.arange(3.0), np.ones(3), power=1)
    with jax.default_matmul_precision("highest"):
        f(np.arange(3.0), np.ones(3), power=1)
    assert len(entries(store)) == 2
    with jax.disable_jit():
        assert float(f(np.arange(3.0), np.ones(3), power=1)[0]["total"]) == 3.0
    assert len(entries(store)) == 2


def test_precompile_holds_the_program_for_the_call(store, monkeypatch):
    f = E.persistent(scaled_sum, static_argnames=("power",))
    before = f._cache_size()  # the plain jit's programs of scaled_sum (shared with other tests)
    f.precompile(jax.ShapeDtypeStruct((3,), jnp.float64), jax.ShapeDtypeStruct((3,), jnp.float64), power=2)
    assert len(entries(store)) == 1 and f._cache_size() == before + 1
    no_compile(monkeypatch)
    assert float(f(np.arange(3.0), np.ones(3), power=2)[0]["total"]) == 5.0
