"""Sweeps: study files, expansion, the store, resume after SIGKILL, failures, Dask."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from overgmm import studies, sweep
from overgmm.cli import main
from overgmm.sweep import store

TINY = """
[study]
name = "tiny"
figure = "loss"
[base]
steps = {steps}
stride = {stride}
[base.teacher]
d = 2
m = 2
scale = 2.0
[base.student]
n = 4
init = "perturbed"
weights = "split"
[base.algorithm]
name = "polyak"
n_short = 5
[base.backend]
kind = "quadrature"
defensive = false
nodes = {nodes}
tails = "off"  # the sweep machinery is under test: no tail nodes to compile (d = 2)
[axes]
"algorithm.step_size" = {step_sizes}
seed = {{ start = 0, stop = {seeds} }}
"""


def write_study(
    tmp_path: Path, name="tiny.toml", steps=40, stride=10, step_sizes="[1.0, 0.5]", seeds=3, nodes=41
) -> Path:
    path = tmp_path / name
    path.write_text(TINY.format(steps=steps, stride=stride, step_sizes=step_sizes, seeds=seeds, nodes=nodes))
    return path


def finals(out):
    return sweep.load_finals(out).sort_values("run_id").reset_index(drop=True)


MIN = "[base]\nsteps = 3\n[base.teacher]\nd=1\nm=1\n[base.student]\nn=2\n[base.algorithm]\nname='em'\n"


def test_sweep_stores_one_file_per_run_and_resumes(tmp_path):
    study, out = write_study(tmp_path), tmp_path / "out"
    counts = sweep.sweep(study, out, progress=False)
    assert counts == {"total": 6, "skipped": 0, "done": 6, "failed": 0}
    assert len(list((out / "runs").glob("*.parquet"))) == 6
    f = finals(out)
    assert np.all(f["loss"] < 1e-2) and set(f["seed"]) == {0, 1, 2}
    assert len(f["final_means"].iloc[0]) == 4  # final state kept with each run
    hist = sweep.load_history(out)
    assert len(hist) == 6 * 5 and {"run_id", "step", "loss", "algorithm.step_size", "seed"} <= set(hist.columns)
    assert sweep.sweep(study, out, progress=False)["skipped"] == 6  # nothing recomputed
    assert sweep.status(out) == {"total": 6, "done": 6, "failed": 0, "missing": 0}


def test_batched_runs_equal_single_runs(tmp_path):
    study = write_study(tmp_path)
    sweep.sweep(study, tmp_path / "a", batch=32, progress=False)
    sweep.sweep(study, tmp_path / "b", batch=1, progress=False)
    a, b = finals(tmp_path / "a"), finals(tmp_path / "b")
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-10, atol=1e-300)


def test_a_run_that_raises_is_recorded_and_the_others_go_on(tmp_path, monkeypatch):
    from overgmm.sweep import build

    real = build.run_group

    def planted(configs, group):  # seed 1 raises inside the run, whatever its batch
        if any(c["seed"] == 1 for c in configs):
            raise FloatingPointError("planted failure at seed 1")
        return real(configs, group)

    monkeypatch.setattr(build, "run_group", planted)
    study, out = write_study(tmp_path), tmp_path / "out"
    counts = sweep.sweep(study, out, progress=False)
    assert counts["done"] == 4 and counts["failed"] == 2  # seeds 0 and 2 of each chunk still ran
    fails = sweep.load_failures(out)
    assert sorted(fails["seed"]) == [1, 1] and all("planted failure" in e for e in fails["error"])
    assert all("Traceback" in t for t in fails["traceback"])
    assert sweep.status(out) == {"total": 6, "done": 4, "failed": 2, "missing": 0}
    monkeypatch.setattr(build, "run_group", real)
    again = sweep.sweep(study, out, progress=False)  # a rerun retries the failed runs only
    assert again["done"] == 2 and again["skipped"] == 4 and sweep.status(out)["failed"] == 0


def test_a_bad_option_is_an_error_before_anything_runs(tmp_path):
    with pytest.raises(sweep.StudyError, match="step_size must be positive"):
        sweep.sweep(write_study(tmp_path, step_sizes="[1.0, -1.0]"), tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "runs").exists()


def _files_snapshot(out):
    return sorted(p.name for p in (out / "runs").iterdir())


def test_sigkill_part_way_then_rerun_gives_every_run_exactly_once(tmp_path):
    # long runs on a coarse rule: slow enough to be killed part way, cheap to rerun
    study = write_study(tmp_path, steps=1500, stride=150, seeds=6, nodes=21)
    out = tmp_path / "killed"
    code = f"from overgmm.cli import main; main(['sweep', {str(study)!r}, '--out', {str(out)!r}, '--batch', '2'])"
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.time() + 240
    n = 0
    while time.time() < deadline and proc.poll() is None:
        n = len(list((out / "runs").glob("*.parquet"))) if (out / "runs").exists() else 0
        if n >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= n < 12, f"the sweep was not interrupted part way ({n} runs stored)"
    stored_before = len(list((out / "runs").glob("*.parquet")))
    assert stored_before < 12
    counts = sweep.sweep(study, out, batch=2, progress=False)
    assert counts["skipped"] == stored_before and counts["done"] == 12 - stored_before
    names = _files_snapshot(out)
    assert len(names) == 12 and all(n.endswith(".parquet") for n in names)  # no temporaries, no duplicates
    whole = tmp_path / "whole"
    sweep.sweep(study, whole, batch=2, progress=False)
    a, b = finals(out), finals(whole)
    assert list(a["run_id"]) == list(b["run_id"])
    # the same chunks in both: bit-identical numbers
    assert np.array_equal(a["loss"].to_numpy(), b["loss"].to_numpy())
    assert all(np.array_equal(x, y) for x, y in zip(a["final_means"], b["final_means"], strict=True))


def test_unknown_algorithm_and_backend_options_are_study_errors(tmp_path):
    study = write_study(tmp_path)
    text = study.read_text()
    for bad, match in [("n_short = 5", "unexpected keyword"), ("nodes = 41", "unknown backend option")]:
        path = tmp_path / "bad.toml"
        path.write_text(text.replace(bad, bad + "\n" + ("stepsize = 2" if "short" in bad else "nodez = 3")))
        with pytest.raises(sweep.StudyError, match=match):
            sweep.sweep(path, tmp_path / "o", progress=False)


def test_an_output_folder_of_another_study_is_refused(tmp_path):
    sweep.sweep(write_study(tmp_path), tmp_path / "out", progress=False)
    other = write_study(tmp_path, "other.toml", seeds=2)
    with pytest.raises(sweep.StudyError, match="different study"):
        sweep.sweep(other, tmp_path / "out", progress=False)


def test_two_worker_local_dask_cluster(tmp_path):
    study = write_study(tmp_path)
    counts = sweep.sweep(study, tmp_path / "dask", workers=2, progress=False)
    assert counts["done"] == 6
    sweep.sweep(study, tmp_path / "local", progress=False)
    np.testing.assert_allclose(finals(tmp_path / "dask")["loss"], finals(tmp_path / "local")["loss"], rtol=1e-10)


def test_data_based_study_and_x4_plot(tmp_path):
    text = """
