"""Studies (overgmm.studies): expansion into runs named by content and grouped by seed,
and study files whose errors name the problem."""

import pytest

from overgmm import sweep
from test_sweep import MIN, TINY, write_study


def test_expand_names_runs_by_content_and_groups_by_seed(tmp_path):
    study = sweep.load(write_study(tmp_path))
    runs = sweep.expand(study)
    assert len(runs) == 6 and len({r["run_id"] for r in runs}) == 6
    assert len({r["group"] for r in runs}) == 2  # the two step sizes; seeds share a group
    again = sweep.expand(sweep.load(write_study(tmp_path, "copy.toml")))
    assert [r["run_id"] for r in runs] == [r["run_id"] for r in again]  # the hash is of content, not file
    assert {r["config"]["algorithm"]["step_size"] for r in runs} == {1.0, 0.5}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[base\nsteps = 3", "line 1"),
        (
            "[base]\nsteps = 3\nstpes = 4\n[base.teacher]\nd=1\nm=1\n[base.student]\nn=2\n[base.algorithm]\nname='em'",
            "unknown key 'stpes'; valid keys: .*steps",
        ),
        (
            "[base]\nsteps = 'many'\n[base.teacher]\nd=1\nm=1\n[base.student]\nn=2\n[base.algorithm]\nname='em'",
            r"\[base\].steps: expected int",
        ),
        (
            "[base]\nsteps = 3\n[base.teacher]\nd=1\nm=1\n[base.student]\nn=2\n[base.algorithm]\nname='em'\n"
            "[axes]\n'teacher.dd' = [1]",
            "axis 'teacher.dd': unknown key",
        ),
        (
            "[base]\nsteps = 3\n[base.teacher]\nd=1\nm=1\n[base.student]\nn=2\n[base.algorithm]\nname='em'\n"
            "[axes]\nseed = []",
            "non-empty list",
        ),
        ("[study]\nfigure='pie'\n[base]\nsteps = 3", "figure must be one of"),
        ("[bse]\nsteps = 3", "unknown section"),
        ("base = 3", "must be a table"),
        (MIN + "[axes]\nseed = {start = 1}", "needs 'stop'"),
        (MIN + "[axes]\nseed = [1, 1]", "repeated values"),
        (MIN + "[axes]\nseed = [-1]", "non-negative"),
        (MIN + "[axes]\nteacher.d = [1, 2]", "quote dotted axis names"),
        (MIN.replace("steps = 3", "steps = 4\nstride = 3"), "multiple of stride"),
        (MIN.replace("n=2", "n=2\ninit='sample'"), "student.init must be one of"),
        ("[study]\nfigure='x4'\n" + MIN, "needs the axis 'data.n_samples'"),
    ],
)
def test_bad_study_files_name_the_problem(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(sweep.StudyError, match=match):
        sweep.load(path)


def test_deprecated_study_keys_still_load_with_a_warning(tmp_path):
    path = tmp_path / "old.toml"
    text = TINY.format(steps=10, stride=10, step_sizes="[1.0]", seeds=1, nodes=41)
    text = text.replace('"algorithm.step_size"', '"algorithm.eta"').replace('name = "polyak"', 'algorithm = "polyak"')
    path.write_text(text.replace("steps = 10\n", "n_steps = 10\n", 1))
    with pytest.warns(DeprecationWarning) as caught:
        study = sweep.load(path)
    messages = " | ".join(str(w.message) for w in caught)
    assert "'n_steps' is deprecated; use 'steps'" in messages
    assert "'algorithm' is deprecated; use 'name'" in messages
    assert "axis 'algorithm.eta' is deprecated; use 'algorithm.step_size'" in messages
    assert study["base"]["steps"] == 10 and study["base"]["algorithm"]["name"] == "polyak"
    assert list(study["axes"]) == ["algorithm.step_size", "seed"]
