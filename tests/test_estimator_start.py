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


def test_a_capped_full_fit_on_chunks_equals_the_one_in_memory():
    da = pytest.importorskip("dask.array")
    X = wide()
    for kind in ("full", "rotated"):
        a = OverparamGMM(covariance_type=kind, random_state=0).fit(X)
        b = OverparamGMM(covariance_type=kind, random_state=0).fit(da.from_array(X, chunks=100))
        assert a.n_components_init_ == b.n_components_init_ and a.n_components_ == b.n_components_
        assert abs(a.lower_bound_ - b.lower_bound_) <= 1e-8 * abs(a.lower_bound_)
        np.testing.assert_allclose(b.score_samples(X[:20]), a.score_samples(X[:20]), rtol=1e-7)
