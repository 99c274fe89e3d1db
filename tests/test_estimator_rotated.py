"""covariance_type="rotated" (overgmm.estimator._rotated): common axes, the rotated fit kept
as full matrices, its parameter count, its errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from overgmm import Mixture, OverparamGMM
from overgmm.estimator import _rotated as Rot
from test_estimator import ROT30, known_mixture
from test_estimator_chunks import same_fit


def random_rotation(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_common_axes_recover_a_shared_orientation(seed):
    d, k = 4, 3
    R0 = random_rotation(d, seed)
    var = np.random.default_rng(seed + 10).uniform(0.2, 5.0, size=(k, d))
    cov = np.einsum("jk,nk,lk->njl", R0, var, R0)
    R = Rot.common_axes(cov, np.array([0.5, 0.3, 0.2]))
    np.testing.assert_allclose(R.T @ R, np.eye(d), atol=1e-12)
    # the same axes up to order and sign: |R^T R0| is a permutation matrix (exact turns)
    overlap = np.abs(R.T @ R0)
    np.testing.assert_allclose(np.sort(overlap, axis=1)[:, -1], 1.0, atol=1e-9)
    rotated = np.einsum("jp,njk,kq->npq", R, cov, R)
    off = rotated - np.einsum("npp->np", rotated)[:, :, None] * np.eye(d)
    assert np.abs(off).max() < 1e-8 * var.max()
    lead = R[np.argmax(np.abs(R), axis=0), np.arange(d)]
    assert np.all(lead > 0)  # one sign per axis: the same covariances give the same axes


def test_common_axes_lower_the_profile_loss_below_the_pooled_axes():
    """On covariances that share no axes, the sweeps still lower the loss they minimise."""
    rng = np.random.default_rng(3)
    A = rng.normal(size=(3, 3, 3))
    cov = A @ np.swapaxes(A, -1, -2) + 0.1 * np.eye(3)
    p = np.array([0.2, 0.3, 0.5])

    def loss(R):
        return p @ np.log(np.einsum("jp,njk,kp->np", R, cov, R)).sum(axis=1)

    pooled = np.linalg.eigh(np.einsum("i,ijk->jk", p, cov))[1]
    assert loss(Rot.common_axes(cov, p)) < loss(pooled) - 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 234])
def test_best_turns_find_each_pairs_best_angle(seed):
    """The exact turn of a pair of axes is at least as good as the best of 3600 angles, with
    the pair's loss flat there; pairs that no turn improves stay put."""
    rng = np.random.default_rng(seed)
    k, P = 4, 6
    A = rng.normal(size=(k, P, 2, 2))
    C = A @ np.swapaxes(A, -1, -2) + 0.05 * np.eye(2)  # k x P positive definite 2 x 2 blocks
    p = rng.dirichlet(np.ones(k))
    va, vb, vab = C[..., 0, 0], C[..., 1, 1], C[..., 0, 1]

    def loss(theta):  # (P, T) for turns theta (P, T)
        c, s = np.cos(theta), np.sin(theta)
        along_a = c * c * va[..., None] + s * s * vb[..., None] + 2 * c * s * vab[..., None]
        along_b = s * s * va[..., None] + c * c * vb[..., None] - 2 * c * s * vab[..., None]
        return np.einsum("i,ipt->pt", p, np.log(along_a * along_b))

    theta = Rot.best_turns(p, va, vb, vab)
    assert np.all(np.abs(theta) <= np.pi / 4 + 1e-12)
    fine = np.linspace(-np.pi / 4, np.pi / 4, 3600, endpoint=False)
    best_fine = loss(np.broadcast_to(fine, (P, fine.size))).min(axis=1)
    at = loss(theta[:, None])[:, 0]
    assert np.all(at <= best_fine + 1e-12)
    slope = (loss(theta[:, None] + 1e-6) - loss(theta[:, None] - 1e-6))[:, 0] / 2e-6
    np.testing.assert_allclose(slope, 0.0, atol=1e-5)
    # on the best axes no pair turns again
    c, s = np.cos(theta), np.sin(theta)
    G = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (P, 2, 2): columns the turned axes
    T = np.swapaxes(G, -1, -2) @ C @ G
    np.testing.assert_allclose(Rot.best_turns(p, T[..., 0, 0], T[..., 1, 1], T[..., 0, 1]), 0.0, atol=1e-7)


