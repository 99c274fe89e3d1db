"""The persistent compilation cache: on by default in the user cache folder, off on request."""

import os
import subprocess
import sys

SCRIPT = """
import jax.numpy as jnp, numpy as np, overgmm as og
X = jnp.asarray(np.random.default_rng(0).normal(size=(64, 2)))
og.solve(og.em(og.Problem.from_data(X)), og.Mixture([[0.0, 0.0], [1.0, 1.0]], covariance_type="diag"), max_steps=5)
print(og.COMPILATION_CACHE)
"""


def _run(tmp_path, **env):
    full = {**os.environ, "OVERGMM_CACHE_DIR": str(tmp_path / "cache"), **env}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=full, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_cache_is_written_to_the_user_folder(tmp_path):
    assert _run(tmp_path) == str(tmp_path / "cache")
    assert any((tmp_path / "cache").iterdir())


def test_cache_can_be_turned_off(tmp_path):
    assert _run(tmp_path, OVERGMM_CACHE="0") == "None"
    assert not (tmp_path / "cache").exists()


def test_entries_are_checked_and_written_whole(tmp_path):
    from overgmm._compilation_cache import AtomicFileCache, pack, unpack

    cache = AtomicFileCache(tmp_path)
    assert cache.get("k") is None
    cache.put("k", b"executable bytes")
    assert cache.get("k") == b"executable bytes"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # no temporary left behind
    whole = pack(b"x" * 1000)
    assert unpack(whole) == b"x" * 1000
    # a torn entry (cut short) and a corrupted one read as misses, never as bytes
    assert unpack(whole[:500]) is None
    assert unpack(whole[:-1] + b"y") is None
    (tmp_path / "torn-ogc").write_bytes(whole[:500])
    assert cache.get("torn") is None
    cache.put("torn", b"x" * 1000)  # a damaged entry is replaced by a whole one
    assert cache.get("torn") == b"x" * 1000


def test_the_cache_is_overgmms_atomic_one(tmp_path):
    script = (
        "import overgmm; from jax._src import compilation_cache as cc; "
        "print(type(cc._cache).__name__ if cc._cache is not None else None)"
    )
    full = {**os.environ, "OVERGMM_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", script], env=full, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "JaxCache"


FRESH = """
import os, sys
import jax, jax.numpy as jnp
import overgmm
from overgmm._compilation_cache import fresh_compilation
hits = []
jax.monitoring.register_event_listener(
    lambda event, **kw: hits.append(1) if event == "/jax/compilation_cache/cache_hits" else None)
def count():
    return sum(1 for p in os.listdir(sys.argv[1]) if p.endswith("-ogc"))
def triple(x):
    return x * 3.0 + 1.0
x = jnp.ones(5)
before = count()
jax.jit(triple).lower(x).compile()                 # outside: written
written = count() - before
jax.clear_caches()
with fresh_compilation() as fresh:
    jax.jit(triple).lower(x).compile()             # inside: not read ...
    jax.jit(lambda x: x * 5.0 + 2.0).lower(x).compile()  # ... and not written
inside = (count() - before - written, len(hits))
jax.clear_caches()
jax.jit(triple).lower(x).compile()                 # outside again: read
print(fresh, written, *inside, len(hits))
"""


def test_a_fresh_compilation_skips_jax_s_cache(tmp_path):
    """Inside fresh_compilation nothing is read from or written to JAX's cache (what
    overgmm._executables stores must be compiled, not loaded); outside, as before."""
    env = {**os.environ, "OVERGMM_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-c", FRESH, str(tmp_path / "cache")], env=env, capture_output=True, text=True, check=True
    )
    # written outside; inside nothing written and nothing read; read outside again
    assert out.stdout.split() == ["True", "1", "0", "0", "1"]
    # a folder the user configured is JAX's own cache: nothing is promised there
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "theirs")}
    (tmp_path / "theirs").mkdir()
    out = subprocess.run(
        [sys.executable, "-c", FRESH, str(tmp_path / "theirs")], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[0] == "False"


FITS = """
import sys, warnings
import numpy as np
from overgmm import OverparamGMM
warnings.simplefilter("ignore")
rng = np.random.default_rng(int(sys.argv[1]))
for i in range(5):  # two covariance types: each process compiles (and writes) the same programs
    X = np.vstack([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 4])
    kind = ("diag", "spherical")[i % 2]
    g = OverparamGMM(n_components=3, covariance_type=kind, max_iter=10, merge_tol=0, random_state=i).fit(X)
    assert np.isfinite(g.score(X))
print("ok")
"""


def test_four_processes_share_an_empty_cache(tmp_path):
    """4 processes x 5 fits start at once on an empty folder: none crashes or reads a torn
    entry, and the folder holds only whole entries afterwards."""
    from overgmm._compilation_cache import unpack

    env = {**os.environ, "OVERGMM_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", FITS, str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for i in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
        assert out.decode().strip().endswith("ok")
    entries = [p for p in (tmp_path / "cache").rglob("*") if p.name.endswith("-ogc")]
    assert entries and all(unpack(p.read_bytes()) is not None for p in entries)
    assert any(p.parent.name == "executables" for p in entries)  # the stored programs too
    # a fifth process reads them all back and fits the same way
    out = subprocess.run([sys.executable, "-c", FITS, "9"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


PRECOMPILE = """
import os, sys, numpy as np
import overgmm as og
from overgmm import init as initialisation
from overgmm.estimator import _fit as F
from overgmm.estimator._precompile import Precompiler
folder = os.path.join(sys.argv[1], "executables")  # the stored programs (overgmm._executables)
entries = lambda: {p for p in os.listdir(folder) if not p.startswith(".tmp-")}
rng = np.random.default_rng(0)
Zp, wp = F.pad_rows(rng.normal(size=(150, 3)), np.full(150, 1 / 150))
prob = F.problem(Zp, wp, np.full(3, 1e-3))
engine = F.InMemory(prob, F.algorithm(prob, "polyak", 1.0, 10, 1e-3))
ident, keys = F._init(np.int32(0), Zp, wp, np.int32(8), n=8, n_init=2, method="kmeans++")
students = F.host(F._with_covariances(ident, Zp, wp, prob.floor, kind="diag"))
pre = Precompiler(["full"])
pre.start(engine, students, keys, 300)             # the thread compiles "full" ...
pre.claim("full")                                   # ... and the caller waits for it
pre.close()
full = F.host(F._with_covariances(ident, Zp, wp, prob.floor, kind="full"))
before = entries()
sol = engine.solve(full, keys, 300, 1e-6)           # solver, summary and merge of "full":
final = F.host(sol.final.student)                   # all held already
engine.summary(final)
engine.merge(final, 0.01)
print(len(before), len(entries() - before), int(np.max(sol.n_steps)))
"""


def test_precompiled_types_are_found_in_the_cache(tmp_path):
    folder = tmp_path / "cache"
    env = {**os.environ, "OVERGMM_CACHE_DIR": str(folder)}
    out = subprocess.run(
        [sys.executable, "-c", PRECOMPILE, str(folder)], env=env, capture_output=True, text=True, check=True
    )
    n_before, new, steps = map(int, out.stdout.split())
    assert n_before >= 5  # the draw, two covariance programs and full's solver, summary and merge
    assert steps > 1  # the solve ran ...
    assert new == 0  # ... on programs the background thread had compiled: nothing new written
