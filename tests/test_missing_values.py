"""Missing values (NaN, missing at random): the observed marginal density, and exact EM
statistics, for every covariance type, against brute-force references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

import overgmm as og
from overgmm.statistics import data_statistics

KINDS = ("identity", "spherical", "diag", "full", "tied")


def _student(rng, kind, n=3, d=3):
    a = rng.normal(size=(d, d))
    spd = a @ a.T + d * np.eye(d)
    cov = {
        "identity": None,
        "spherical": rng.uniform(0.5, 2, n),
        "diag": rng.uniform(0.5, 2, (n, d)),
        "full": np.stack([spd * rng.uniform(0.3, 1.5) for _ in range(n)]),
        "tied": spd * 0.5,
    }[kind]
    return og.Mixture(rng.normal(size=(n, d)) * 2, [0.2, 0.3, 0.5], covariances=cov, covariance_type=kind)


def _with_gaps(rng, N=60, d=3, rate=0.3):
    X = rng.normal(size=(N, d)) * 2
    gaps = rng.uniform(size=(N, d)) < rate
    gaps[0] = True  # a row with nothing observed
    gaps[1] = False  # a complete row
    return np.where(gaps, np.nan, X)


def _reference(m, X):
    """Per row: log p(x_o), responsibilities, and per component the conditional mean and
    covariance of the full row (NumPy / SciPy, one row at a time)."""
    mu, w, cov = np.asarray(m.means), np.asarray(m.weights), np.asarray(m.covariance_matrices)
    out = []
    for x in X:
        o = ~np.isnan(x)
        comp = np.array(
            [
                np.log(w[i]) + (multivariate_normal(mu[i][o], cov[i][np.ix_(o, o)]).logpdf(x[o]) if o.any() else 0.0)
                for i in range(len(w))
            ]
        )
        top = comp.max()
        ll = top + np.log(np.sum(np.exp(comp - top)))
        xhat, chat = [], []
        for i in range(len(w)):
            S, xh, C = cov[i], mu[i].copy(), np.zeros_like(cov[i])
            if (~o).any():
                m_ = ~o
                K = S[np.ix_(m_, o)] @ np.linalg.inv(S[np.ix_(o, o)]) if o.any() else np.zeros((m_.sum(), 0))
                xh[m_] = mu[i][m_] + (K @ (x[o] - mu[i][o]) if o.any() else 0.0)
                C[np.ix_(m_, m_)] = S[np.ix_(m_, m_)] - (K @ S[np.ix_(o, m_)] if o.any() else 0.0)
            xh[o] = x[o]
            xhat.append(xh)
            chat.append(C)
        out.append((ll, np.exp(comp - ll), np.array(xhat), np.array(chat)))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_observed_marginal_density_and_responsibilities(rng, kind):
    m = _student(rng, kind)
    X = _with_gaps(rng)
    ll, psi = (np.asarray(a) for a in m.log_posterior(X, missing=True))
    ref = _reference(m, X)
    np.testing.assert_allclose(ll, [r[0] for r in ref], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(psi, [r[1] for r in ref], rtol=1e-10, atol=1e-14)
    assert ll[0] == 0.0 and np.allclose(psi[0], np.asarray(m.weights))
    # complete rows: the same numbers as without missing values
    full = np.asarray(m.log_prob(X[1:2]))
    np.testing.assert_allclose(ll[1], full[0], rtol=1e-13)


@pytest.mark.parametrize("kind", KINDS)
def test_statistics_are_exact_em_on_the_observed_data(rng, kind):
    m = _student(rng, kind)
    X = _with_gaps(rng)
    w = rng.uniform(0.5, 2.0, X.shape[0])
    st = data_statistics(m, jnp.asarray(X), jnp.asarray(w), missing=True)
    ref = _reference(m, X)
    W = w.sum()
    ll = np.array([r[0] for r in ref])
    r = np.array([r[1] for r in ref]) * w[:, None]  # (N, n)
    np.testing.assert_allclose(float(st.loss), -(w @ ll) / W, rtol=1e-12)
    np.testing.assert_allclose(st.mass, r.sum(0) / W, rtol=1e-11)
    mu = np.asarray(m.means)
    xhat = np.array([q[2] for q in ref])  # (N, n, d)
    chat = np.array([q[3] for q in ref])  # (N, n, d, d)
    shift = np.einsum("kn,knd->nd", r, xhat - mu[None]) / W
    np.testing.assert_allclose(st.shift, shift, rtol=1e-10, atol=1e-13)
    if kind == "identity":
        return
    dev = xhat - mu[None]
    scatter = (np.einsum("kn,knd,kne->nde", r, dev, dev) + np.einsum("kn,knde->nde", r, chat)) / W
    expect = {
        "spherical": np.einsum("ndd->nd", scatter).mean(-1),
        "diag": np.einsum("ndd->nd", scatter),
        "full": scatter,
        "tied": scatter.sum(0),
    }[kind]
    np.testing.assert_allclose(st.scatter, expect, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("kind", ("diag", "full"))
def test_missing_statistics_agree_with_the_gradient_of_the_observed_nll(rng, kind):
    """Fisher's identity: shift_i = -Sigma_i dL/dmu_i and mass_i = pi_i - dL/da_i."""
    m = _student(rng, kind)
    X = jnp.asarray(_with_gaps(rng))
    st = data_statistics(m, X, jnp.ones(X.shape[0]), missing=True)
    loss, g = jax.value_and_grad(lambda s: -jnp.mean(s.log_prob(X, missing=True)))(m)
    np.testing.assert_allclose(st.loss, loss, rtol=1e-13)
    np.testing.assert_allclose(st.mass, m.weights - g.log_weights, rtol=1e-11, atol=1e-14)
    shift = -jnp.einsum("nde,ne->nd", m.covariance_matrices, g.means)
    np.testing.assert_allclose(st.shift, shift, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("kind", KINDS)
def test_without_gaps_the_missing_path_is_the_complete_one(rng, kind):
    m = _student(rng, kind)
    X = jnp.asarray(rng.normal(size=(40, 3)))
    w = jnp.ones(40)
    a, b = data_statistics(m, X, w), data_statistics(m, X, w, missing=True)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-11, atol=1e-13)