@pytest.mark.parametrize("scale", [1e-170, 1e170])
def test_common_axes_do_not_depend_on_the_units(scale):
    """Variances near float64's limits (products of two overflow or underflow) give the
    same axes as in units of 1."""
    rng = np.random.default_rng(7)
    A = rng.normal(size=(3, 5, 5))
    cov = A @ np.swapaxes(A, -1, -2) + 0.1 * np.eye(5)
    p = np.array([0.5, 0.3, 0.2])
    np.testing.assert_allclose(Rot.common_axes(cov * scale, p), Rot.common_axes(cov, p), atol=1e-9)


def test_common_axes_of_a_singular_component_are_finite_and_orthonormal():
    rng = np.random.default_rng(7)
    A = rng.normal(size=(3, 5, 5))
    cov = A @ np.swapaxes(A, -1, -2) + 0.1 * np.eye(5)
    cov[2] = np.outer(A[2, 0], A[2, 0])  # rank 1: its variance along some axes can reach 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from a log of 0 or of a rounded negative
        R = Rot.common_axes(cov, np.array([0.5, 0.3, 0.2]))
    assert np.all(np.isfinite(R))
    np.testing.assert_allclose(R.T @ R, np.eye(5), atol=1e-12)


def test_the_rotated_model_as_full_matrices_has_the_same_density():
    """A diag student of the rotated, standardized rows, kept as full matrices in the
    standardized units of X: the same log-density of every row of X (units of X)."""
    rng = np.random.default_rng(0)
    d, n = 3, 4
    R = random_rotation(d, 5)
    student = Mixture(
        rng.normal(size=(n, d)), weights=np.array([0.1, 0.2, 0.3, 0.4]), covariances=rng.uniform(0.3, 2.0, (n, d))
    )
    units_r = (rng.normal(size=d), rng.uniform(0.5, 3.0, d), None)
    units = (rng.normal(size=d), rng.uniform(0.5, 3.0, d), None)
    full, (cov, u) = Rot.to_full(student, units_r, R, units)
    X = rng.normal(size=(50, d)) * 3
    Zr = (X @ R - units_r[0]) / units_r[1]
    Z = (X - units[0]) / units[1]
    want = np.asarray(student.log_prob(Zr)) - np.log(units_r[1]).sum()
    got = np.asarray(full.log_prob(Z)) - np.log(units[1]).sum()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert full.covariance_type == "full" and cov.shape == (n, d, d) and u.shape == (n, d, d)
    np.testing.assert_allclose(np.linalg.inv(cov), u @ np.swapaxes(u, -1, -2), rtol=1e-9, atol=1e-9)


@pytest.fixture(scope="module")
def rotated_data():
    Y, *_ = known_mixture("rotated", n=500, seed=0)
    test, *_ = known_mixture("rotated", n=2000, seed=1)
    return Y, test


def test_a_rotated_fit_shares_its_axes_and_beats_diag(rotated_data, tmp_path):
    Y, test = rotated_data
    est = OverparamGMM(covariance_type="rotated", random_state=0).fit(Y)
    diag = OverparamGMM(covariance_type="diag", random_state=0).fit(Y)
    assert est.covariance_type_ == "rotated" and est.n_components_ == 3
    assert est.score(test) > diag.score(test) + 0.01
    # one orientation: the fitted matrices commute, and their axes are the true ones (30 degrees)
    S = est.covariances_
    for i in range(3):
        for j in range(i):
            np.testing.assert_allclose(S[i] @ S[j], S[j] @ S[i], atol=1e-9 * np.abs(S).max() ** 2)
        axes = np.linalg.eigh(S[i])[1]
        assert np.abs(axes.T @ ROT30).max(axis=1).min() > 0.99
    k, d = est.means_.shape
    assert est._n_parameters() == k * (d + d) + k - 1 + d * (d - 1) // 2
    assert est.bic(Y) == pytest.approx(-2 * est.score(Y) * len(Y) + est._n_parameters() * np.log(len(Y)))
    assert est.lower_bound_ == pytest.approx(est.score(Y), abs=1e-6)
    path = tmp_path / "model.json"
    est.save(path)
    back = OverparamGMM.load(path)
    assert back.covariance_type_ == "rotated"
    np.testing.assert_array_equal(back.score_samples(test), est.score_samples(test))
    np.testing.assert_array_equal(back.predict(test), est.predict(test))


