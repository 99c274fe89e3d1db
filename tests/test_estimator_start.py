"""How many components each fit starts with (``n_components="auto"``): one per 10 rows, at
most 25, and a full-covariance fit no more covariance parameters than the data has values
(one component per (d + 1) / 2 rows), in every face that fits "full" (explicit, the "auto"
candidate, the axes of "rotated", data in chunks)."""

import numpy as np
import pytest

from overgmm.estimator import OverparamGMM, auto_n_components


def test_the_rule():
    assert auto_n_components(150) == 15 and auto_n_components(150, "full", 4) == 15  # 30 rows per full: no cap
    assert auto_n_components(400, "full", 200) == 3  # 400 rows in d = 200: 3 full components, 25 diag
    assert auto_n_components(364, "full", 30) == 23 and auto_n_components(364, "diag", 30) == 25
    assert auto_n_components(455, "full", 30) == 25  # breast_cancer's training folds: no cap
    assert auto_n_components(5, "full", 10) == 1  # at least one
    for n_rows in range(1, 3000, 37):
        for d in (1, 3, 13, 30, 64):
            n = auto_n_components(n_rows, "full", d)
            assert 1 <= n <= auto_n_components(n_rows)

            def fits(k, d=d, n_rows=n_rows):  # no more covariance parameters than data values
                return k * d * (d + 1) / 2 <= n_rows * d

            assert (n == 1 or fits(n)) and (n == auto_n_components(n_rows) or not fits(n + 1))


def wide(n=240, d=30, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(3, d)) * 3
    return means[rng.choice(3, size=n)] + rng.normal(size=(n, d))


@pytest.fixture
def starts(monkeypatch):
    """(kind, starting components) of every fit ``OverparamGMM._start`` makes."""
    seen = []
    original = OverparamGMM._start

    def spy(self, X, w, total, n_init, kind, n=None, *args, **kwargs):
        out = original(self, X, w, total, n_init, kind, n, *args, **kwargs)
        seen.append((kind, out[0]))
        return out

    monkeypatch.setattr(OverparamGMM, "_start", spy)
    return seen


def test_each_face_starts_full_fits_with_no_more_covariance_parameters_than_values(starts):
    X = wide()  # 240 rows in d = 30: 24 components, full ones 15 (480 / 31)
    full = OverparamGMM(covariance_type="full", random_state=0).fit(X)
    assert starts == [("full", 15)] and full.n_components_init_ == 15
    assert full.weight_trajectory_.shape[1] == 15
    starts.clear()
    OverparamGMM(covariance_type="rotated", random_state=0).fit(X)  # the axes from full and tied, then diag
    assert starts[:2] == [("full", 15), ("tied", 24)] and {n for kind, n in starts[2:]} == {24}
    starts.clear()
    OverparamGMM(random_state=0).fit(X)  # "auto": the candidates fit 192 rows, started as the final fits
    assert dict(starts[:4]) == {"spherical": 24, "diag": 24, "tied": 24, "full": 15}
    starts.clear()
    OverparamGMM(covariance_type="full", n_components=20, random_state=0).fit(X)  # a number given is kept
    assert starts == [("full", 20)]
    assert OverparamGMM(covariance_type="full", random_state=0).partial_fit(X).n_components_init_ == 15


def test_auto_compiles_each_candidate_in_the_background_at_its_own_width(monkeypatch):
    """The later "auto" candidates' programs compile in background threads from the first
    candidate's students (24 components here): the full candidate's at its own 16 slots (15
    components), not at a width its fit never runs."""
    import threading

    from overgmm.estimator import _precompile as P

    widths = []
    real_init = P.Precompiler.__init__
    monkeypatch.setattr(
        P.Precompiler,
        "__init__",
        lambda self, kinds, **kw: widths.append(kw.get("widths")) or real_init(self, kinds, **kw),
    )
    OverparamGMM(random_state=0).fit(wide())
    assert widths[0] == {"diag": 24, "tied": 24, "full": 16}
    jobs = []
    monkeypatch.setattr(P, "compile_type", lambda engine, like, keys, job, *a: jobs.append(job))
    pre = P.Precompiler(["diag", "full"], widths={"full": 16})
    pre._state, pre._done = {k: "pending" for k in pre._kinds}, {k: threading.Event() for k in pre._kinds}
    pre._work(None, None, None, pre._kinds, 10, True)
    assert jobs == [("full", 16), "diag"]  # the last type first


def test_a_capped_full_fit_on_chunks_equals_the_one_in_memory(starts, monkeypatch):
    """On chunks each fit starts with the counts it starts with in memory (a spy on the
    chunked ``start``), and the fits are the same."""
    from overgmm.estimator import _stream

    da = pytest.importorskip("dask.array")
    X = wide()
    chunked = []
    real = _stream.start  # (est, chunks, view, moments, kind, n, ...)
    monkeypatch.setattr(_stream, "start", lambda *a, **k: chunked.append((a[4], a[5])) or real(*a, **k))
    for kind in ("full", "rotated", "auto"):
        starts.clear()
        a = OverparamGMM(covariance_type=kind, random_state=0).fit(X)
        in_memory, chunked[:] = list(starts), []
        b = OverparamGMM(covariance_type=kind, random_state=0).fit(da.from_array(X, chunks=100))
        assert chunked == in_memory
        assert a.n_components_init_ == b.n_components_init_ and a.n_components_ == b.n_components_
        assert abs(a.lower_bound_ - b.lower_bound_) <= 1e-8 * abs(a.lower_bound_)
        np.testing.assert_allclose(b.score_samples(X[:20]), a.score_samples(X[:20]), rtol=1e-7)
