"""Z1 (Zhou et al. 2025): the quick variant (Jin et al.'s teacher: two close means and a
far one) and its claims as docs/reproductions.md documents them."""

import json

import numpy as np

from overgmm.experiments import zhou2025


def test_z1_quick(quick_run):
    s = quick_run("Z1")
    out = s["out"]
    for name in ("Z1.png", "final.csv", "history.csv", "components.csv", "sweep_history.csv", "config.json"):
        assert (out / name).exists(), name
    assert json.loads((out / "summary.json").read_text())["status"] == "ok"
    c = s["by_name"]
    fail = c["Z1 jin: exact student n=3 fails for many seeds"]
    assert fail["holds"] and fail["measured"]["failure_rate"] >= 0.2
    assert c["Z1 jin: over-parameterized n=20 succeeds"]["holds"]
    assert c["Z1 jin: redundant weights pruned (n=20)"]["holds"]
    assert c["Z1 convergence time grows as separation shrinks"]["holds"]


def test_z1_failed_exact_student_is_a_spurious_fixed_point(quick_run):
    """The n = 3 failures are stuck (not slow): their final KL is far above the threshold
    and one teacher mean has no student near it."""
    import pandas as pd

    fin = pd.read_csv(quick_run("Z1")["out"] / "final.csv")
    bad = fin[(fin["n"] == 3) & ~fin["success"]]
    assert len(bad) > 0
    assert (bad["loss"] > 0.1).all() and (~bad["covered"]).all()


def test_teacher_means():
    tm = zhou2025.teacher_means({"kind": "equilateral", "separation": 5.2})
    d = np.linalg.norm(tm[:, None] - tm[None], axis=-1)
    np.testing.assert_allclose(d[np.triu_indices(3, 1)], 5.2)
    jin = zhou2025.teacher_means({"kind": "jin", "close": 3.0, "far": 12.0})
    assert np.linalg.norm(jin[0] - jin[1]) == 3.0 and jin[2, 1] == 12.0