@pytest.mark.filterwarnings("ignore::overgmm.estimator._checks.ConstantFeatureWarning")
def test_a_feature_constant_in_the_training_rows_keeps_its_floor():
    """Rotated axes mix a constant feature with the others only by rounding error; the
    floor of that feature, seen along the axes, keeps a new value there finite and bounded."""
    rng = np.random.default_rng(0)
    Y = np.c_[rng.normal(size=(300, 2)) @ np.array([[2.0, 1.0], [0.0, 0.5]]), np.zeros(300)]
    est = OverparamGMM(covariance_type="rotated", random_state=0).fit(Y)
    s = est.score_samples(np.array([[0.0, 0.0, 1.0]]))
    # about 1 / (2 var_floor) nats for the unseen value, as in a diag fit (and not 1e30)
    assert np.isfinite(s).all() and -1.2 / (2 * est.var_floor) < s[0] < -0.8 / (2 * est.var_floor)
    assert np.linalg.eigvalsh(est.covariances_).min() > 0


def test_rotated_errors(rotated_data):
    Y, _ = rotated_data
    gappy = Y.copy()
    gappy[0, 0] = np.nan
    with pytest.raises(ValueError, match="missing values"):
        OverparamGMM(covariance_type="rotated", allow_missing=True).fit(gappy)
    da = pytest.importorskip("dask.array")
    with pytest.raises(ValueError, match="missing values"):
        OverparamGMM(covariance_type="rotated", allow_missing=True).fit(da.from_array(gappy, chunks=100))
    with pytest.raises(ValueError, match="partial_fit"):
        OverparamGMM(covariance_type="rotated").partial_fit(Y)
    fitted = OverparamGMM(covariance_type="rotated", random_state=0).fit(Y)
    with pytest.raises(ValueError, match="partial_fit"):
        fitted.partial_fit(Y)


def test_a_rotated_fit_on_chunks_equals_the_one_in_memory(rotated_data):
    """On chunks the axes come from the same full fit and the diag fit sees ``X @ R`` through
    the view (:class:`overgmm.streaming.View`'s rotation), starting from the same rows."""
    da = pytest.importorskip("dask.array")
    Y, test = rotated_data
    a = OverparamGMM(covariance_type="rotated", random_state=0).fit(Y)
    b = OverparamGMM(covariance_type="rotated", random_state=0).fit(da.from_array(Y, chunks=200))
    same_fit(a, b, rtol=1e-7)
    np.testing.assert_allclose(b.score_samples(test), a.score_samples(test), rtol=1e-8)


def shared_axes(n, d=8, seed=0):
    """Three clusters in d = 8 whose variances differ but whose axes are one rotation: fewer
    rows than a full fit can use well."""
    rng = np.random.default_rng(seed)
    R = random_rotation(d, 11)
    means = rng.normal(size=(3, d)) * 4
    var = rng.uniform(0.05, 3.0, size=(3, d))
    comp = rng.choice(3, size=n, p=[0.4, 0.35, 0.25])
    return means[comp] + (rng.normal(size=(n, d)) * np.sqrt(var[comp])) @ R.T