[study]
name = "x4-tiny"
figure = "x4"
[base]
steps = 200
stride = 100
[base.teacher]
d = 1
m = 1
means = [[0.0]]
[base.student]
n = 3
init = "normal"
[base.data]
n_samples = 100
[base.algorithm]
name = "gradient_em"
step_size = 3.0
[axes]
"data.n_samples" = [100, 1000]
seed = { start = 0, stop = 4 }
"""
    path = tmp_path / "x4.toml"
    path.write_text(text)
    out = tmp_path / "x4"
    assert sweep.sweep(path, out, progress=False)["done"] == 8
    from overgmm.sweep.plots import plot, summarize

    table, head = summarize(out)
    assert list(table["data.n_samples"]) == [100, 1000] and np.isfinite(head["slope"])
    assert plot(out).stat().st_size > 0


def test_cli_sweep_status_plot_and_errors(tmp_path, capsys):
    study, out = write_study(tmp_path), tmp_path / "cli"
    assert main(["sweep", str(study), "--out", str(out)]) == 0
    assert main(["sweep", "status", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["done"] == 6
    assert main(["plot", str(out)]) == 0 and (out / "figure.png").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("[base]\nsteps = 'x'")
    assert main(["sweep", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "steps" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")  # an --out in the way: one line (it was a traceback)
    assert main(["sweep", str(study), "--out", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err
    assert "afile: a file of that name (or above it) is in the way" in err and "Traceback" not in err


def test_shipped_studies_are_the_reproductions_configs():
    """X4, Z1 and W6 are defined once, in overgmm/configs/: the sweep loads them by name."""
    for name in ("X4", "Z1", "W6"):
        study = sweep.load(name)
        assert study["study"]["name"] == name and len(sweep.expand(study)) >= 60
        studies.check_study_runs(study)
    w6 = sweep.load("W6")
    d2 = next(r["config"] for r in sweep.expand(w6) if r["axes"]["teacher.d"] == 2)
    assert d2["backend"]["by_dim"]["2"] == {"nodes": 81, "half_width": 8.0}  # the settled d = 2 rule
    assert store.runs_dir(Path("x")).name == "runs"


def test_z1_plot_takes_its_success_rule_from_the_study_settings(tmp_path):
    text = """
[study]
name = "z1-tiny"
figure = "z1"
[settings]
radius = {radius}
loss_threshold = 10.0
[base]
steps = 20
[base.teacher]
d = 2
m = 3
means = [[-1.5, 0.0], [1.5, 0.0], [0.0, 6.0]]
[base.student]
n = 3
[base.algorithm]
name = "gradient_em"
step_size = 1.0
weights = "em"
[base.backend]
kind = "quadrature"
defensive = false
nodes = 11
half_width = 6.0
[axes]
"student.n" = [3]
seed = [0, 1]
"""
    from overgmm.sweep.plots import summarize

    rates = {}
    for radius in (100.0, 1e-9):
        path, out = tmp_path / f"z1_{radius}.toml", tmp_path / f"z1_{radius}"
        path.write_text(text.format(radius=radius))
        sweep.sweep(path, out, progress=False)
        rates[radius] = summarize(out)[1]["success_rate"][3]
    assert rates == {100.0: 1.0, 1e-9: 0.0}
