"""The driver: history layout, batching, failure handling, compilation and dtypes."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import overgmm as og

TEACHER = og.Mixture([[0.0], [3.0]], [0.4, 0.6])


def students(b):
    rng = np.random.default_rng(0)
    return [og.Mixture(rng.normal(size=(3, 1)) * 2) for _ in range(b)]


def test_history_layout_and_measures():
    problem = og.Problem.population(TEACHER)
    hist = og.run(og.polyak(problem, 1.0, 4), students(1)[0], 20, stride=5)
    assert hist["loss"].shape == (5,)
    np.testing.assert_array_equal(hist["step"], [0, 5, 10, 15, 20])
    assert hist["bias"].shape == (5, 2) and hist["dispersion"].shape == (5, 2)
    for name in ("grad_norm", "param_dist", "weight_mismatch", "active", "max_norm", "U", "polyak", "grad_evals"):
        assert name in hist.columns
    assert hist["polyak"].sum() == 4  # one long step in every window of 5
    assert hist.ok and "quadrature(trapezoid, r=1" in hist.backend
    assert hist["loss"].dtype == np.float64 and hist.final.student.means.dtype == jnp.float64
    rows = hist.to_rows()
    assert len(rows) == 5 and "bias_1" in rows[0]


def test_batch_equals_single_runs():
    problem = og.Problem.population(TEACHER)
    alg = og.gradient_em(problem, 0.8, weights="em")
    ss = students(3)
    batch = og.run_batch(alg, og.stack(ss), 15, stride=5)
    assert batch["loss"].shape == (3, 4)
    for b, s in enumerate(ss):
        single = og.run(alg, s, 15, stride=5)
        np.testing.assert_allclose(batch["loss"][b], single["loss"], rtol=1e-12)


def test_non_finite_run_keeps_history_and_warns():
    X = np.array([[0.0], [1.0], [2.0]])
    problem = og.Problem.from_data(X)
    student = og.Mixture([[0.5], [1.5]])
    with pytest.warns(RuntimeWarning, match="non-finite"):
        hist = og.run(og.gradient_descent(problem, 1e308), student, 10)
    assert not hist.ok and int(hist.failed_at) >= 1
    assert hist.status_text == [og.driver.STATUS[1]]
    assert np.all(np.isfinite(hist.final.student.means))
    assert np.isfinite(hist["loss"][0])


def test_second_run_does_not_recompile():
    problem = og.Problem.population(TEACHER)
    alg = og.gradient_em(problem, 0.5)
    step = jax.jit(alg.step)
    state = alg.init(students(1)[0], jax.random.key(0))
    step(state)
    n_before = step._cache_size()
    step(step(state))
    assert step._cache_size() == n_before


def test_fresh_monte_carlo_run_is_seeded():
    problem = og.Problem.population(TEACHER, backend=og.MonteCarlo(samples=2000))
    alg = og.gradient_em(problem, 0.5)
    a = og.run(alg, students(1)[0], 5, key=jax.random.key(1))
    b = og.run(alg, students(1)[0], 5, key=jax.random.key(1))
    c = og.run(alg, students(1)[0], 5, key=jax.random.key(2))
    np.testing.assert_array_equal(a["loss"], b["loss"])
    assert not np.array_equal(a["loss"], c["loss"])
    assert "monte-carlo" in a.backend


def test_a_seed_in_place_of_a_key_is_named():
    """It was JAX's "invalid PRNG key data" from inside jax.random."""
    alg = og.gradient_em(og.Problem.population(TEACHER), 0.5)
    with pytest.raises(TypeError, match=r"key must be a PRNG key such as jax.random.key\(3\)"):
        og.run(alg, students(1)[0], 5, key=3)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda alg, s: og.run(alg, s, 10, stride=3), "multiple of stride"),
        (lambda alg, s: og.run(alg, s, 0), "positive integer"),
        (lambda alg, s: og.run(alg, og.Mixture([[0.0, 1.0]]), 5), "dimension"),
        (lambda alg, s: og.run_batch(alg, s, 5), "batch axis"),
        (lambda alg, s: og.stack([s, og.Mixture([[0.0]])]), "same shape"),
    ],
)
def test_bad_run_arguments(call, match):
    alg = og.gradient_em(og.Problem.population(TEACHER), 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=match):
            call(alg, students(1)[0])


def test_record_adds_per_record_fields_and_tidy_rows():
    teacher = og.Mixture([[0.0, 0.0], [3.0, 1.0]], [0.4, 0.6])
    alg = og.gradient_em(og.Problem.population(teacher), 1.0)
    student = og.Mixture([[0.5, 0.0], [2.5, 1.0]], [0.4, 0.6])
    hist = og.run(alg, student, 4, stride=2, record=("means", "weights"))
    assert hist["means"].shape == (3, 2, 2) and hist["weights"].shape == (3, 2)
    np.testing.assert_allclose(hist["means"][-1], np.asarray(hist.final.student.means))
    rows = hist.to_rows()
    assert rows[-1]["means_1_0"] == pytest.approx(float(hist["means"][-1, 1, 0]))
    with pytest.raises(ValueError, match="unknown record field"):
        og.run(alg, student, 2, record=("banana",))


