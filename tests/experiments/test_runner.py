"""The reproduction machinery itself: config resolution, the table sink, failure
handling, the claims table and the command line."""

import json

import pandas as pd
import pytest

from overgmm import experiments
from overgmm.cli import main
from overgmm.experiments.base import Experiment, claim
from overgmm.experiments.runner import claims_markdown, format_claims, replot, reproduce


def _toy(run):
    def claims(tables, cfg):
        return [claim("sum is positive", "toy", "sum > 0", float(tables["t"]["x"].sum()), tables["t"]["x"].sum() > 0)]

    def figure(tables, cfg, out):
        return []

    return Experiment("T1", "toy paper", "a toy", {"size": 3}, {"size": 2}, run, claims, figure)


def test_resolve_quick_seed_backend_and_errors():
    exp = _toy(lambda cfg, sink: None)
    cfg = exp.resolve(quick=True, seed=7, backend="monte-carlo")
    assert cfg == {"size": 2, "seed": 7, "backend": "monte-carlo", "experiment": "T1", "quick": True}
    with pytest.raises(ValueError, match="unknown backend"):
        exp.resolve(backend="exact")
    bad = Experiment("T2", "p", "d", {"a": 1}, {"b": 2}, None, None, None)
    with pytest.raises(ValueError, match="unknown keys"):
        bad.resolve(quick=True)


def test_run_writes_config_tables_claims(tmp_path):
    exp = _toy(lambda cfg, sink: sink.write("t", [{"x": float(i)} for i in range(cfg["size"])]))
    s = reproduce(exp, quick=True, out=tmp_path)
    assert s["status"] == "ok" and s["claims"][0]["holds"] is True
    assert json.loads((tmp_path / "config.json").read_text())["size"] == 2
    assert pd.read_csv(tmp_path / "t.csv")["x"].tolist() == [0.0, 1.0]
    assert "sum is positive" in format_claims(s) and "| sum is positive |" in claims_markdown(s)
    assert replot(exp, tmp_path)["claims"] == s["claims"]


def test_a_failing_run_keeps_what_it_computed(tmp_path):
    def run(cfg, sink):
        sink.write("t", [{"x": 1.0}])
        raise RuntimeError("planted failure")

    with pytest.raises(RuntimeError, match="planted"):
        reproduce(_toy(run), out=tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "planted failure" in summary["error"]
    assert pd.read_csv(tmp_path / "t.csv")["x"].tolist() == [1.0]


def test_registry_names_every_experiment_of_spec():
    names = list(experiments.registry())
    assert names == ["X1", "X2", "X3", "X4", "S1", "S2", "S3", "Z1", "W1", "W2", "W3", "W4", "W5", "W6"]
    assert experiments.get("w1").name == "W1"
    with pytest.raises(ValueError, match="choose one of"):
        experiments.get("W9")
    assert {n for n, e in experiments.registry().items() if e.multi_trial} == {"X4", "Z1", "W6"}


def test_cli_list_and_usage_errors(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in ("X1", "S3", "Z1", "W6"))
    for argv in (
        ["reproduce"],
        ["reproduce", "W9"],
        ["reproduce", "W1", "--all"],
        ["reproduce", "W1", "--backend", "x"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_cli_out_in_the_way_or_nothing_to_replot_are_named_before_any_work(tmp_path, capsys):
    """A file in place of --out ran the experiment and failed at its end (and `overgmm demo`
    printed a traceback); --replot of an empty folder blamed a missing config.json."""
    (tmp_path / "afile").write_text("x")
    for argv in (["reproduce", "S2", "--quick"], ["demo"]):
        assert main([*argv, "--out", str(tmp_path / "afile")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "afile: a file of that name (or above it) is in the way" in err[0]
    assert main(["reproduce", "S2", "--replot", "--out", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "S2: nothing to replot in" in err and "run it first" in err and "Traceback" not in err
    assert not (tmp_path / "none").exists()


def test_cli_runs_one_quick_experiment(tmp_path, capsys):
    assert main(["reproduce", "W2", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "quartic along the ravine" in out and (tmp_path / "W2.png").exists()


def test_monte_carlo_backend_runs_and_is_recorded(tmp_path):
    s = reproduce(experiments.get("W2"), quick=True, out=tmp_path, backend="monte-carlo", seed=3)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["backend"] == "monte-carlo" and cfg["seed"] == 3
    grid = pd.read_csv(tmp_path / "grid.csv")
    assert (grid["loss"] >= 0).all()  # the control-variate integrand is nonnegative on any sample
    # the ravine's shape survives the sampling noise
    assert {c["name"]: c["holds"] for c in s["claims"]}["quadratic across the ravine"]


def test_claims_tables_are_readable():
    """3 significant digits, dicts as key=value pairs, no JSON and no cut inside a number."""
    from overgmm.experiments.runner import format_measured

    measured = {"R2": 0.9990128261087912, "decades": 11.123456, "steps": 198.0, "by_d": {"2": 1e-13, "5": 0.5}}
    assert format_measured(measured) == "R2=0.999, decades=11.1, steps=198, by_d=(2=1.00e-13, 5=0.500)"
    long = {f"key_{i}": 1.0 / 3 + i for i in range(12)}
    s = {"claims": [claim("a long one", "p", "e", long, True), claim("plain", "p", "e", -2.0025, False)]}
    text = format_claims(s)
    assert "{" not in text and "~" not in text and "-2.00" in text and "NO" in text
    for i in range(12):  # every value whole, on one of the wrapped lines
        assert f"key_{i}={1.0 / 3 + i:#.3g}" in text
    assert "| a long one | yes | key_0=0.333, key_1=1.33" in claims_markdown(s)
