"""Algorithms: their update rules, invariants, and a catalogue of known optima."""

import jax
import numpy as np
import optax
import pytest

import overgmm as og

TEACHER = og.Mixture([[0.0, 0.0], [3.0, 0.5], [-1.0, 3.0]], [0.2, 0.3, 0.5])
# The algorithms are under test here, not the quadrature (tests/test_expectations.py,
# test_tails.py and test_products.py test the default rule): a coarser trapezoid rule (61
# nodes per axis, not 161) without the tail nodes, which the default adds at d <= 2 and
# which cost a compilation in every program. At these tests' students its gradient is
# within 3e-7 of the default's, relative (test_coarse_rule_agrees_with_the_default). The
# long Polyak-rate tests start near the teacher: nodes under the teacher alone suffice
# (the defensive rule adds nodes under every student, 3x the work).
TEACHER_NODES = og.Quadrature(defensive=False, tails="off", nodes=61)
RULE = og.Quadrature(tails="off", nodes=61)


def split_student(scale, seed=0):
    rng = np.random.default_rng(seed)
    a = np.repeat(np.arange(3), 2)
    return og.Mixture(
        np.asarray(TEACHER.means)[a] + scale * rng.normal(size=(6, 2)), np.asarray(TEACHER.weights)[a] / 2
    )


@pytest.mark.parametrize("scale", [0.3, 0.5])
def test_coarse_rule_agrees_with_the_default(scale):
    # what the choice of RULE above rests on: measured 8e-8 (loss) and 3e-7 (gradient) at
    # scale 0.3, 2e-8 and 6e-8 at 0.5; 1e-9 and 8e-9 at the 0.6 students
    student = split_student(scale)
    vals = [
        jax.jit(jax.value_and_grad(lambda s, q=q: og.kl(TEACHER, s, backend=q)))(student)
        for q in (og.Quadrature(), RULE)
    ]
    (v0, g0), (v1, g1) = vals
    assert abs(float(v1) / float(v0) - 1) < 1e-6
    assert np.max(np.abs(np.asarray(g1.means) - np.asarray(g0.means))) < 1e-6 * np.max(np.abs(np.asarray(g0.means)))


def test_gradient_em_step_is_gradient_descent():
    problem = og.Problem.population(TEACHER, backend=RULE)
    student = split_student(0.5)
    alg = og.gradient_em(problem, 0.7)
    new = alg.step(alg.init(student, jax.random.key(0))).student
    g = jax.grad(lambda m: og.kl(TEACHER, og.Mixture(m, student.weights), backend=RULE))(student.means)
    np.testing.assert_allclose(new.means, student.means - 0.7 * g, atol=1e-15)
    np.testing.assert_allclose(new.weights, student.weights, atol=1e-15)


def test_em_matches_direct_e_and_m_steps_on_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2)) + rng.integers(0, 2, size=(300, 1)) * 3
    student = og.Mixture(rng.normal(size=(3, 2)), [0.2, 0.3, 0.5])
    alg = og.em(og.Problem.from_data(X))
    new = alg.step(alg.init(student, jax.random.key(0))).student
    psi = np.asarray(student.responsibilities(X))
    np.testing.assert_allclose(new.weights, psi.mean(0), rtol=1e-12)
    np.testing.assert_allclose(new.means, (psi.T @ X) / psi.sum(0)[:, None], rtol=1e-12)


def test_em_never_decreases_likelihood():
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(size=(200, 2)), rng.normal(size=(100, 2)) + [4, 0]])
    problem = og.Problem.from_data(X)
    hist = og.run(og.em(problem), og.Mixture(rng.normal(size=(5, 2))), 30)
    assert np.all(np.diff(hist["loss"]) <= 1e-12)


def test_population_em_weights_are_control_variate_masses():
    problem = og.Problem.population(TEACHER, backend=RULE)
    student = split_student(0.3)
    alg = og.gradient_em(problem, 0.5, weights="em")
    new = alg.step(alg.init(student, jax.random.key(0))).student
    mass = og.expectation(lambda x: student.responsibilities(x), TEACHER, student)
    np.testing.assert_allclose(new.weights, mass / mass.sum(), atol=1e-12)


