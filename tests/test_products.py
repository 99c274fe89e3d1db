"""r-dimensional quadrature against exact product-mixture references (issue 11, part 2).

The default rule's accuracy with teacher means 6 apart is measured here, not assumed:
the issue's targets (1e-6 near the optimum, 1e-4 elsewhere, an error estimate that
bounds the actual error within 100x) are *not* met for r >= 4; those tests are strict
xfails naming the measured values, so meeting a target turns them into failures to
be promoted. What the default rule does achieve is asserted as a regression bound."""

import jax
import numpy as np
import pytest

import overgmm as og
from product_reference import product_case, product_mixture, product_reference

_CACHE: dict = {}


def _errors(r: int, away: bool, rule: str = "auto"):
    """(loss, relative loss error, relative gradient error, estimate / actual error)."""
    if (r, away, rule) not in _CACHE:
        tf, sf = product_case(r, away)
        (tm, tw, _), (sm, sw, _) = product_mixture(tf), product_mixture(sf)
        kl, gm, ga = product_reference(tf, sf)
        teacher, student = og.Mixture(tm, tw), og.Mixture(sm, sw)
        q = og.Quadrature(rule=rule)
        val, g = jax.jit(jax.value_and_grad(lambda s: og.kl(teacher, s, backend=q)))(student)
        est = og.kl(teacher, student, backend=q, with_error=True)
        gg = np.concatenate([np.asarray(g.means).ravel(), np.asarray(g.log_weights)])
        gr = np.concatenate([gm.ravel(), ga])
        act = abs(float(val) - kl)
        _CACHE[(r, away, rule)] = (kl, act / kl, np.linalg.norm(gg - gr) / np.linalg.norm(gr), float(est.error) / act)
    return _CACHE[(r, away, rule)]


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


# measured with the default rule (benchmarks/quadrature_accuracy.py, section 2); bounds
# at about twice the measured error so that a regression fails
MEASURED = {
    (3, False): (7.0e-6, 1.6e-5),
    (3, True): (7.3e-6, 3.1e-5),
    (4, False): (1.5e-4, 3.2e-4),
    (4, True): (7.8e-4, 2.6e-3),
    (5, False): (1.6e-3, 5.0e-3),
    (5, True): (7.2e-4, 2.6e-3),
    (6, False): (1.5e-4, 1.1e-4),
    (6, True): (1.4e-3, 2.1e-3),
}


@pytest.mark.parametrize(("r", "away"), list(MEASURED))
def test_default_rule_accuracy_as_measured(r, away):
    kl, rel_loss, rel_grad, _ = _errors(r, away)
    assert (kl < 1e-3) is not away
    lo, go = MEASURED[(r, away)]
    assert rel_loss <= 2 * lo
    assert rel_grad <= 2 * go


@pytest.mark.parametrize(("r", "away"), list(MEASURED))
def test_error_estimate_bounds_actual_error(r, away):
    ratio = _errors(r, away)[3]
    if (r, away) == (5, False):
        pytest.xfail(f"issue 11: the two-rule estimate is {ratio:.2g} x the actual error at r = 5 near the optimum")
    assert 1 <= ratio <= 100


@pytest.mark.xfail(strict=True, reason="issue 11 part 2 not met: default rule 7e-6 to 1.6e-3 (r = 3..6)")
@pytest.mark.parametrize("r", [3, 4, 5, 6])
def test_issue11_target_accuracy(r):
    _, near_loss, near_grad, _ = _errors(r, False)
    _, away_loss, away_grad, _ = _errors(r, True)
    assert max(near_loss, near_grad) <= 1e-6
    assert max(away_loss, away_grad) <= 1e-4


# rule="anisotropic" (overgmm.anisotropic), measured the same way
MEASURED_ANISOTROPIC = {
    (3, False): (6.2e-7, 1.4e-6),
    (3, True): (5.3e-9, 1.0e-6),
    (4, False): (3.0e-7, 6.1e-7),
    (4, True): (8.7e-4, 3.1e-3),
    (5, False): (4.2e-8, 5.8e-7),
    (5, True): (2.7e-4, 1.0e-3),
    (6, False): (4.3e-6, 1.5e-5),
    (6, True): (2.5e-3, 5.5e-3),
}


@pytest.mark.parametrize(("r", "away"), list(MEASURED_ANISOTROPIC))
def test_anisotropic_rule_accuracy_as_measured(r, away):
    _, rel_loss, rel_grad, ratio = _errors(r, away, "anisotropic")
    lo, go = MEASURED_ANISOTROPIC[(r, away)]
    assert rel_loss <= 2 * lo
    assert rel_grad <= 2 * go
    assert ratio >= 1  # the estimate bounds the actual error in every case


@pytest.mark.parametrize("r", [4, 5])
def test_anisotropic_rule_meets_the_target_near_the_optimum(r):
    _, rel_loss, rel_grad, ratio = _errors(r, False, "anisotropic")
    assert rel_loss <= 1e-6 and rel_grad <= 1e-6
    if r == 5 and ratio > 100:
        pytest.xfail(f"issue 11: the anisotropic rule's estimate is {ratio:.0f} x the actual error (target 100x)")
    assert 1 <= ratio <= 100


@pytest.mark.parametrize("d", [3, 5])
def test_anisotropic_rule_exact_at_teacher_and_split(d):
    rng = np.random.default_rng(d)
    tm = rng.normal(size=(3, d)) * 3
    teacher = og.Mixture(tm, [0.2, 0.3, 0.5])
    split = og.Mixture(np.concatenate([tm, tm[:1], tm[2:]]), [0.1, 0.3, 0.25, 0.1, 0.25])
    q = og.Quadrature(rule="anisotropic")
    for student in (teacher, split):
        val, g = jax.value_and_grad(lambda s, q=q: og.kl(teacher, s, backend=q))(student)
        assert abs(float(val)) <= 1e-15
        assert float(np.max(np.abs(g.means))) <= 1e-15
        assert float(np.max(np.abs(g.log_weights))) <= 1e-15
