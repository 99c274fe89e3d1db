"""overgmm._eager: eager calls of the numerical API compile one program per shape, and the
same functions still trace inline under jit / grad / vmap."""

import jax
import jax.monitoring
import numpy as np
import pytest

import overgmm as og
from overgmm._eager import compiled_when_eager

COMPILES: list[str] = []


def _listener(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        COMPILES.append(str(kwargs.get("fun_name")))


@pytest.fixture(autouse=True, scope="module")
def _count_compilations():
    jax.monitoring.register_event_duration_secs_listener(_listener)
    yield
    from jax._src import monitoring  # the public module has no unregister in this JAX

    monitoring.unregister_event_duration_listener(_listener)


def _compiles(fn):
    COMPILES.clear()
    out = fn()
    jax.block_until_ready(out)
    return list(COMPILES)


def test_an_eager_density_is_one_program_and_a_repeat_compiles_nothing():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(3, 5, 5))
    m = og.Mixture(rng.normal(size=(3, 5)), [0.2, 0.5, 0.3], covariances=a @ a.transpose(0, 2, 1) + np.eye(5))
    x = rng.normal(size=(13, 5))  # a shape no other test uses
    assert len(_compiles(lambda: m.log_prob(x))) <= 1  # op by op it was 36 programs
    assert _compiles(lambda: m.log_prob(x)) == []
    assert _compiles(lambda: m.responsibilities(x)) == []  # the same program


def test_an_eager_kl_does_not_recompile_on_a_second_call():
    teacher = og.Mixture([[0.0, 0.0, 0.0], [2.5, 0.5, -1.0]], [0.4, 0.6])
    student = og.Mixture([[0.1, 0.0, 0.1], [2.4, 0.6, -0.9], [1.0, 1.0, 1.0]], [0.3, 0.4, 0.3])
    first = og.kl(teacher, student)
    assert _compiles(lambda: og.kl(teacher, student)) == []  # its quadrature loop compiled again before
    est = og.kl(teacher, student, with_error=True)  # an Estimate: values compiled, its text from shapes
    assert _compiles(lambda: og.kl(teacher, student, with_error=True).value) == []
    same_rule = og.expectations.expectation(lambda x: x[:, 0], teacher, student, importance=True, with_error=True)
    assert est.backend == same_rule.backend and float(est.value) == float(first) and float(est.error) > 0
    # the same value under jit and through grad (traced inline, not through the eager program)
    np.testing.assert_allclose(jax.jit(og.kl)(teacher, student), first, rtol=1e-13)
    g = jax.grad(lambda mu: og.kl(teacher, og.Mixture(mu, student.weights)))(student.means)
    assert g.shape == (3, 3) and np.all(np.isfinite(g))


def test_traced_arguments_run_inline_and_concrete_ones_through_jit():
    calls = []

    @compiled_when_eager(static_argnames=("power",))
    def f(x, *, power):
        calls.append(isinstance(x, jax.core.Tracer))
        return x**power

    np.testing.assert_allclose(f(np.arange(3.0), power=2), [0.0, 1.0, 4.0])
    assert calls == [True]  # traced once, by jit
    f(np.arange(3.0) + 1, power=2)
    assert calls == [True]  # the compiled program, not traced again
    np.testing.assert_allclose(jax.vmap(lambda v: f(v, power=3))(np.ones((2, 3))), np.ones((2, 3)))
    assert calls[-1] is True and len(calls) == 2  # inline under vmap: traced by vmap itself


def test_eager_merge_round_and_e_step_sums_are_one_program_each_and_equal_the_traced_ones():
    """og.reduce and og.statistics called eagerly (as a user or a test does) compile one program
    per call and shape, not one per primitive (merge_round op by op: about 50 programs)."""
    rng = np.random.default_rng(11)
    X = rng.normal(size=(211, 3))  # shapes no other test uses
    a = rng.normal(size=(5, 3, 3))
    s = og.Mixture(rng.normal(size=(5, 3)), np.full(5, 0.2), covariances=a @ a.transpose(0, 2, 1) + np.eye(3))
    problem = og.Problem.from_data(X)
    first = _compiles(lambda: og.reduce.merge_round(problem, s, 0.05))
    assert len(first) <= 1 and _compiles(lambda: og.reduce.merge_round(problem, s, 0.05)) == []
    w = np.ones(211)
    assert len(_compiles(lambda: og.statistics.data_statistics(s, X, w))) <= 1
    eager_merged, eager_k = og.reduce.merge_round(problem, s, 0.05)
    traced_merged, traced_k = jax.jit(og.reduce.merge_round)(problem, s, 0.05)
    assert int(eager_k) == int(traced_k)
    np.testing.assert_allclose(eager_merged.means, traced_merged.means, rtol=1e-13)
    eager = og.statistics.data_statistics(s, X, w)
    traced = jax.jit(og.statistics.data_statistics)(s, X, w)
    for e, t in zip(eager, traced, strict=True):
        np.testing.assert_allclose(e, t, rtol=1e-12)
