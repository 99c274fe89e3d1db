"""Pruning, moment matching, merge candidates and costs, merge rounds (overgmm.reduce)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import overgmm as og

KINDS = ("identity", "spherical", "diag", "full", "tied")
COV3 = {"identity": None, "spherical": np.ones(3), "diag": np.ones((3, 2)), "full": np.stack([np.eye(2)] * 3)}
COV3["tied"] = np.eye(2)  # one covariance for all three


def test_prune_zeroes_small_weights_but_never_the_heaviest():
    s = og.Mixture(np.zeros((3, 1)), [0.005, 0.015, 0.98])
    p = og.reduce.prune(s, 0.01)
    np.testing.assert_array_equal(np.asarray(p.weights) == 0, [True, False, False])
    np.testing.assert_allclose(float(jnp.sum(p.weights)), 1.0)
    assert np.asarray(og.reduce.prune(s, 0.999).live).tolist() == [False, False, True]


@pytest.mark.parametrize("kind", ("spherical", "diag", "full"))
def test_moment_match_keeps_mean_and_covariance_of_the_pair(rng, kind):
    d = 2
    cov = {
        "spherical": np.array([0.5, 2.0]),
        "diag": np.array([[0.5, 1], [2, 0.3]]),
        "full": np.array([[[1, 0.3], [0.3, 1]], [[2, -0.5], [-0.5, 0.7]]]),
    }[kind]
    s = og.Mixture([[0.0, 1.0], [2.0, -1.0]], [0.25, 0.75], covariances=cov)
    lw, mu, c = og.reduce.moment_match(s, 0, 1)
    x = np.asarray(s.sample(jax.random.key(0), 400_000))
    np.testing.assert_allclose(float(jnp.exp(lw)), 1.0)
    np.testing.assert_allclose(np.asarray(mu), x.mean(0), atol=0.01)
    emp = np.cov(x.T)
    ref = {"spherical": np.trace(emp) / d, "diag": np.diag(emp), "full": emp}[kind]
    np.testing.assert_allclose(np.asarray(c), ref, rtol=0.02, atol=0.01)


@pytest.mark.parametrize("kind", KINDS)
def test_merge_round_merges_duplicates_and_keeps_distinct_clusters(kind):
    X = og.Mixture([[-4.0, 0.0], [4.0, 0.0]]).sample(jax.random.key(0), 4000)
    s = og.Mixture([[-4.0, 0.0], [-4.0, 0.01], [4.0, 0.0]], covariances=COV3[kind], covariance_type=kind)
    problem = og.Problem.from_data(X)
    costs = np.asarray(og.reduce.pair_costs(problem, s))
    assert costs[0, 1] < 1e-4 and costs[0, 2] > 0.3 and costs[1, 2] > 0.3
    new, k = og.reduce.merge_round(problem, s, 0.01)
    assert int(k) == 1
    np.testing.assert_allclose(np.asarray(new.weights), [2 / 3, 0, 1 / 3], atol=1e-12)
    assert new.n_components == 3  # shapes stay fixed
    if kind == "tied":  # the shared covariance gains the pair's between scatter, as the cost assumes
        pi, delta = np.asarray(s.weights), np.asarray(s.means[0] - s.means[1])
        wide = np.eye(2) + pi[0] * pi[1] / (pi[0] + pi[1]) * np.outer(delta, delta)
        np.testing.assert_allclose(np.asarray(new.covariances), wide, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_a_merge_round_with_every_pair_measured_holds_no_scatter(kind):
    """Small data measures every pair: the pairs are NumPy constants, so the merge round's
    program gathers by them and scatters nothing (a scatter of traced indices compiled to
    a loop of its own in the compile-speed build, five per program)."""
    s = og.Mixture([[-4.0, 0.0], [-4.0, 0.01], [4.0, 0.0]], covariances=COV3[kind], covariance_type=kind)
    X = og.Mixture([[-4.0, 0.0], [4.0, 0.0]]).sample(jax.random.key(0), 200)
    text = jax.jit(og.reduce.merge_round).lower(og.Problem.from_data(X), s, 0.01).as_text()
    assert "scatter" not in text


@pytest.mark.parametrize("kind", KINDS)
def test_runnalls_bound_is_zero_for_coincident_components_and_grows_apart(kind):
    s = og.Mixture([[0.0, 0.0], [0.0, 0.0], [3.0, 0.0]], [0.2, 0.3, 0.5], covariances=COV3[kind], covariance_type=kind)
    b = np.asarray(og.reduce.runnalls_bound(s, jnp.array([0, 0, 1]), jnp.array([1, 2, 2])))
    np.testing.assert_allclose(b[0], 0.0, atol=1e-12)
    assert b[1] > 0.1 and b[2] > b[1]  # the heavier pair across the gap costs more


@pytest.mark.parametrize("kind", ("spherical", "full"))
def test_merge_costs_are_measured_for_the_candidates_and_the_cheapest_pair_is_one(rng, kind):
    """With more pairs than CANDIDATES * n, only the candidates are measured on the data (the
    others are NaN, an infinite cost). On a fitted student (what the estimator merges) the
    exhaustively cheapest pair is among them, and each measured cost is the exhaustive one."""
    n, d = 8, 2
    X = jnp.asarray(rng.normal(size=(3000, d)) * [3.0, 1.0])
    means = rng.normal(size=(n, d)) * [3.0, 1.0]
    cov = {"spherical": np.ones(n), "full": np.stack([np.eye(d)] * n)}[kind]
    problem = og.Problem.from_data(X)
    start = og.Mixture(means, rng.dirichlet(np.ones(n) * 5), covariances=cov)
    s = og.solve(og.em(problem), start, max_steps=300, tol=1e-10).final.student
    ii, jj, idx = og.reduce.candidate_pairs(s)
    assert ii.shape == (og.reduce.CANDIDATES * n,)
    sums = np.asarray(og.reduce.pair_cost_sums(s, X, jnp.ones(3000), problem.floor))
    assert np.isnan(sums).sum() == n * (n - 1) // 2 - og.reduce.CANDIDATES * n
    full_ll = float(jnp.mean(s.log_prob(X)))
    mu_all, cov_all, w_all = np.asarray(s.means), np.asarray(s.covariances), np.asarray(s.weights)
    exhaustive = {}
    for i in range(n):
        for j in range(i + 1, n):
            lw, mu, c = og.reduce.moment_match(s, i, j)
            keep = [k for k in range(n) if k not in (i, j)]
            m = og.Mixture(
                np.vstack([mu_all[keep], np.asarray(mu)]),
                np.append(w_all[keep], np.exp(float(lw))),
                covariances=np.concatenate([cov_all[keep], np.asarray(c)[None]]),
            )
            exhaustive[i, j] = full_ll - float(jnp.mean(m.log_prob(X)))
    costs = np.asarray(og.reduce.pair_costs(problem, s))
    assert np.isfinite(costs[min(exhaustive, key=exhaustive.get)])
    measured = [(i, j) for (i, j) in exhaustive if np.isfinite(costs[i, j])]
    assert len(measured) == og.reduce.CANDIDATES * n
    for i, j in measured:
        np.testing.assert_allclose(costs[i, j], exhaustive[i, j], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", ("spherical", "diag", "full"))
def test_merging_duplicates_keeps_their_covariance_under_a_floor(kind):
    """Regression: a full merge added the variance floor again on top of the floor its parts
    already held, inflating merge costs (a split cluster in d = 10 stayed split at 1e5 rows)."""
    cov = {"spherical": np.full(3, 0.5), "diag": np.full((3, 2), 0.5), "full": np.stack([np.eye(2) * 0.5] * 3)}[kind]
    s = og.Mixture([[-4.0, 0.0], [-4.0, 0.0], [4.0, 0.0]], covariances=cov)
    X = s.sample(jax.random.key(1), 4000)
    problem = og.Problem.from_data(X, var_floor=0.1)
    new, k = og.reduce.merge_round(problem, s, 0.01)
    assert int(k) == 1
    np.testing.assert_allclose(np.asarray(new.covariances)[0], cov[0], rtol=1e-12)


def test_a_tied_merge_cost_is_the_loss_with_the_shared_covariance_widened(rng):
    """ "tied": each pair's cost is the exact loss of the mixture in which the pair is replaced
    by its moment-matched merge and the shared covariance gains the pair's between scatter,
    ``Sigma + pi_i pi_j / (pi_i + pi_j) delta delta^T`` (a rank-one update: checked against
    the mixture built and evaluated directly, with and without missing entries); the pieces of
    one Gaussian cost about 0."""
    n, d = 5, 3
    X = jnp.asarray(rng.normal(size=(2000, d)) @ np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.7]]))
    A = rng.normal(size=(d, d))
    shared = A @ A.T + np.eye(d)
    s = og.Mixture(
        rng.normal(size=(n, d)) * 1.5, rng.dirichlet(np.ones(n) * 3), covariances=shared, covariance_type="tied"
    )
    w = jnp.asarray(rng.uniform(0.5, 2.0, size=2000))
    gappy = np.array(X)
    gappy[rng.random(gappy.shape) < 0.25] = np.nan  # some rows with nothing observed too
    mu_all, pi = np.asarray(s.means), np.asarray(s.weights)
    ii, jj = np.triu_indices(n, k=1)
    for rows, missing in ((X, False), (jnp.asarray(gappy), True)):
        sums = np.asarray(og.reduce.pair_cost_sums(s, rows, w, jnp.zeros(d), missing))
        ll = np.asarray(s.log_prob(rows, missing=missing))
        for p, (i, j) in enumerate(zip(ii, jj, strict=True)):
            delta = mu_all[i] - mu_all[j]
            wide = shared + pi[i] * pi[j] / (pi[i] + pi[j]) * np.outer(delta, delta)
            keep = [k for k in range(n) if k not in (i, j)]
            merged_mu = (pi[i] * mu_all[i] + pi[j] * mu_all[j]) / (pi[i] + pi[j])
            m = og.Mixture(
                np.vstack([mu_all[keep], merged_mu]),
                np.append(pi[keep], pi[i] + pi[j]),
                covariances=wide,
                covariance_type="tied",
            )
            want = float(np.sum(np.asarray(w) * (ll - np.asarray(m.log_prob(rows, missing=missing)))))
            np.testing.assert_allclose(sums[p], want, rtol=1e-9, atol=1e-8)
    # one Gaussian cut in two (tied, fitted): merging the pieces costs nothing like the old,
    # covariance-kept cost
    Y = jnp.asarray(rng.normal(size=(4000, 2)))
    start = og.Mixture([[-0.8, 0.0], [0.8, 0.0]], covariances=np.eye(2), covariance_type="tied")
    problem = og.Problem.from_data(Y)
    fitted = og.solve(og.em(problem), start, max_steps=500, tol=1e-12).final.student
    cost = float(np.asarray(og.reduce.pair_costs(problem, fitted))[0, 1])
    assert -1e-3 < cost < 2e-3


def test_merge_loss_and_logaddexp_are_exact_over_the_whole_float64_range():
    """The merge costs' row pass computes ``-log(others + exp(t))`` and ``log(e^a + e^b)``
    without ``jnp.logaddexp`` (5-10x slower there): equal to NumPy's ``logaddexp`` to rounding
    where exp(t) overflows (t > 709), underflows (t < -745, others 0 or tiny), and at -inf."""
    from overgmm.reduce import _logaddexp, _loss_of_merge

    t = np.array([-np.inf, -2000.0, -750.0, -746.0, -700.0, -30.0, 0.0, 1.5, 700.0, 709.9, 720.0, 1e4])
    for others in (0.0, 1e-300, 0.3, 1.0):  # (XLA:CPU flushes subnormal numbers to 0)
        S = np.full_like(t, others)
        with np.errstate(divide="ignore"):
            ref = -np.logaddexp(np.log(S), t)
        got = np.asarray(_loss_of_merge(jnp.asarray(S), jnp.asarray(t)))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
        fin = np.isfinite(ref)
        np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-14, atol=1e-14)
    a = np.array([-np.inf, -np.inf, -1e4, -800.0, 0.0, 3.0, 750.0, 1e4])
    b = np.array([-np.inf, 2.0, -1e4 + 1, 10.0, -800.0, 3.0, -750.0, 1e4])
    np.testing.assert_allclose(np.asarray(_logaddexp(jnp.asarray(a), jnp.asarray(b))), np.logaddexp(a, b), rtol=1e-15)