def test_solve_weights_reaches_the_convex_optimum():
    problem = og.Problem.population(TEACHER, backend=RULE)
    student = og.Mixture(np.asarray(TEACHER.means)[[0, 1, 2, 2]], [0.25] * 4)  # means exact, weights not
    alg = og.gradient_em(problem, 0.1, weights="solve", weight_tol=1e-13, max_weight_iter=2000)
    state = alg.step(alg.init(student, jax.random.key(0)))
    w = np.asarray(state.student.weights)
    np.testing.assert_allclose([w[0], w[1], w[2] + w[3]], [0.2, 0.3, 0.5], atol=1e-6)
    assert int(state.grad_evals) > 2


# the catalogue of algorithms crossed with the problems whose answer is known
ALGORITHMS = [
    lambda p: og.gradient_em(p, 1.0),
    lambda p: og.gradient_em(p, 1.0, weights="em"),
    lambda p: og.em(p),
    lambda p: og.polyak(p, 1.0, 3),
    lambda p: og.gradient_descent(p, 0.5, params="all"),
    lambda p: og.optax_method(p, optax.sgd(0.5, momentum=0.9)),
]


# not Adam here: it normalises a 1e-17 gradient into a step of size lr
@pytest.mark.parametrize("make", ALGORITHMS)
def test_split_teacher_is_a_fixed_point_of_every_algorithm(make):
    problem = og.Problem.population(TEACHER, backend=RULE)
    student = split_student(0.0)
    hist = og.run(make(problem), student, 8)
    assert np.max(np.abs(hist["loss"])) <= 1e-15
    np.testing.assert_allclose(hist.final.student.means, student.means, atol=1e-14)


@pytest.mark.parametrize("make", [*ALGORITHMS, lambda p: og.optax_method(p, optax.adam(3e-2))])
def test_every_algorithm_reduces_the_loss(make):
    problem = og.Problem.population(TEACHER, backend=RULE)
    hist = og.run(make(problem), split_student(0.6, seed=2), 40)
    assert hist["loss"][-1] < 0.3 * hist["loss"][0]


def test_scaled_polyak_is_linear_where_gradient_em_is_sublinear():
    problem = og.Problem.population(TEACHER, backend=TEACHER_NODES)
    student = split_student(0.6, seed=3)
    pol = og.run(og.polyak(problem, 1.0, 20), student, 210)
    gem = og.run(og.gradient_em(problem, 1.0), student, 210)
    assert pol["loss"][-1] < 1e-9
    assert gem["loss"][-1] > 1e-5
    envelope = pol["loss"][20::21]  # loss just before each long step
    assert np.all(np.diff(envelope) < 0)  # the loss before each long step keeps falling
    assert np.all(pol["polyak"][21::21]) and not np.any(pol["polyak"][1:21])


def test_polyak_long_step_formula_and_guard():
    problem = og.Problem.population(TEACHER, backend=RULE)
    student = split_student(0.4)
    alg = og.polyak(problem, 0.5, 1, scaled=True, gamma=2.0)
    s1 = alg.step(alg.init(student, jax.random.key(0)))  # short
    s2 = alg.step(s1)  # long
    loss, g = problem.value_and_grad(s1.student)
    p = 1 / np.asarray(s1.student.weights)
    pg = p[:, None] * np.asarray(g.means)
    expected = np.asarray(s1.student.means) - 2.0 * float(loss) / float(np.sum(np.asarray(g.means) * pg)) * pg
    np.testing.assert_allclose(s2.student.means, expected, atol=1e-13)
    assert bool(alg.method.long_step(s2)) and not bool(alg.method.long_step(s1))
    assert not bool(og.em(problem).method.long_step(s1))  # methods without long steps
    pruned = og.algorithms.with_pruning(alg, 1e-3).method  # a wrapper passes long steps on
    assert bool(pruned.long_step(s2)) and not bool(pruned.long_step(s1))
    # L <= L*: the long step is skipped, not reversed
    alg_hi = og.polyak(problem, 0.5, 1, loss_star=10.0)
    s2b = alg_hi.step(alg_hi.step(alg_hi.init(student, jax.random.key(0))))
    np.testing.assert_allclose(s2b.student.means, alg_hi.step(alg_hi.init(student)).student.means)