# ---- the estimator: OverparamGMM(allow_missing=True) --------------------------------


def _clusters(rng, N=400, correlated=True):
    """Two 3-D clusters (correlated features, or not), and the same rows with 25% of the
    entries missing."""
    a = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 1.0]]) if correlated else np.diag([1.0, 0.5, 2.0])
    X = np.concatenate([rng.multivariate_normal([0, 0, 0], a, N // 2), rng.multivariate_normal([6, 0, 3], a, N // 2)])
    gaps = rng.uniform(size=X.shape) < 0.25
    gaps[gaps.all(axis=1), 0] = False
    return X, np.where(gaps, np.nan, X)


def test_nan_is_an_error_that_names_the_option_unless_allowed(rng):
    X, Xm = _clusters(rng, 40)
    with pytest.raises(ValueError, match="(?s)NaN.*allow_missing=True"):
        og.OverparamGMM(n_components=2).fit(Xm)
    assert not og.OverparamGMM().__sklearn_tags__().input_tags.allow_nan
    assert og.OverparamGMM(allow_missing=True).__sklearn_tags__().input_tags.allow_nan
    bad = Xm.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="no observed value.*first row 3"):
        og.OverparamGMM(allow_missing=True).fit(bad)
    bad = Xm.copy()
    bad[5, 1] = np.inf
    with pytest.raises(ValueError, match="infinity|inf"):
        og.OverparamGMM(allow_missing=True).fit(bad)
    with pytest.raises(ValueError, match="'allow_missing' parameter must be a bool"):
        og.OverparamGMM(allow_missing="yes").fit(X)


@pytest.mark.parametrize("kind", ("full", "diag"))
def test_a_fit_with_gaps_beats_imputing_and_scores_rows_by_their_observed_features(rng, kind):
    from scipy.stats import multivariate_normal as mvn
    from sklearn.impute import SimpleImputer

    X, Xm = _clusters(rng, correlated=kind == "full")
    est = og.OverparamGMM(random_state=0, covariance_type=kind, allow_missing=True).fit(Xm)
    imputed = og.OverparamGMM(random_state=0, covariance_type=kind).fit(SimpleImputer().fit_transform(Xm))
    assert est.n_components_ == 2
    # the complete rows' log-likelihood: mean imputation shrinks every variance, exact EM does not
    assert est.score(X) > imputed.score(X) + 0.1, (est.score(X), imputed.score(X))
    # a row with one observed feature is scored by the fitted mixture's 1-D marginal
    row = np.array([[np.nan, 0.5, np.nan]])
    cov = est.covariances_ if kind == "full" else np.stack([np.diag(c) for c in est.covariances_])
    ref = np.log(sum(w * mvn(m[1], c[1, 1]).pdf(0.5) for w, m, c in zip(est.weights_, est.means_, cov, strict=True)))
    np.testing.assert_allclose(est.score_samples(row)[0], ref, rtol=1e-10)
    proba = est.predict_proba(Xm)
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1.0)
    truth = np.repeat([0, 1], len(X) // 2)
    labels = est.predict(Xm)
    # about 6% of the rows miss both separating features (0 and 2) and are a coin toss
    assert max(np.mean(labels == truth), np.mean(labels != truth)) > 0.93


def test_partial_fit_takes_gaps(rng):
    X, Xm = _clusters(rng, 40)
    est = og.OverparamGMM(n_components=2, covariance_type="diag", allow_missing=True, random_state=0)
    est.partial_fit(Xm).partial_fit(Xm)
    assert est.n_iter_ == 2 and np.isfinite(est.lower_bounds_).all()


def test_observed_precision_and_inverse_lower_match_numpy(rng):
    """The missing-value E-step's own linear algebra (no LAPACK custom calls), batched: each
    row's observed-block precision by one Schur complement per gap, with the gaps' rows and
    columns exactly 0, the log-determinant change, the loop skipping the gap slots no row
    reaches (at most 2 gaps here), and gradients through it; ``inverse_lower`` against numpy."""
    from overgmm.covariances.base import inverse_lower, observed_precision

    d = 6
    a = rng.normal(size=(3, d, d))
    spd = a @ np.swapaxes(a, -1, -2) + d * np.eye(d)
    prec = np.linalg.inv(spd)
    o = np.ones((5, d))
    o[0, [1, 4]] = o[1, 0] = o[2, 5] = o[4, [2, 3]] = 0.0  # row 3 complete
    p_o, corr = (np.asarray(v) for v in observed_precision(jnp.asarray(prec), jnp.asarray(o)))
    for b in range(5):
        seen = o[b] > 0
        for k in range(3):
            block = spd[k][np.ix_(seen, seen)]
            want = np.zeros((d, d))
            want[np.ix_(seen, seen)] = np.linalg.inv(block)
            np.testing.assert_allclose(p_o[b, k], want, rtol=1e-11, atol=1e-14)
            assert np.all(p_o[b, k][~seen] == 0.0) and np.all(p_o[b, k][:, ~seen] == 0.0)
            want_corr = np.linalg.slogdet(block)[1] - np.linalg.slogdet(spd[k])[1]
            np.testing.assert_allclose(corr[b, k], want_corr, rtol=1e-11, atol=1e-13)

    def logdet_sum(pr):
        return jnp.sum(observed_precision(pr, jnp.asarray(o))[1])

    g = np.asarray(jax.grad(logdet_sum)(jnp.asarray(prec)))
    h = 1e-6
    e = np.zeros_like(prec)
    e[1, 2, 3] = e[1, 3, 2] = h  # a symmetric perturbation
    fd = (float(logdet_sum(jnp.asarray(prec + e))) - float(logdet_sum(jnp.asarray(prec - e)))) / (2 * h)
    np.testing.assert_allclose(g[1, 2, 3] + g[1, 3, 2], fd, rtol=1e-6)
    low = np.linalg.cholesky(spd)
    inv = np.asarray(inverse_lower(jnp.asarray(low)))
    np.testing.assert_allclose(inv, np.linalg.inv(low), rtol=1e-11, atol=1e-14)
    assert np.all(np.triu(inv, 1) == 0.0)  # lower triangular, exactly


def test_with_gaps_polishes_between_merges_are_capped_and_the_last_fits_to_tol(rng, monkeypatch):
    """With gaps, a polishing fit that more merges may follow stops after POLISH_STEPS (EM on
    the observed values crawls there: wine's "full" candidate took 23 s); the fit still ends
    with a polish run to tol (max_iter steps allowed) and converges. Without gaps: no cap."""
    from overgmm.estimator import _fit as F

    calls = []
    real = F.InMemory.solve

    def spy(self, students, keys, max_iter, tol):
        sol = real(self, students, keys, max_iter, tol)
        calls.append((max_iter, int(sol.status[0])))  # status 0: stopped on tol, 2: on max steps
        return sol

    monkeypatch.setattr(F.InMemory, "solve", spy)
    X, Xm = _clusters(rng)
    for data, capped in ((Xm, True), (X, False)):
        calls.clear()
        est = og.OverparamGMM(random_state=0, covariance_type="full", allow_missing=True, max_iter=300).fit(data)
        assert est.converged_ and est.n_merges_ > 0 and est.n_components_ == 2
        assert any(steps == F.POLISH_STEPS for steps, _ in calls[1:]) is capped
        assert {steps for steps, _ in calls} <= {300, F.POLISH_STEPS} and calls[-1][1] == 0
