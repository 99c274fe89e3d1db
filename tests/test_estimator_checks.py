"""The checks of the data's features before a fit: too large for float64 is an error that
names the feature, constant is a warning that names it; in memory and on chunks alike."""

import numpy as np
import pytest

from overgmm import OverparamGMM
from overgmm.estimator._checks import ConstantFeatureWarning, FeatureOverflowError, FeatureUnderflowError


def data(seed=0):
    return np.random.default_rng(seed).normal(size=(300, 3))


@pytest.mark.parametrize("budget", [2**30, 1e4])  # in memory, then in chunks
def test_overflowing_feature_is_an_error(budget):
    X = data()
    X[17, 1] = 1e308
    est = OverparamGMM(covariance_type="diag", memory_budget=budget)
    with pytest.raises(FeatureOverflowError, match="feature 1 holds values too large for float64") as err:
        est.fit(X)
    assert err.value.feature == 1


@pytest.mark.parametrize("budget", [2**30, 1e4])  # in memory, then in chunks
def test_a_feature_too_small_for_float64_is_an_error_not_a_constant(budget):
    """Values of 1e-300: their variance underflows to 0. It was a constant-feature warning,
    then a fit of nonsense (or a FloatingPointError that asked for a larger var_floor)."""
    X = data()
    X[:, 1] *= 1e-300
    est = OverparamGMM(covariance_type="diag", memory_budget=budget)
    with pytest.raises(FeatureUnderflowError, match="feature 1 holds values too small for float64") as err:
        est.fit(X)
    assert err.value.feature == 1 and isinstance(err.value, FeatureOverflowError)


def test_small_scales_fit_the_model_of_scale_one_to_rounding():
    """Standardization makes the fit scale-free down to values of 1e-140: the same model,
    and the log-likelihood shifted by exactly -log(1e-140) per sample."""
    X = data()
    a = OverparamGMM(covariance_type="diag", random_state=0).fit(X)
    Y = X.copy()
    Y[:, 1] *= 1e-140
    b = OverparamGMM(covariance_type="diag", random_state=0).fit(Y)
    assert b.n_components_ == a.n_components_
    assert b.score(Y) - a.score(X) == pytest.approx(-np.log(1e-140), abs=1e-9)
    np.testing.assert_allclose(b.means_[:, 1] * 1e140, a.means_[:, 1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("budget", [2**30, 1e4])
def test_constant_feature_warns_and_names_it(budget):
    X = data()
    X[:, 2] = 5.0  # its computed variance is ~1e-30, not 0
    with pytest.warns(ConstantFeatureWarning, match=r"feature 2 is constant") as rec:
        OverparamGMM(covariance_type="diag", max_iter=20, memory_budget=budget).fit(X)
    assert [w.message.feature for w in rec if isinstance(w.message, ConstantFeatureWarning)] == [2]


def test_ordinary_features_raise_no_warning():
    import warnings

    X = data() * [1e-6, 1.0, 1e6] + [0.0, 1e3, -1e8]  # small, shifted or large scales are fine
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantFeatureWarning)
        OverparamGMM(covariance_type="diag", max_iter=20).fit(X)


@pytest.mark.filterwarnings("ignore::overgmm.estimator._checks.ConstantFeatureWarning")
@pytest.mark.parametrize("budget", [2**30, 1e4])  # in memory, then in chunks
@pytest.mark.parametrize("standardize", [True, False])
@pytest.mark.parametrize("value", [0.0, 5.0])
def test_a_constant_feature_keeps_the_variance_floor(value, standardize, budget):
    """A constant feature of value 5.0 or 0.1 has a computed variance of 1e-29 or so (the
    mean's rounding); it is still constant: its variance is var_floor (units of X, since
    its scale is 1), so a new value one unit off costs about 1 / (2 var_floor) nats, as
    for an exact zero, and not 1e30."""
    X = data()
    X[:, 2] = value
    est = OverparamGMM(covariance_type="diag", standardize=standardize, memory_budget=budget, random_state=0)
    est.fit(X)
    if standardize:
        assert est._scale[2] == 1.0
    assert np.all(est.covariances_[:, 2] >= est.var_floor * (1 - 1e-12))
    s = est.score_samples(np.array([[0.0, 0.0, value + 1.0]]))[0]
    assert -1.2 / (2 * est.var_floor) < s < -0.8 / (2 * est.var_floor)


def test_partial_fit_checks_every_batch_before_the_model_changes():
    """partial_fit skipped these checks: a first batch with 1e308 gave NaN means and a
    score of -inf, without an error."""
    import warnings

    X = data()
    big = X.copy()
    big[17, 1] = 1e308
    with pytest.raises(FeatureOverflowError, match="feature 1 holds values too large"):
        OverparamGMM(covariance_type="diag", n_components=5).partial_fit(big)
    tiny = X.copy()
    tiny[:, 0] *= 1e-300
    with pytest.raises(FeatureUnderflowError, match="feature 0 holds values too small"):
        OverparamGMM(covariance_type="diag", n_components=5).partial_fit(tiny)
    const = X.copy()
    const[:, 2] = 5.0
    with pytest.warns(ConstantFeatureWarning, match="feature 2 is constant"):
        OverparamGMM(covariance_type="diag", n_components=5).partial_fit(const)

    est = OverparamGMM(covariance_type="diag", n_components=5, random_state=0).partial_fit(X[:150])
    means, n_iter = est.means_.copy(), est.n_iter_
    with pytest.raises(FeatureOverflowError):  # a later batch: the model is left as it was
        est.partial_fit(big[:150])
    np.testing.assert_array_equal(est.means_, means)
    assert est.n_iter_ == n_iter
    with warnings.catch_warnings():  # one value of a feature in a later batch is not a constant feature
        warnings.simplefilter("error", ConstantFeatureWarning)
        est.partial_fit(const[150:])
    assert np.all(np.isfinite(est.means_)) and est.n_iter_ == n_iter + 1