@pytest.mark.parametrize(
    "name", ["polyak", "gradient_em", "gradient_em_tail_nodes", "em_on_data", "gradient_descent_on_data"]
)
def test_a_run_recorded_every_step_reuses_the_measured_evaluation_and_matches_stepping_by_hand(name, monkeypatch):
    """With stride 1 the step starts from the state just measured and reuses its evaluation
    (Problem.measure, Problem.remember): one evaluation traced per step, and the numbers of
    stepping by hand. With the tail nodes active (the default in d = 1) the evaluation is the
    KL's EM statistics, which the step reads; tails="off" takes the gradient path; on data
    (identity covariances) the evaluation is the data's EM statistics, and gradient descent
    reads its gradient from them."""
    X = np.asarray(TEACHER.sample(jax.random.key(5), 64))
    bulk = og.Quadrature(tails="off")
    problem = {
        "em_on_data": og.Problem.from_data(X),
        "gradient_descent_on_data": og.Problem.from_data(X),
        "gradient_em_tail_nodes": og.Problem.population(TEACHER),
    }.get(name, og.Problem.population(TEACHER, backend=bulk))
    factories = {
        "polyak": lambda: og.polyak(problem, 1.0, 3, loss_star="adaptive"),
        "em_on_data": lambda: og.em(problem),
        # every parameter: the step reads the whole gradient, which the measured statistics give
        "gradient_descent_on_data": lambda: og.gradient_descent(problem, 0.5, params="all"),
    }
    alg = factories.get(name, lambda: og.gradient_em(problem, 0.8, weights="em"))()
    student = students(1)[0]
    traced = []
    loss, tail_statistics, on_data = og.Problem.loss, og.problem.kl_em_statistics, og.problem.data_statistics
    monkeypatch.setattr(og._executables, "_store", lambda: None)  # traced here, not loaded from a store
    monkeypatch.setattr(og.Problem, "loss", lambda self, s, key=None: traced.append(1) or loss(self, s, key))
    monkeypatch.setattr(og.problem, "kl_em_statistics", lambda *a, **k: traced.append(1) or tail_statistics(*a, **k))
    monkeypatch.setattr(og.problem, "data_statistics", lambda *a, **k: traced.append(1) or on_data(*a, **k))
    hist = og.run(alg, student, 6, key=jax.random.key(2))
    # the first record, the step (reused), the record after it; the Polyak method's check of
    # its long step (``reject_increase``) is one more, at the stepped student
    assert len(traced) == (3 if name == "polyak" else 2)
    monkeypatch.undo()

    state = alg.init(student, jax.random.key(2))
    step = jax.jit(alg.step)
    losses, norms = [], []
    for _ in range(7):
        value, g = problem.value_and_grad(state.student, jax.random.key(0))  # tail nodes: their gradient
        losses.append(float(value))
        norms.append(float(jnp.sqrt(jnp.sum(g.means**2))))
        state = step(state)
    np.testing.assert_allclose(hist["loss"], losses, rtol=1e-12)
    np.testing.assert_allclose(hist["grad_norm"], norms, rtol=1e-10)


def test_remember_serves_only_that_student_object_and_never_a_fresh_draw():
    problem = og.Problem.population(TEACHER)
    s = students(1)[0]
    fake = og.Mixture(np.zeros((3, 1)))
    known = problem.remember(s, og.problem.Evaluation(jnp.asarray(-1.0), fake, None))
    value, g = known.value_and_grad(s)
    assert float(value) == -1.0 and g is fake and float(known.loss(s)) == -1.0
    twin = og.Mixture(np.asarray(s.means))  # equal values, another object: evaluated
    assert float(known.loss(twin)) == pytest.approx(float(problem.loss(s)), rel=1e-12) and float(known.loss(twin)) > 0
    st = problem.statistics(s)
    by_statistics = problem.remember(s, og.problem.Evaluation(jnp.asarray(-1.0), None, st))
    assert by_statistics.statistics(s) is st and float(by_statistics.loss(s)) == -1.0
    # identity covariances: no gradient remembered, the statistics give it (dL/da = pi - E[psi])
    value, g = by_statistics.value_and_grad(s)
    _, evaluated = problem.value_and_grad(s)
    assert float(value) == -1.0
    np.testing.assert_allclose(g.means, evaluated.means, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(g.log_weights, evaluated.log_weights, rtol=1e-9, atol=1e-15)
    fresh = og.Problem.population(TEACHER, backend=og.MonteCarlo(samples=100))
    assert not fresh.deterministic and fresh.remember(s, og.problem.Evaluation(jnp.asarray(-1.0), fake, None)) is fresh
    assert problem.deterministic and og.Problem.population(TEACHER, backend=og.MonteCarlo(fresh=False)).deterministic
