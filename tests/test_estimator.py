"""OverparamGMM: the scikit-learn contract, recovery of a known mixture, agreement with the
core's Mixture and EM, invariances of the sample weights and the row order, bad input.

Compilation is the cost to watch: most tests share one data shape (400 x 2) and the
default static options, so they share one compiled fit.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

import overgmm as og
from overgmm.estimator import OverparamGMM, auto_n_components
from overgmm.estimator import _kernels as K

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
# shapes); the default n_components="auto" is exercised by the tests below.
@parametrize_with_checks([OverparamGMM(n_components=2, max_iter=30, random_state=0)])
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
    np.testing.assert_allclose(np.sqrt(fitted.covariances_[match]), SDS[:, None] * np.ones(2), rtol=0.25)
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
def test_em_never_decreases_the_likelihood_without_pruning_or_merging():
    est = OverparamGMM(merge_tol=0.0, prune=0.0, tol=1e-9, random_state=3).fit(X)
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


def test_densities_against_scipy(fitted):
    pts = np.array([[0.5, -0.3], [5.0, 1.0], [40.0, -30.0]])
    ref = np.log(
        sum(
            w * scipy.stats.multivariate_normal(m, np.diag(c)).pdf(pts[:2])
            for w, m, c in zip(fitted.weights_, fitted.means_, fitted.covariances_, strict=True)
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
    p = k * d + k * d + k - 1
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


def test_fit_predict_and_refit_do_not_recompile():
    est = OverparamGMM(random_state=0)
    est.fit(X)
    size = K.fit_all._cache_size()
    labels = est.fit_predict(X[::-1].copy())
    assert K.fit_all._cache_size() == size
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
    """Restarts run together; the kept one has the highest likelihood among them."""
    est = OverparamGMM(n_init=3, merge_tol=0.0, tol=1e-3, random_state=0)
    res = jax.device_get(
        K.fit_all(
            *(jnp.asarray(a) for a in est_inputs(X)),
            n=25,
            method="data",
            algorithm="em",
            cov="diag",
            max_iter=200,
            n_short=10,
        )
    )
    assert len(set(np.round(res.carry.loss, 8))) == 3  # three different runs
    assert int(res.best) == int(np.argmin(res.carry.loss))
    est.fit(X)
    assert est.lower_bound_ == pytest.approx(-float(res.carry.loss.min()) - np.log(X.std(0)).sum(), abs=1e-9)


def est_inputs(Y, n_init=3, seed=0):
    """The kernel inputs OverparamGMM(n_init=..., merge_tol=0, tol=1e-3, random_state=seed).fit(Y) builds."""
    from overgmm.estimator._estimator import _pad

    w = np.full(len(Y), 1 / len(Y))
    Z = (Y - Y.mean(0)) / Y.std(0)
    order = np.lexsort(Z.T[::-1])
    Zp, wp = _pad(Z[order], w[order])
    rs = np.random.RandomState(seed)
    keys = jax.random.split(jax.random.key(int(rs.randint(np.iinfo(np.int32).max))), n_init)
    return Zp, wp, keys, np.full(2, 1e-3), 25, 1.0, 1e-3, 0.01, 0.0


def test_auto_rule():
    assert auto_n_components(2) == 1 and auto_n_components(150) == 15 and auto_n_components(10**6) == 25


# --------------------------------------------------------------------------- streaming
def test_partial_fit_approaches_the_batch_fit(fitted):
    Xtest = mixture_data(2000, seed=9)[0]
    est = OverparamGMM(random_state=0)
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
def test_bad_X(data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        OverparamGMM(**kwargs).fit(data)


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
        ({"covariance_type": "full"}, "covariance_type"),
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


def test_non_finite_likelihood_is_an_error_that_says_what_to_change():
    """Identical points at 0 with no variance floor: a component collapses on them, its
    variance becomes exactly 0 and the likelihood infinite. The fit must stop with an
    error naming the fix, and store nothing."""
    Y = np.concatenate([np.zeros((60, 2)), X[:340]])
    est = OverparamGMM(var_floor=0.0, standardize=False, merge_tol=0.0, random_state=0)
    with pytest.raises(FloatingPointError, match="var_floor"):
        est.fit(Y)
    assert not hasattr(est, "weights_")
    ok = OverparamGMM(standardize=False, random_state=0).fit(Y)  # the default floor fixes it
    assert np.all(np.isfinite(ok.means_)) and np.all(ok.covariances_ > 0)
