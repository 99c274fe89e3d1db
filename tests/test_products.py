"""r-dimensional quadrature against exact product-mixture references (issues 11 and 19).

The accuracy with teacher means 6 apart is measured here, not assumed. Targets (issue
19, with every default): 1e-6 relative near the optimum and 1e-4 away from it, and an
error estimate between 1x and 100x the actual error. The default for the KL at r >= 3
is the anisotropic rule; it meets both targets for r = 3..6 on these axis-aligned cases,
and misses the away target on the same cases turned by a random rotation (the tensor
rule on the mild axes is not rotation invariant; both measured). The trapezoid rule (the default
before issue 19, ``rule="trapezoid"``) is kept as a regression bound."""

import jax
import numpy as np
import pytest

import overgmm as og
from product_reference import product_case, product_mixture, product_reference

_CACHE: dict = {}


def _errors(r: int, away: bool, rule: str = "auto", rotation: int | None = None):
    """(loss, relative loss error, relative gradient error, estimate / actual error);
    ``rotation``: the case turned by a random orthogonal matrix of this seed."""
    if (r, away, rule, rotation) not in _CACHE:
        tf, sf = product_case(r, away)
        (tm, tw, _), (sm, sw, _) = product_mixture(tf), product_mixture(sf)
        kl, gm, ga = product_reference(tf, sf)
        if rotation is not None:  # the KL is invariant, the mean gradient turns with the means
            rot = np.linalg.qr(np.random.default_rng(rotation).normal(size=(r, r)))[0]
            tm, sm, gm = tm @ rot.T, sm @ rot.T, gm @ rot.T
        teacher, student = og.Mixture(tm, tw), og.Mixture(sm, sw)
        q = og.Quadrature(rule=rule)

        def kl_and_error(s):  # the value, its gradient and the error estimate in one program
            est = og.kl(teacher, s, backend=q, with_error=True)
            return est.value, est.error

        (val, err), g = jax.jit(jax.value_and_grad(kl_and_error, has_aux=True))(student)
        gg = np.concatenate([np.asarray(g.means).ravel(), np.asarray(g.log_weights)])
        gr = np.concatenate([gm.ravel(), ga])
        act = abs(float(val) - kl)
        rel_grad = np.linalg.norm(gg - gr) / np.linalg.norm(gr)
        _CACHE[(r, away, rule, rotation)] = (kl, act / kl, rel_grad, float(err) / act)
    return _CACHE[(r, away, rule, rotation)]


def test_reference_matches_the_exact_2d_rule():
    # in 2-D the default rule is exact to 1e-12 (README): the reference must agree
    tf = [([-3.0, 3.0], [0.4, 0.6]), ([0.0], [1.0])]
    sf = [([-2.9, 3.1], [0.4, 0.6]), ([-0.1, 0.1], [0.5, 0.5])]
    (tm, tw, _), (sm, sw, _) = product_mixture(tf), product_mixture(sf)
    kl, gm, ga = product_reference(tf, sf)
    teacher, student = og.Mixture(tm, tw), og.Mixture(sm, sw)
    val, g = jax.value_and_grad(lambda s: og.kl(teacher, s))(student)
    assert abs(float(val) - kl) <= 1e-12 * kl
    assert np.max(np.abs(np.asarray(g.means) - gm)) <= 1e-12
    assert np.max(np.abs(np.asarray(g.log_weights) - ga)) <= 1e-12


# measured with the trapezoid rule (benchmarks/quadrature_accuracy.py, section 2); bounds
# at about twice the measured error so that a regression fails
MEASURED_TRAPEZOID = {
    (3, False): (7.0e-6, 1.6e-5),
    (3, True): (7.3e-6, 3.1e-5),
    (4, False): (1.5e-4, 3.2e-4),
    (4, True): (7.8e-4, 2.6e-3),
    (5, False): (1.6e-3, 5.0e-3),
    (5, True): (7.2e-4, 2.6e-3),
}  # r = 6: 1.5e-4 / 1.1e-4 near, 1.4e-3 / 2.1e-3 away (not rerun here: 1.5 s per evaluation)


@pytest.mark.parametrize(("r", "away"), list(MEASURED_TRAPEZOID))
def test_trapezoid_rule_accuracy_as_measured(r, away):
    kl, rel_loss, rel_grad, _ = _errors(r, away, "trapezoid")
    assert (kl < 1e-3) is not away
    lo, go = MEASURED_TRAPEZOID[(r, away)]
    assert rel_loss <= 2 * lo
    assert rel_grad <= 2 * go


# the default (anisotropic at r >= 3), measured the same way
MEASURED_DEFAULT = {
    (3, False): (6.9e-8, 1.6e-7),
    (3, True): (8.2e-9, 6.5e-8),
    (4, False): (4.8e-8, 1.2e-7),
    (4, True): (2.4e-6, 4.9e-6),
    (5, False): (4.6e-8, 1.3e-7),
    (5, True): (1.8e-6, 1.4e-5),
    (6, False): (4.2e-8, 1.7e-7),
    (6, True): (2.4e-7, 5.8e-6),
}


@pytest.mark.parametrize(("r", "away"), list(MEASURED_DEFAULT))
def test_default_rule_accuracy(r, away):
    kl, rel_loss, rel_grad, ratio = _errors(r, away)
    assert (kl < 1e-3) is not away
    lo, go = MEASURED_DEFAULT[(r, away)]
    assert rel_loss <= 2 * lo and rel_grad <= 2 * go  # regression bound
    assert 1 <= ratio <= 100  # the error estimate is honest (issue 19)
    assert max(rel_loss, rel_grad) <= (1e-4 if away else 1e-6)


# The Gauss-Hermite rule on the mild axes is not rotation invariant: the same cases turned
# by a random rotation (seed 0), measured (loss, gradient). Issue 19's 1e-4 away is missed
# here: the axis-aligned references above are not the typical case.
MEASURED_ROTATED = {4: (1.3e-4, 6.1e-4), 5: (5.2e-5, 2.8e-4)}


@pytest.mark.parametrize("r", sorted(MEASURED_ROTATED))
def test_default_rule_accuracy_on_a_rotated_case(r):
    kl, rel_loss, rel_grad, ratio = _errors(r, True, rotation=0)
    lo, go = MEASURED_ROTATED[r]
    assert rel_loss <= 2 * lo and rel_grad <= 2 * go
    assert 1 <= ratio <= 100


@pytest.mark.parametrize("d", [3, 5])
def test_anisotropic_rule_exact_at_teacher_and_split(d):
    rng = np.random.default_rng(d)
    tm = rng.normal(size=(3, d)) * 3
    teacher = og.Mixture(tm, [0.2, 0.3, 0.5])
    split = og.Mixture(np.concatenate([tm, tm[:1], tm[2:]]), [0.1, 0.3, 0.25, 0.1, 0.25])
    q = og.Quadrature()  # the default: anisotropic at r >= 3
    assert "anisotropic" in q.describe(d, True, (3, 5))
    for student in (teacher, split):
        val, g = jax.value_and_grad(lambda s, q=q: og.kl(teacher, s, backend=q))(student)
        assert abs(float(val)) <= 1e-15
        assert float(np.max(np.abs(g.means))) <= 1e-15
        assert float(np.max(np.abs(g.log_weights))) <= 1e-15
