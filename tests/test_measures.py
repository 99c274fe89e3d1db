"""The measures of SPEC section 5 (overgmm.measures): bias, dispersion, weight mismatch,
parameter distance, active components."""

import numpy as np

import overgmm as og

TEACHER = og.Mixture([[0.0], [3.0]], [0.4, 0.6])


def test_teacher_measures_known_values():
    student = og.Mixture([[0.5], [-0.5], [3.0]], [0.2, 0.2, 0.6])
    m = og.teacher_measures(TEACHER, student)
    np.testing.assert_allclose(m["bias"], [0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(m["dispersion"], [0.2 * 0.25 * 2, 0.0], atol=1e-15)
    np.testing.assert_allclose(m["weight_mismatch"], 0.0, atol=1e-15)
    np.testing.assert_allclose(m["param_dist"], 0.2 * 0.25 * 2, atol=1e-15)


def test_active_threshold_is_honoured():
    student = og.Mixture([[0.0], [1.0], [3.0]], [0.005, 0.395, 0.6])
    alg = og.gradient_em(og.Problem.population(TEACHER), 0.1)
    assert og.run(alg, student, 1, threshold=1e-3)["active"][0] == 3
    assert og.run(alg, student, 1, threshold=1e-2)["active"][0] == 2


def test_student_measures_active_components_and_norms():
    m = og.student_measures(og.Mixture([[3.0, 4.0], [0.0, 1.0], [0.0, 2.0]], [0.5, 0.5, 0.0]))
    assert int(m["active"]) == 2
    np.testing.assert_allclose(float(m["max_norm"]), 5.0, rtol=1e-15)
    np.testing.assert_allclose(float(m["U"]), 25.0 + 1.0 + 4.0, rtol=1e-15)


def test_recovery_rule_needs_every_teacher_mean_covered_and_a_small_loss():
    tm = np.array([[0.0, 0.0], [4.0, 0.0]])
    sm = np.array([[0.1, 0.0], [3.8, 0.1], [9.0, 9.0]])
    w = np.array([0.5, 0.4999, 1e-4])
    rule = {"radius": 0.5, "loss_threshold": 1e-3, "active_weight": 1e-3}
    assert og.measures.covers(tm, sm, w, radius=0.5)
    assert og.measures.recovers(tm, sm, w, 1e-4, **rule)
    assert not og.measures.recovers(tm, sm, w, 1e-2, **rule)  # loss too large
    assert not og.measures.covers(tm, sm, np.array([1.0, 0.0, 0.0]), radius=0.5)  # 4.0 not covered by an active mean
    assert not og.measures.covers(tm, sm, w, radius=0.05)