def test_auto_keeps_rotated_where_it_leads_every_type_by_the_margin():
    """ "rotated" is the last "auto" candidate (fitted on the "full" candidate's axes): kept
    only where its held-out score leads all others by the margin, then refitted as the
    explicit "rotated" fit. (On chunks: its score in test_estimator_chunks' "auto" parity
    test, the rotated fit in the test above.)"""
    X = shared_axes(400)
    a = OverparamGMM(random_state=0).fit(X)
    scores = a.validation_scores_
    assert list(scores) == ["spherical", "diag", "tied", "full", "rotated"]
    assert a.covariance_type_ == "rotated" and a.n_components_ == 3
    assert all(scores["rotated"] > v + 0.02 for k, v in scores.items() if k != "rotated")
    alone = OverparamGMM(covariance_type="rotated", random_state=0).fit(X)
    np.testing.assert_allclose(a.score_samples(X), alone.score_samples(X), rtol=1e-12)
    # where it does not lead by the margin, the simplest close type stays (known_mixture's 30 degrees)
    Y, *_ = known_mixture("rotated", n=500, seed=0)
    c = OverparamGMM(random_state=0).fit(Y)
    assert c.validation_scores_["rotated"] > c.validation_scores_["full"] - 0.02
    assert c.covariance_type_ == "full"


def turned_data(n, seed):
    """Three clusters in d = 6 whose axes are one rotation (not the pooled axes)."""
    rng = np.random.default_rng(seed)
    R = random_rotation(6, 11)
    means = np.zeros((3, 6))
    means[1, 0] = means[2, 1] = 3.0
    var = np.array([[4, 1, 0.3, 0.1, 2, 0.5], [0.2, 3, 1, 2, 0.3, 0.1], [1, 0.1, 4, 0.5, 0.2, 2]])
    comp = rng.choice(3, size=n, p=[0.4, 0.35, 0.25])
    return (means[comp] + rng.normal(size=(n, 6)) * np.sqrt(var[comp])) @ R.T, R


def test_the_axes_turn_by_the_fit_s_own_components(monkeypatch):
    """After the fit on the full fit's axes, the axes of its own components' scatter
    (mclust's M-step for the orientation) and the diag fit again: kept because the training
    objective falls; here the axes come closer to the true ones and a new sample scores higher."""
    X, true = turned_data(120, 0)
    T, _ = turned_data(5000, 1)
    monkeypatch.setattr(Rot, "ROUNDS", 0)
    once = OverparamGMM(covariance_type="rotated", random_state=0).fit(X)
    monkeypatch.setattr(Rot, "ROUNDS", 1)
    turned = OverparamGMM(covariance_type="rotated", random_state=0).fit(X)

    def axis_error(est):
        R = Rot.common_axes(est.covariances_, est.weights_)
        return 1 - np.abs(R.T @ true).max(axis=1).min()

    assert once.n_components_ == turned.n_components_ == 3
    assert turned.bic(X) < once.bic(X) - 1
    assert axis_error(turned) < 0.8 * axis_error(once)
    assert turned.score(T) > once.score(T) + 0.02


def test_own_axes_are_the_common_axes_of_the_components_scatter(monkeypatch):
    """:func:`._rotated.own_axes` from a rotated fit's engine sums equals common_axes of the
    scatter matrices (plus the fit's floor) computed directly from the fit's responsibilities."""
    X, _ = turned_data(300, 2)
    captured = {}
    real = Rot.own_axes

    def spy(res, units_r, R, sums):
        captured.update(res=res, units_r=units_r, R=R, out=real(res, units_r, R, sums))
        return captured["out"]

    monkeypatch.setattr(Rot, "own_axes", spy)
    OverparamGMM(covariance_type="rotated", random_state=0).fit(X)
    res, (shift_r, scale_r, floor_r), R = captured["res"], captured["units_r"], captured["R"]
    s = Rot.F.take(res.students, res.best)
    Z = (X @ R - shift_r) / scale_r
    lw = np.asarray(s.log_weights)
    live = np.isfinite(lw)
    var = np.exp(np.asarray(s.cov_params))[live]
    mu = np.asarray(s.means)[live]
    logp = lw[live] - 0.5 * (((Z[:, None] - mu) ** 2) / var + np.log(2 * np.pi * var)).sum(-1)
    r = np.exp(logp - logp.max(1, keepdims=True))
    r /= r.sum(1, keepdims=True)
    mass = r.sum(0)
    means = r.T @ X / mass[:, None]
    W = np.stack([(r[:, i, None] * (X - means[i])).T @ (X - means[i]) / mass[i] for i in range(len(mass))])
    W += (R * scale_r) @ np.diag(floor_r) @ (R * scale_r).T  # the fit's floor, in the units of X
    # the axes' exact turns are continuous in W: rounding in the two sums moves them by ~1e-9
    np.testing.assert_allclose(captured["out"], Rot.common_axes(W, mass), atol=1e-7)