def test_polyak_reject_increase_never_raises_the_loss_at_long_steps():
    problem = og.Problem.population(og.Mixture([[0.0, 0.0]]), backend=RULE)
    student = og.Mixture([[1.0, 0.5], [-0.5, 0.2], [0.3, -1.0]], [0.2, 0.3, 0.5])
    hist = og.run(og.polyak(problem, 0.3, 2, scaled=False, loss_star=-1.0, reject_increase=True), student, 30)
    long = np.flatnonzero(hist["polyak"])
    assert len(long) == 10
    assert np.all(hist["loss"][long] <= hist["loss"][long - 1] + 1e-15)


def test_score_matching_gradient_descent_converges_s1_like():
    problem = og.Problem.score(og.Mixture([[0.0]]), 0.0)
    student = og.Mixture([[1.0], [1.2], [0.8]])
    hist = og.run(og.gradient_descent(problem, 0.5), student, 200, stride=10)
    assert hist["loss"][-1] < 1e-2 * hist["loss"][0]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: og.gradient_em(p, -1.0), "positive"),
        (lambda p: og.gradient_em(p, 1.0, weights="sometimes"), "unknown weight update"),
        (lambda p: og.polyak(p, 1.0, 0), "n_short"),
        (lambda p: og.gradient_descent(p, 1.0, params="weights"), "unknown params"),
        (lambda p: og.optax_method(p, "adam"), "optax"),
        (lambda p: og.em(og.Problem.score(TEACHER, 0.1)), "EM statistics"),
        (lambda p: og.Problem.score(TEACHER, -0.5), "noise level"),
    ],
)
def test_bad_algorithm_options(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make(og.Problem.population(TEACHER, backend=RULE))


def test_paper_literal_polyak_is_slower_than_scaled_at_equal_evaluations():
    problem = og.Problem.population(TEACHER, backend=TEACHER_NODES)
    student = split_student(0.6, seed=3)
    scaled = og.run(og.polyak(problem, 1.0, 20), student, 147)
    literal = og.run(og.polyak(problem, 1.0, 20, scaled=False), student, 147)
    assert literal["loss"][-1] > 10 * scaled["loss"][-1]


def test_polyak_with_em_weights_learns_the_weights():
    problem = og.Problem.population(TEACHER, backend=RULE)
    a = np.repeat(np.arange(3), 2)
    rng = np.random.default_rng(5)
    student = og.Mixture(np.asarray(TEACHER.means)[a] + 0.3 * rng.normal(size=(6, 2)))  # uniform weights
    hist = og.run(og.polyak(problem, 1.0, 10, weights="em"), student, 110)
    assert hist["weight_mismatch"][0] > 0.2
    assert hist["weight_mismatch"][-1] < 1e-3
    assert hist["loss"][-1] < 1e-4 * hist["loss"][0]


def test_gradient_descent_on_denoising_score_matching_data():
    teacher = og.Mixture([[0.0]])
    X0 = teacher.sample(jax.random.key(0), 4000)
    problem = og.Problem.denoising(X0, 0.5, n_noise=2)
    student = og.Mixture([[1.5], [1.0], [2.0]])
    hist = og.run(og.gradient_descent(problem, 1.0), student, 300, stride=30, key=jax.random.key(1))
    pop = og.Problem.score(teacher, 0.5)
    assert float(pop.loss(hist.final.student)) < 0.1 * float(pop.loss(student))
    assert "denoising" in hist.backend
    with pytest.raises(ValueError, match="t > 0"):
        og.Problem.denoising(X0, 0.0)


def test_unknown_objective_is_named():
    with pytest.raises(ValueError, match="unknown objective"):
        og.Problem("likelihood")


def test_em_with_fixed_weights_moves_only_the_means():
    problem = og.Problem.population(TEACHER, backend=RULE)
    student = split_student(0.5)
    alg = og.em(problem, update_weights=False)
    new = alg.step(alg.init(student, jax.random.key(0))).student
    np.testing.assert_allclose(new.weights, student.weights, atol=1e-15)
    assert not np.allclose(new.means, student.means)
    assert float(problem.loss(new)) < float(problem.loss(student))


def test_polyak_adaptive_level_converges_where_zero_target_overshoots():
    # Fixed weights that do not match the teacher's cluster masses: L* > 0.
    teacher = og.Mixture([[0.0, 0.0], [3.0, 1.0]], [0.3, 0.7])
    student = og.Mixture([[0.3, 0.1], [-0.2, 0.2], [2.8, 1.2], [3.3, 0.7]])  # uniform: cluster masses 0.5/0.5
    problem = og.Problem.population(teacher, backend=TEACHER_NODES)
    ad = og.run(og.polyak(problem, 1.0, 5, loss_star="adaptive"), student, 180)
    gem = og.run(og.gradient_em(problem, 1.0), student, 180)
    zero = og.run(og.polyak(problem, 1.0, 5), student, 180)
    long = np.flatnonzero(ad["polyak"])
    assert np.all(ad["loss"][long] <= ad["loss"][long - 1])
    assert ad["loss"][-1] <= gem["loss"][-1]
    level = float(ad.final.extra.level)
    assert 0.0 <= level <= ad["loss"][-1]
    assert zero["loss"].max() > ad["loss"].max()  # the zero target overshoots somewhere on the way


def test_polyak_adaptive_rejects_bad_option():
    problem = og.Problem.population(og.Mixture([[0.0]]), backend=RULE)
    with pytest.raises(ValueError, match="adaptive"):
        og.polyak(problem, 1.0, 3, loss_star="auto")


def test_polyak_adaptive_k_takes_long_steps_where_short_steps_align():
    teacher = og.Mixture([[0.0, 0.0], [3.0, 0.5], [-1.0, 3.0]], [0.2, 0.3, 0.5])
    rng = np.random.default_rng(0)
    a = np.repeat(np.arange(3), 3)
    student = og.Mixture(
        np.asarray(teacher.means)[a] + 0.7 * rng.normal(size=(9, 2)), np.asarray(teacher.weights)[a] / 3
    )
    problem = og.Problem.population(teacher, backend=TEACHER_NODES)
    ad = og.run(og.polyak(problem, 1.0, "adaptive"), student, 160)
    k10 = og.run(og.polyak(problem, 1.0, 10), student, 160)
    long = np.flatnonzero(ad["polyak"])
    assert len(long) >= 5 and np.all(np.diff(long) >= 9)  # at least min_short = 8 short steps between long ones
    assert ad["loss"].min() < 1e-10 and ad["loss"].min() <= 2 * k10["loss"].min()
    for bad in ({"n_short": "auto"}, {"n_short": "adaptive", "align": 1.5}, {"n_short": "adaptive", "min_short": 0}):
        with pytest.raises(ValueError):
            og.polyak(problem, 1.0, **bad)


def test_a_step_splits_the_key_only_where_the_evaluation_draws_from_it():
    """Deterministic problems (data, quadrature) keep the state's key as it is, so no
    PRNG rounds enter the step's program; fresh Monte Carlo and denoising score matching
    split it at every step, so that each step draws new samples."""
    X = TEACHER.sample(jax.random.key(0), 300)
    student = split_student(0.3)
    key = jax.random.key(7)
    data = og.em(og.Problem.from_data(X))
    state = data.step(data.init(student, key))
    assert np.array_equal(jax.random.key_data(state.key), jax.random.key_data(key))
    assert "threefry" not in jax.jit(data.step).lower(data.init(student, key)).as_text()
    fresh = og.gradient_em(og.Problem.population(TEACHER, backend=og.MonteCarlo(samples=256)), 1.0)
    state = fresh.step(fresh.init(student, key))
    assert not np.array_equal(jax.random.key_data(state.key), jax.random.key_data(key))
    crn = og.gradient_em(og.Problem.population(TEACHER, backend=og.MonteCarlo(samples=256, fresh=False)), 1.0)
    assert np.array_equal(jax.random.key_data(crn.step(crn.init(student, key)).key), jax.random.key_data(key))
    dsm = og.gradient_descent(og.Problem.denoising(X, 0.5), 0.1)
    assert not np.array_equal(jax.random.key_data(dsm.step(dsm.init(student, key)).key), jax.random.key_data(key))
