"""OverparamGMM: the scikit-learn contract for every covariance type, recovery of a known
mixture, full covariances, agreement with the core's Mixture and EM, invariances of the
sample weights and the row order, bad input.

Compilation is the cost to watch: most tests share one data shape (400 x 2) and the
default static options, so they share the compiled units.
"""

import warnings

import numpy as np
import pytest
import scipy.stats
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

import overgmm as og
from overgmm.estimator import OverparamGMM, auto_n_components
from overgmm.estimator import _fit as F

COVARIANCE_TYPES = ["full", "tied", "rotated", "diag", "spherical", "fixed"]

MEANS = np.array([[0.0, 0.0], [6.0, 1.0], [1.0, 7.0], [-6.0, 4.0]])
SDS = np.array([1.0, 0.6, 1.3, 0.8])
WEIGHTS = np.array([0.4, 0.3, 0.2, 0.1])  # unequal, asymmetric


def mixture_data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    comp = rng.choice(4, size=n, p=WEIGHTS)
    return MEANS[comp] + SDS[comp, None] * rng.normal(size=(n, 2)), comp


X, LABELS = mixture_data()


@pytest.fixture(scope="module")
def fitted():
    return OverparamGMM(random_state=0).fit(X)


# --------------------------------------------------------------------------- scikit-learn's checks
# n_components=2 keeps the number of compiled shapes small (the checks use many data
# shapes); the default n_components="auto" is exercised by the tests below. The default
# covariance_type="auto" fits every learned type (spherical, diag, tied, full, rotated) before the
# final one (on data too small to hold rows out it falls back to diag), so its checks pass
# each type's fit through scikit-learn's; "full" and "fixed" (no learned covariance) are
# checked alone as well. Checking spherical, diag and tied alone too cost 58 s of the
# suite's time; their numerics are tested below, type by type.
@parametrize_with_checks(
    [OverparamGMM(n_components=2, max_iter=30, covariance_type=c, random_state=0) for c in ("auto", "full", "fixed")]
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# --------------------------------------------------------------------------- what it finds
def test_recovers_the_number_of_components_means_and_weights(fitted):
    assert fitted.n_components_init_ == 25 and fitted.n_components_ == 4
    assert fitted.converged_
    # match each true component to its nearest fitted mean
    dist = np.linalg.norm(fitted.means_[:, None] - MEANS[None], axis=-1)
    match = dist.argmin(0)
    assert sorted(match) == [0, 1, 2, 3]
    assert np.max(dist.min(0)) < 0.35
    np.testing.assert_allclose(fitted.weights_[match], WEIGHTS, atol=0.05)
    # the default "auto" picks a type whose held-out likelihood is that of round clusters
    assert fitted.covariance_type == "auto" and fitted.covariance_type_ in ("spherical", "diag")
    var = fitted.covariances_[match]
    var = var[:, None] * np.ones(2) if var.ndim == 1 else var
    np.testing.assert_allclose(np.sqrt(var), SDS[:, None] * np.ones(2), rtol=0.25)
    # labels agree with the truth up to the matching
    assert np.mean(match[LABELS] == fitted.predict(X)) > 0.97


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_without_merging_the_surplus_components_stay():
    est = OverparamGMM(merge_tol=0.0, random_state=0).fit(X)
    assert est.n_merges_ == 0 and est.n_components_ > 4


def test_weight_trajectory_records_the_pruning(fitted):
    traj = fitted.weight_trajectory_
    assert traj.shape == (fitted.n_iter_ + 1, fitted.n_components_init_)
    np.testing.assert_allclose(traj.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(traj[0], 1 / 25)
    last = traj[-1]
    assert np.sum(last > 0) == fitted.n_components_
    np.testing.assert_allclose(last[last > 0], fitted.weights_, atol=1e-12)
    # once pruned or merged away, a component never comes back
    dead = traj == 0
    assert np.all(dead[1:] >= dead[:-1])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_em_never_decreases_the_likelihood_without_pruning_or_merging(kind):
    est = OverparamGMM(covariance_type=kind, merge_tol=0.0, prune=0.0, tol=1e-9, random_state=3).fit(X)
    lb = est.lower_bounds_
    assert len(lb) == est.n_iter_ + 1 and np.all(np.isfinite(lb))
    assert np.all(np.diff(lb) >= -1e-10)
    assert est.lower_bound_ == pytest.approx(est.score(X), abs=1e-9)


@pytest.mark.parametrize("algorithm", ["gradient_em", "polyak"])
def test_other_algorithms_reach_the_em_solution(fitted, algorithm):
    est = OverparamGMM(algorithm=algorithm, tol=1e-7, random_state=0).fit(X)
    assert est.n_components_ == 4
    assert est.score(X) == pytest.approx(fitted.score(X), abs=0.02)
    assert est.lower_bounds_[-1] > est.lower_bounds_[0]


# --------------------------------------------------------------------------- covariance types
ROT30 = np.array([[np.cos(np.pi / 6), -np.sin(np.pi / 6)], [np.sin(np.pi / 6), np.cos(np.pi / 6)]])


def known_mixture(kind, n=500, seed=0):
    """Three well-separated 2-D components with covariances of type ``kind`` (``"fixed"``:
    identity), 500 rows (the same padded shape as X); returns data, the drawn fractions of
    the components, means (3, 2) and covariances (3, 2, 2)."""
    means = np.array([[0.0, 0.0], [8.0, 1.0], [1.0, 9.0]])
    weights = np.array([0.5, 0.3, 0.2])
    cov = {
        "full": np.array([[[2.0, 1.2], [1.2, 1.5]], [[1.0, -0.6], [-0.6, 0.8]], [[0.5, 0.0], [0.0, 2.0]]]),
        "tied": np.array([[[1.5, 0.9], [0.9, 1.2]]] * 3),
        # one orientation (30 degrees), three pairs of variances along it
        "rotated": np.einsum("jk,nk,lk->njl", ROT30, np.array([[2.5, 0.4], [1.0, 0.3], [0.6, 1.8]]), ROT30),
        "diag": np.array([np.diag([2.0, 0.5]), np.diag([0.6, 1.5]), np.diag([1.0, 1.0])]),
        "spherical": np.array([2.0 * np.eye(2), 0.5 * np.eye(2), 1.0 * np.eye(2)]),
        "fixed": np.array([np.eye(2)] * 3),
    }[kind]
    rng = np.random.default_rng(seed)
    comp = rng.choice(3, size=n, p=weights)
    chol = np.linalg.cholesky(cov)
    Y = means[comp] + np.einsum("nij,nj->ni", chol[comp], rng.normal(size=(n, 2)))
    return Y, np.bincount(comp, minlength=3) / n, means, cov


def as_matrices(est):
    k, d = est.means_.shape
    c = est.covariances_
    return {
        "full": lambda: c,
        "rotated": lambda: c,
        "tied": lambda: np.broadcast_to(c, (k, d, d)),
        "diag": lambda: c[:, :, None] * np.eye(d),
        "spherical": lambda: c[:, None, None] * np.eye(d),
        "fixed": lambda: np.broadcast_to(np.diag(c), (k, d, d)),
    }[est.covariance_type_]()


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_every_covariance_type_recovers_a_known_mixture(kind):
    Y, weights, means, cov = known_mixture(kind)
    est = OverparamGMM(covariance_type=kind, standardize=kind != "fixed", random_state=0).fit(Y)
    assert est.n_components_ == 3
    shape = {"full": (3, 2, 2), "rotated": (3, 2, 2), "tied": (2, 2), "diag": (3, 2), "spherical": (3,), "fixed": (2,)}[
        kind
    ]
    assert est.covariances_.shape == shape and est.precisions_cholesky_.shape == shape
    match = np.linalg.norm(est.means_[:, None] - means[None], axis=-1).argmin(0)
    assert sorted(match) == [0, 1, 2]
    np.testing.assert_allclose(est.means_[match], means, atol=0.3)
    np.testing.assert_allclose(est.weights_[match], weights, atol=0.02)
    np.testing.assert_allclose(as_matrices(est)[match], cov, atol=0.3 * np.abs(cov).max())


def test_full_covariances_fit_a_sheared_cluster_with_one_component():
    """One strongly correlated Gaussian (correlation 0.9): full covariances need one
    component; diagonal ones tile it with several (and fit it worse)."""
    rng = np.random.default_rng(0)
    C = np.array([[4.0, 3.6], [3.6, 4.0]])
    Y = rng.multivariate_normal([1.0, -2.0], C, size=400)
    full = OverparamGMM(covariance_type="full", random_state=0).fit(Y)
    diag = OverparamGMM(covariance_type="diag", random_state=0).fit(Y)
    assert full.n_components_ == 1 and diag.n_components_ >= 3
    np.testing.assert_allclose(full.covariances_[0], C, atol=0.5)
    assert full.score(Y) > diag.score(Y)
    assert full.bic(Y) < diag.bic(Y)


def test_the_default_floor_lets_full_components_fit_thin_clusters():
    """Five clusters 0.25 across and 1.4 along, spread over about 10 per feature: their
    across-variance is about 6e-4 of the feature's. The default var_floor (1e-4 of it) lets
    full covariances fit them (all five found); the former default 1e-3 bound them and the
    fit kept four, one component on two clusters (the --hard benchmark's sheared case)."""
    rng = np.random.default_rng([2, 5, 5, 13])
    mu = np.zeros((5, 2))
    for j in range(1, 5):
        while True:
            cand = rng.uniform(-8.0 * 5**0.5, 8.0 * 5**0.5, size=2)
            if np.all(np.linalg.norm(mu[:j] - cand, axis=1) >= 4.2):
                mu[j] = cand
                break
    shear = np.stack([np.linalg.qr(rng.normal(size=(2, 2)))[0] @ np.diag([1.4, 0.25]) for _ in range(5)])
    comp = rng.choice(5, size=1000)
    Y = mu[comp] + np.einsum("kde,ke->kd", shear[comp], rng.normal(size=(1000, 2)))
    assert OverparamGMM().var_floor == 1e-4
    thin = OverparamGMM(covariance_type="full", random_state=0).fit(Y)
    bound = OverparamGMM(covariance_type="full", random_state=0, var_floor=1e-3).fit(Y)
    assert thin.n_components_ == 5 and bound.n_components_ < 5
    assert thin.score(Y) > bound.score(Y) + 0.5


def test_auto_chooses_the_type_by_validation_likelihood():
    """ "auto" (the default) holds out rows chosen by their values, fits spherical, diag, tied,
    full and rotated on the rest, and keeps the fewest-parameter fit within 0.02 nats/sample of the best
    held-out log-likelihood: full or tied (the same model for one cluster) for a sheared
    cluster, spherical or diag for round components; the result is the refit of that type on
    all rows."""
    rng = np.random.default_rng(0)
    sheared = rng.multivariate_normal([1.0, -2.0], [[4.0, 3.6], [3.6, 4.0]], size=400)
    aligned = known_mixture("diag")[0]
    assert OverparamGMM().covariance_type == "auto"
    for Y, allowed in [(sheared, {"tied", "full"}), (aligned, {"diag", "spherical"})]:
        auto = OverparamGMM(random_state=0).fit(Y)
        assert auto.covariance_type_ in allowed, auto.validation_scores_
        scores = auto.validation_scores_
        assert set(scores) == {"spherical", "diag", "tied", "full", "rotated"}
        assert scores[auto.covariance_type_] >= max(scores.values()) - 0.02
        alone = OverparamGMM(covariance_type=auto.covariance_type_, random_state=0).fit(Y)
        np.testing.assert_allclose(auto.score_samples(Y), alone.score_samples(Y), rtol=1e-12)
    # the held-out rows depend on the rows' values only: the order of the rows does not matter
    perm = rng.permutation(len(sheared))
    a = OverparamGMM(random_state=0).fit(sheared)
    b = OverparamGMM(random_state=0).fit(sheared[perm])
    assert a.validation_scores_ == pytest.approx(b.validation_scores_, rel=1e-9)
    stream = OverparamGMM(covariance_type="auto", random_state=0).partial_fit(aligned)
    assert stream.covariance_type_ == "diag"


def test_full_densities_precisions_and_parameter_count():
    Y = known_mixture("full")[0]
    est = OverparamGMM(covariance_type="full", random_state=0).fit(Y)
    pts = np.array([[0.5, -0.3], [7.0, 1.5], [1.0, 8.0]])
    ref = np.log(
        sum(
            w * scipy.stats.multivariate_normal(m, c).pdf(pts)
            for w, m, c in zip(est.weights_, est.means_, est.covariances_, strict=True)
        )
    )
    np.testing.assert_allclose(est.score_samples(pts), ref, rtol=1e-10)
    U = est.precisions_cholesky_  # scikit-learn's convention: inv(Sigma) = U U^T, U upper triangular
    np.testing.assert_allclose(U @ np.swapaxes(U, -1, -2), np.linalg.inv(est.covariances_), rtol=1e-8)
    np.testing.assert_array_equal(np.tril(U, -1), 0.0)
    k, d, n = est.n_components_, 2, Y.shape[0]
    p = k * d + k * d * (d + 1) // 2 + k - 1
    assert est.bic(Y) == pytest.approx(-2 * est.score_samples(Y).sum() + p * np.log(n), rel=1e-12)
    S, y = est.sample(5000)
    np.testing.assert_allclose(np.cov(S[y == 0].T), est.covariances_[0], atol=0.15 * np.abs(est.covariances_[0]).max())


# --------------------------------------------------------------------------- agreement with the core
def test_fixed_covariance_is_the_core_mixture_and_an_em_fixed_point():
    """covariance_type="fixed" without standardization is the papers' model: its density is
    overgmm.Mixture's, and at convergence an EM update from the core's responsibilities moves nothing."""
    Y = mixture_data(300, seed=1)[0] / SDS.max()
    est = OverparamGMM(covariance_type="fixed", standardize=False, merge_tol=0.0, prune=0.0, tol=1e-12, max_iter=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.set_params(random_state=0).fit(Y)
    np.testing.assert_array_equal(est.covariances_, np.ones(2))
    core = og.Mixture(est.means_, est.weights_)
    np.testing.assert_allclose(est.score_samples(Y), np.asarray(core.log_prob(Y)), rtol=1e-12)
    psi = np.asarray(core.responsibilities(Y))  # the core's E-step; then the EM update
    np.testing.assert_allclose(psi.T @ Y / psi.sum(0)[:, None], est.means_, atol=2e-3)
    np.testing.assert_allclose(psi.mean(0), est.weights_, atol=2e-4)


@pytest.mark.parametrize("kind", ["full", "diag", "spherical"])
def test_densities_against_scipy(fitted, kind):
    if kind != "diag":
        fitted = OverparamGMM(covariance_type=kind, random_state=0).fit(X)
    pts = np.array([[0.5, -0.3], [5.0, 1.0], [40.0, -30.0]])
    ref = np.log(
        sum(
            w * scipy.stats.multivariate_normal(m, c).pdf(pts[:2])
            for w, m, c in zip(fitted.weights_, fitted.means_, as_matrices(fitted), strict=True)
        )
    )
    got = fitted.score_samples(pts)
    np.testing.assert_allclose(got[:2], ref[:2], rtol=1e-10)
    # far away: the log domain stays finite where the density underflows
    assert np.isfinite(got[2]) and got[2] < -500
    proba = fitted.predict_proba(pts)
    assert proba.dtype == np.float64 and np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(fitted.predict(pts), proba.argmax(1))


def test_bic_aic_sample_and_score(fitted):
    k, d, n = fitted.n_components_, 2, X.shape[0]
    p = k * d + k * F.n_covariance_parameters(fitted.covariance_type_, d) + k - 1
    total = fitted.score_samples(X).sum()
    assert fitted.bic(X) == pytest.approx(-2 * total + p * np.log(n), rel=1e-12)
    assert fitted.aic(X) == pytest.approx(-2 * total + 2 * p, rel=1e-12)
    assert fitted.score(X) == pytest.approx(total / n, rel=1e-12)
    S, y = fitted.sample(20000)
    assert S.shape == (20000, 2) and y.shape == (20000,) and set(y) <= set(range(k))
    np.testing.assert_allclose(np.bincount(y, minlength=k) / 20000, fitted.weights_, atol=0.015)
    np.testing.assert_allclose(S.mean(0), fitted.weights_ @ fitted.means_, atol=0.1)
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(0)


def _compiled_units():
    return og.trace_count(), [f._cache_size() for f in (F._init, F._summary, F._merge, F._evaluate)]


def test_fit_predict_and_refit_do_not_recompile():
    est = OverparamGMM(random_state=0)
    est.fit(X).score(X)
    size = _compiled_units()
    labels = est.fit_predict(X[::-1].copy())
    # other data of the same shape bucket (400 and 420 rows both pad to 448), another seed
    assert F.bucket_rows(400) == F.bucket_rows(420) == 448
    OverparamGMM(random_state=1).fit(mixture_data(420, seed=4)[0]).score(X)
    assert _compiled_units() == size
    np.testing.assert_array_equal(labels, est.predict(X[::-1]))


# --------------------------------------------------------------------------- invariances
def test_row_order_does_not_change_the_fit(fitted):
    perm = np.random.default_rng(5).permutation(X.shape[0])
    other = OverparamGMM(random_state=0).fit(X[perm])
    np.testing.assert_allclose(other.score_samples(X), fitted.score_samples(X), rtol=1e-8)


def test_integer_sample_weights_equal_repeated_rows():
    rng = np.random.default_rng(2)
    sw = rng.choice([0, 1, 2], size=X.shape[0], p=[0.2, 0.6, 0.2])  # same padded shape as X
    a = OverparamGMM(random_state=0).fit(X, sample_weight=sw)
    b = OverparamGMM(random_state=0).fit(np.repeat(X, sw, axis=0))
    assert a.n_components_ == b.n_components_
    np.testing.assert_allclose(a.score_samples(X), b.score_samples(X), rtol=1e-7)


def test_n_init_restarts_keep_the_best():
    """Restarts run together; the kept one has the lowest loss among them (no merging: the
    component price is 0)."""
    est = OverparamGMM(n_init=3, merge_tol=0.0, tol=1e-3, random_state=0, covariance_type="diag")
    w = np.full(len(X), 1 / len(X))
    n, units, prob, students, keys = est._start(X, w, float(len(X)), 3, "diag")
    alg = F.algorithm(prob, "em", 1.0, 10, 0.01)
    res = F.fit(F.InMemory(prob, alg), students, keys, max_iter=200, tol=1e-3, price=0.0)
    assert n == 25 and len(set(np.round(res.loss, 8))) == 3  # three different runs
    assert res.best == int(np.argmin(res.loss))
    est.fit(X)
    assert est.lower_bound_ == pytest.approx(-float(res.loss.min()) - np.log(X.std(0)).sum(), abs=1e-9)
    assert est.n_iter_ == res.restarts[res.best].n_steps


def test_large_auto_candidates_polish_coarse_between_merges_and_the_final_fit_to_tol(monkeypatch):
    """An "auto" candidate on COARSE_POLISH_ROWS rows or more stops a polishing fit that more
    merges may follow at COARSE_TOL * tol, and its last polish still fits to tol; the final
    fit polishes to tol throughout. Measured here: the same choice, the same final fit, in
    fewer steps than with every polish to tol."""
    calls = []
    real = F.InMemory.solve

    def spy(self, students, keys, max_iter, tol):
        sol = real(self, students, keys, max_iter, tol)
        calls.append((tol, int(np.max(sol.n_steps)), int(sol.status[0])))  # status 0: stopped on tol
        return sol

    monkeypatch.setattr(F.InMemory, "solve", spy)
    rng = np.random.default_rng(1)  # 4 anisotropic clusters in d = 5, 6000 rows (4800 train "auto")
    mu, A = rng.normal(size=(4, 5)) * 6, rng.normal(size=(4, 5, 5)) * 0.6
    comp = rng.integers(0, 4, size=6000)
    big = mu[comp] + np.einsum("nij,nj->ni", A[comp], rng.normal(size=(6000, 5)))
    coarse_tol = F.COARSE_TOL * 1e-4
    full = OverparamGMM(random_state=0, covariance_type="full").fit(big)  # not a candidate: to tol
    assert [t == pytest.approx(coarse_tol) for t, _, _ in calls] == [True] + [False] * (len(calls) - 1)
    fits, steps, n_coarse = {}, {}, {}
    for rows in ("rule", 10**9):  # the rule, then every polish to tol
        if rows != "rule":
            monkeypatch.setattr(F, "COARSE_POLISH_ROWS", rows)
        calls.clear()
        fits[rows] = est = OverparamGMM(random_state=0).fit(big)
        n_coarse[rows] = sum(t == pytest.approx(coarse_tol) for t, _, _ in calls)
        assert calls[-1][0] == pytest.approx(1e-4) and calls[-1][2] == 0 and est.converged_
        steps[rows] = sum(n for _, n, _ in calls)
    fast, slow = fits.values()
    assert fast.covariance_type_ == slow.covariance_type_ == "full" and fast.n_components_ == 4
    assert fast.score(big) == slow.score(big) == full.score(big)  # the same final fit
    for k, v in slow.validation_scores_.items():
        assert fast.validation_scores_[k] == pytest.approx(v, abs=2e-3)
    assert n_coarse["rule"] > n_coarse[10**9]  # beyond each fit's first solve
    assert steps["rule"] < 0.8 * steps[10**9]  # measured: 308 and 419 steps


def test_the_summary_loss_is_the_problems_nll_summed_over_row_blocks(rng):
    """The fit's summary reads the loss from the blocked E-step sums (as on chunks), not
    the problem's one-pass nll (an N x n x d temporary); the two agree to rounding."""
    import jax

    from overgmm import statistics

    X = rng.normal(size=(5000, 10))
    w = rng.uniform(0.5, 1.5, size=5000)
    w[-100:] = 0.0
    prob = F.problem(*F.pad_rows(X, w / w.sum()), np.full(10, 1e-4))
    A = rng.normal(size=(25, 10, 10)) * 0.3
    m = og.Mixture(
        rng.normal(size=(25, 10)), rng.dirichlet(np.ones(25)), covariances=A @ A.transpose(0, 2, 1) + np.eye(10)
    )
    assert statistics.block_rows(prob.data.shape[0], 25, 10, "full") < prob.data.shape[0] / 2  # several blocks
    loss, cov = F.InMemory(prob, None).summary(jax.tree_util.tree_map(lambda a: a[None], m))
    assert loss[0] == pytest.approx(float(prob.loss(m)), rel=1e-12)
    np.testing.assert_allclose(cov[0][0], m.covariances, rtol=1e-12)


def test_evaluate_runs_in_row_blocks_with_the_one_pass_values(rng):
    """F.evaluate (score_samples, predict_proba, "auto"'s held-out rows) reads the rows in the
    E-step's blocks: the same log-densities and responsibilities as one pass, with gaps too."""
    from overgmm import statistics

    A = rng.normal(size=(25, 10, 10)) * 0.3
    m = og.Mixture(
        rng.normal(size=(25, 10)), rng.dirichlet(np.ones(25)), covariances=A @ A.transpose(0, 2, 1) + np.eye(10)
    )
    Z = rng.normal(size=(F.LIGHT_ROWS + 1000, 10))
    assert statistics.block_rows(F.bucket_rows(Z.shape[0]), 25, 10, "full") < Z.shape[0] / 2  # several blocks
    for gaps in (False, True):
        if gaps:
            Z[rng.random(Z.shape) < 0.1] = np.nan
        ll, resp = F.evaluate(m, Z)
        ll1, resp1 = m.log_posterior(np.asarray(Z), missing=gaps)
        np.testing.assert_allclose(ll, ll1, rtol=1e-12)
        np.testing.assert_allclose(resp, resp1, rtol=1e-9, atol=1e-15)


def test_auto_rule():
    assert auto_n_components(2) == 1 and auto_n_components(150) == 15 and auto_n_components(10**6) == 25


def test_the_type_choice_keeps_the_simplest_within_the_margin():
    from overgmm.estimator._fit import AUTO_MARGIN, simplest_type

    scores = {"spherical": -3.0, "diag": -2.0, "tied": -1.0 - AUTO_MARGIN / 2, "full": -1.0}
    assert simplest_type(scores) == "tied"  # within the margin of full, and simpler
    assert simplest_type({**scores, "tied": -1.0 - 2 * AUTO_MARGIN}) == "full"
    assert simplest_type({k: -np.inf for k in scores}) == "diag"  # nothing finite: the fallback


# --------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("kind", ["diag", "full"])
def test_partial_fit_approaches_the_batch_fit(fitted, kind):
    Xtest = mixture_data(2000, seed=9)[0]
    est = OverparamGMM(covariance_type=kind, random_state=0)
    rng = np.random.default_rng(0)
    scores = []
    for _epoch in range(6):
        for batch in np.array_split(rng.permutation(X.shape[0]), 4):
            est.partial_fit(X[batch])
        scores.append(est.score(Xtest))
    assert est.n_iter_ == 24 and len(est.lower_bounds_) == 24
    assert est.weight_trajectory_.shape == (25, est.n_components_init_)
    assert scores[-1] > scores[0]
    assert scores[-1] > fitted.score(Xtest) - 0.15
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(np.ones((5, 3)))


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "data, kwargs, match",
    [
        (np.array([[0.0, np.nan]] * 5), {}, "NaN"),
        (np.array([[0.0, np.inf]] * 5), {}, "infinity"),
        (np.arange(10.0), {}, "Expected 2D array"),
        (np.ones((1, 2)), {}, "minimum of 2 is required"),
        (np.zeros((0, 2)), {}, "0 sample"),
    ],
)
@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_bad_X(data, kwargs, match, kind):
    with pytest.raises(ValueError, match=match):
        OverparamGMM(covariance_type=kind, **kwargs).fit(data)


@pytest.mark.parametrize(
    "sw, match",
    [
        (-np.ones(10), "Negative values"),
        (np.r_[np.nan, np.ones(9)], "NaN"),
        (np.ones(9), r"sample_weight.shape == \(9,\), expected \(10,\)"),
        (np.zeros(10), "at least one non-zero"),
    ],
)
def test_bad_sample_weight(sw, match):
    with pytest.raises(ValueError, match=match):
        OverparamGMM().fit(np.random.default_rng(0).normal(size=(10, 2)), sample_weight=sw)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_components": 0}, "n_components"),
        ({"n_components": "many"}, "n_components"),
        ({"n_components": 11}, "at most the number of samples"),
        ({"covariance_type": "tilted"}, "covariance_type"),
        ({"covariance_type": "identity"}, "covariance_type"),
        ({"algorithm": "adam"}, "algorithm"),
        ({"init": "random"}, "init"),
        ({"step_size": 0.0}, "step_size"),
        ({"max_iter": 0}, "max_iter"),
        ({"prune": 1.0}, "prune"),
        ({"tol": -1.0}, "tol"),
        ({"n_init": 0}, "n_init"),
        ({"var_floor": float("nan")}, "var_floor"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OverparamGMM(**kwargs).fit(np.random.default_rng(0).normal(size=(10, 2)))


def test_unknown_option_name():
    with pytest.raises(TypeError):
        OverparamGMM(n_component=3)
    with pytest.raises(ValueError, match="Invalid parameter"):
        OverparamGMM().set_params(n_component=3)


def test_unfitted():
    with pytest.raises(NotFittedError):
        OverparamGMM().predict(X)


@pytest.mark.parametrize("kind", ["diag", "full", "spherical"])
def test_non_finite_likelihood_is_an_error_that_says_what_to_change(kind):
    """Identical points at 0 with no variance floor: a component collapses on them, its
    variance becomes exactly 0 and the likelihood infinite. The fit must stop with an
    error naming the fix, and store nothing."""
    Y = np.concatenate([np.zeros((60, 2)), X[:340]])
    est = OverparamGMM(covariance_type=kind, var_floor=0.0, standardize=False, merge_tol=0.0, random_state=0)
    with pytest.raises(FloatingPointError, match="var_floor"):
        est.fit(Y)
    assert not hasattr(est, "weights_")
    ok = OverparamGMM(covariance_type=kind, standardize=False, random_state=0).fit(Y)  # the default floor fixes it
    assert np.all(np.isfinite(ok.means_)) and np.all(np.isfinite(ok.covariances_))
    assert np.all(np.linalg.eigvalsh(as_matrices(ok)) > 0)


def test_a_diverging_gradient_step_is_an_error_that_names_the_step_size():
    est = OverparamGMM(covariance_type="diag", algorithm="gradient_em", step_size=100.0, random_state=0)
    with pytest.raises(FloatingPointError, match=r"lower step_size \(now 100.0\)"):
        est.fit(X[:300])
    assert not hasattr(est, "weights_")


def test_tied_matches_scikit_learns_tied_model():
    """One covariance shared by all components, fitted like GaussianMixture(tied): the same
    shapes (covariances_ and precisions_cholesky_ (d, d)), parameter count and likelihood."""
    from sklearn.mixture import GaussianMixture

    Y, _, _, cov = known_mixture("tied", n=2000)
    est = OverparamGMM(covariance_type="tied", random_state=0).fit(Y)
    ref = GaussianMixture(3, covariance_type="tied", random_state=0).fit(Y)
    assert est.n_components_ == 3 and est.covariances_.shape == (2, 2)
    P = est.precisions_cholesky_
    np.testing.assert_allclose(P @ P.T, np.linalg.inv(est.covariances_), rtol=1e-10)
    np.testing.assert_allclose(est.covariances_, ref.covariances_, atol=0.02)
    assert est._n_parameters() == ref._n_parameters()
    assert est.score(Y) == pytest.approx(ref.score(Y), abs=1e-3)