def clusters_apart_along_narrow_axes(n, seed, d=10):
    """3 clusters in d = 10 sharing one orientation (axes of variance e^1.5 .. e^-1.5, each
    cluster's own spread around them), apart along the narrowest axes: at 150 rows a full
    fit pays 65 parameters per component and merges them into one."""
    rng = np.random.default_rng(seed)
    means = np.zeros((3, d))
    means[1, -1], means[2, -2], means[1, 0] = 2.5, 2.5, 2.0
    var = np.exp(np.linspace(1.5, -1.5, d) + 0.5 * np.random.default_rng(3).normal(size=(3, d)))
    comp = rng.integers(0, 3, n)
    return (means[comp] + rng.normal(size=(n, d)) * np.sqrt(var[comp])) @ random_rotation(d, 7).T


def test_the_tied_fit_s_axes_start_the_rotated_fit_where_the_full_fit_merged_the_clusters(monkeypatch):
    """The full fit merges the 3 clusters into one, so its axes are the data's principal
    axes and the rotated fit on them keeps one component; the tied fit's shared covariance
    has the within-cluster axes, and the start of lower training objective is kept."""
    X = clusters_apart_along_narrow_axes(150, 0)
    T = clusters_apart_along_narrow_axes(5000, 1)
    assert OverparamGMM(covariance_type="full", random_state=0).fit(X).n_components_ == 1
    monkeypatch.setattr(Rot, "AXES_FROM", ("full",))
    from_full = OverparamGMM(covariance_type="rotated", random_state=0).fit(X)
    monkeypatch.setattr(Rot, "AXES_FROM", ("full", "tied"))
    both = OverparamGMM(covariance_type="rotated", random_state=0).fit(X)
    assert from_full.n_components_ == 1 and both.n_components_ == 3
    assert both.bic(X) < from_full.bic(X) - 10
    assert both.score(T) > from_full.score(T) + 0.2


def test_refined_keeps_the_start_of_lowest_training_objective(monkeypatch):
    """:func:`._rotated.refined` over several starts fits each and returns the fit of the
    lowest training objective (loss + sum log scale + price x live components)."""

    class Res:  # the fields of a FitResult that refined reads
        def __init__(self, loss, live):
            self.loss, self.best = np.array([loss]), 0
            lw = np.where(np.arange(3) < live, np.log(1.0 / live), -np.inf)
            self.students = type("Batch", (), {"log_weights": lw[None]})()

    # start k: (loss, live components); with price 0.5 start 1 (1.0 + 1.5) loses to start 2 (1.8 + 0.5)
    fits = {0: (3.0, 1), 1: (1.0, 3), 2: (1.8, 1)}
    calls = []

    def fit_on(R):
        k = int(R[0, 0])
        calls.append(k)
        return Res(*fits[k]), 3, (0.0, np.ones(1), 0.0), None

    monkeypatch.setattr(Rot, "ROUNDS", 0)
    starts = [np.full((1, 1), k, dtype=float) for k in fits]
    res, n, units_r, R = Rot.refined(fit_on, starts, price=0.5)
    assert calls == [0, 1, 2] and R[0, 0] == 2 and res.loss[0] == 1.8
    res, n, units_r, R = Rot.refined(fit_on, starts, price=0.0)
    assert R[0, 0] == 1
