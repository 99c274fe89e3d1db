"""``overgmm fit data.csv``: model JSON, component count, figure; bad files and options."""

import json

import numpy as np
import pytest

from overgmm.cli import main
from overgmm.cli.predict import LABEL_ADVICE

MEANS = np.array([[0.0, 0.0], [6.0, 1.0], [1.0, 7.0], [-6.0, 4.0]])


def write_csv(path, X, header=None):
    lines = [",".join(header)] if header else []
    lines += [",".join(f"{v:.10g}" for v in row) for row in X]
    path.write_text("\n".join(lines) + "\n")


def data(n=400, d=2, seed=0):
    rng = np.random.default_rng(seed)
    comp = rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])
    means = np.hstack([MEANS, np.zeros((4, d - 2))]) if d > 2 else MEANS
    if d > 2:
        means[:, 2:] = 5 * rng.normal(size=(4, d - 2))
    return means[comp] + 0.8 * rng.normal(size=(n, d))


def test_fit_2d_writes_model_count_and_figure(tmp_path, capsys):
    X = data()
    write_csv(tmp_path / "d.csv", X, header=["width", "height"])
    argv = ["fit", str(tmp_path / "d.csv"), "--out", str(tmp_path / "out"), "--covariance-type", "diag"]
    assert main(argv) == 0
    model = json.loads((tmp_path / "out" / "model.json").read_text())
    assert model["n_components"] == 4 and model["n_components_init"] == 25
    assert model["features"] == ["width", "height"] and model["n_samples"] == 400
    assert np.asarray(model["means"]).shape == (4, 2) and np.asarray(model["covariances"]).shape == (4, 2)
    assert sum(model["weights"]) == pytest.approx(1.0)
    assert model["params"]["algorithm"] == "em"
    assert (tmp_path / "out" / "components.png").stat().st_size > 5000
    out = capsys.readouterr().out
    assert "components: 4" in out and "covariance type: diag\n" in out


def test_fit_5d_plots_principal_components(tmp_path, capsys):
    X = data(d=5, seed=1)
    write_csv(tmp_path / "d.csv", X)
    argv = ["fit", str(tmp_path / "d.csv"), "--out", str(tmp_path / "o"), "--algorithm", "polyak", "--seed", "3"]
    argv += ["--covariance-type", "diag"]  # one type: "auto" is tested below and in test_cli_files.py
    assert main(argv) == 0
    model = json.loads((tmp_path / "o" / "model.json").read_text())
    assert model["features"] == [f"x{j}" for j in range(5)]
    assert model["params"]["algorithm"] == "polyak" and model["params"]["random_state"] == 3
    assert model["n_components"] == 4
    assert (tmp_path / "o" / "components.png").stat().st_size > 5000


def test_fit_full_covariances(tmp_path, capsys):
    rng = np.random.default_rng(2)
    X = rng.multivariate_normal([0.0, 0.0], [[4.0, 3.6], [3.6, 4.0]], size=400)  # one sheared cluster
    write_csv(tmp_path / "d.csv", X)
    argv = ["fit", str(tmp_path / "d.csv"), "--out", str(tmp_path / "o"), "--covariance-type", "full"]
    assert main(argv) == 0
    model = json.loads((tmp_path / "o" / "model.json").read_text())
    assert model["covariance_type"] == "full" and model["n_components"] == 1
    cov = np.asarray(model["covariances"])
    assert cov.shape == (1, 2, 2) and cov[0, 0, 1] == pytest.approx(3.6, abs=0.5)
    assert (tmp_path / "o" / "components.png").stat().st_size > 5000
    assert "components: 1" in capsys.readouterr().out
    argv[-1] = "auto"  # the held-out rule: full, or tied (for one cluster the same model, and simpler)
    assert main(argv) == 0
    model = json.loads((tmp_path / "o" / "model.json").read_text())
    assert model["covariance_type"] in ("tied", "full") and model["params"]["covariance_type"] == "auto"


def test_bad_cells_and_options_are_errors(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,oops\n")
    assert main(["fit", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "bad.csv: row 2 (line 3), column 2 ('b') is not a number: 'oops'" in capsys.readouterr().err
    (tmp_path / "nan.csv").write_text("1,2\n3,nan\n5,6\n")
    assert main(["fit", str(tmp_path / "nan.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "nan.csv: row 2 (line 2), column 2 ('x1') is 'nan', not finite" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "missing.csv")]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["fit", str(tmp_path / "bad.csv"), "--algorithm", "adam"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["fit", str(tmp_path / "bad.csv"), "--n-components", "0"])
    with pytest.raises(SystemExit):
        main(["fit", str(tmp_path / "bad.csv"), "--covariance-type", "tilted"])
    assert not (tmp_path / "o" / "model.json").exists()


def test_fit_parquet_and_npy_streamed_equal_the_csv_fit(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    X = data(n=2000, d=3)
    write_csv(tmp_path / "d.csv", X)
    pq.write_table(pa.table({f"x{j}": X[:, j] for j in range(3)}), tmp_path / "d.parquet", row_group_size=300)
    np.save(tmp_path / "d.npy", X)
    models = {}
    # one covariance type: "auto" on chunks is tested in test_estimator_chunks.py (and
    # costs four candidate fits, each with its own chunk kernels, per input here)
    for name, extra in [("d.csv", []), ("d.parquet", []), ("d.npy", ["--memory-budget", "10kB"])]:
        out = tmp_path / name.replace(".", "_")
        argv = ["fit", str(tmp_path / name), "--out", str(out), "--quiet", "--covariance-type", "diag", *extra]
        assert main(argv) == 0
        models[name] = json.loads((out / "model.json").read_text())
        assert (out / "components.png").stat().st_size > 5000
    assert models["d.parquet"]["data"]["streamed"] and models["d.npy"]["data"]["streamed"]
    assert not models["d.csv"]["data"]["streamed"]
    for name in ("d.parquet", "d.npy"):
        assert models[name]["n_components"] == models["d.csv"]["n_components"] == 4
        assert models[name]["mean_log_likelihood"] == pytest.approx(models["d.csv"]["mean_log_likelihood"], rel=1e-8)


def test_allow_missing_streams_a_parquet_file_with_null_cells(tmp_path, capsys):
    """A Parquet file is streamed; with --allow-missing its null cells are missing values
    and the fit equals the one of the same rows as a CSV with empty cells (in memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    X = data(n=600, d=3)
    gaps = np.random.default_rng(3).random(X.shape) < 0.1
    gaps[gaps.all(axis=1), 0] = False
    cells = [[None if g else float(v) for v, g in zip(r, m, strict=True)] for r, m in zip(X, gaps, strict=True)]
    cols = {f"x{j}": pa.array([row[j] for row in cells]) for j in range(3)}
    pq.write_table(pa.table(cols), tmp_path / "g.parquet", row_group_size=250)
    lines = ["x0,x1,x2"] + [",".join("" if v is None else repr(v) for v in row) for row in cells]
    (tmp_path / "g.csv").write_text("\n".join(lines) + "\n")
    base = ["--quiet", "--covariance-type", "diag", "--allow-missing"]
    assert main(["fit", str(tmp_path / "g.parquet"), "--out", str(tmp_path / "p"), *base]) == 0
    assert main(["fit", str(tmp_path / "g.csv"), "--out", str(tmp_path / "c"), *base]) == 0
    p, c = (json.loads((tmp_path / o / "model.json").read_text()) for o in ("p", "c"))
    assert p["data"]["streamed"] and not c["data"]["streamed"]
    assert p["n_components"] == c["n_components"]
    # two fits to tol: the chunks' sums add in another order, and this slow fit (about 110
    # steps) stops a few steps apart (seen: 120 and 104), 1e-11 to 2e-8 apart relative
    assert p["mean_log_likelihood"] == pytest.approx(c["mean_log_likelihood"], rel=1e-6)
    assert main(["fit", str(tmp_path / "g.parquet"), "--out", str(tmp_path / "n"), "--quiet"]) == 2
    assert "is missing (null" in capsys.readouterr().err


def test_fit_bad_parquet_names_the_file_or_column(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0, 2.0], "label": ["u", "v"]}), tmp_path / "t.parquet")
    assert main(["fit", str(tmp_path / "t.parquet"), "--out", str(tmp_path / "o")]) == 2
    assert "column 'label' is not numeric" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.parquet: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", str(tmp_path / "t.parquet"), "--memory-budget", "lots"])
    assert "expected a size such as 2e9" in capsys.readouterr().err


def test_outputs_are_replaced_whole_never_left_half_written(tmp_path, monkeypatch, capsys):
    from overgmm.cli import _figure

    X = data()  # the shapes and type of the first test: its compiled programs serve here
    write_csv(tmp_path / "d.csv", X)
    out = tmp_path / "out"
    out.mkdir()
    (out / "components.png").write_bytes(b"old figure")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(_figure, "figure", broken)
    argv = ["fit", str(tmp_path / "d.csv"), "--out", str(out), "--quiet", "--labels", "--covariance-type", "diag"]
    assert main(argv) == 1
    assert "disk full" in capsys.readouterr().err
    # all or nothing: no new model.json or labels.csv beside the old figure, no temporary file
    assert (out / "components.png").read_bytes() == b"old figure"
    assert sorted(p.name for p in out.iterdir()) == ["components.png"]


def test_defaults_are_the_estimators_and_every_option_says_its_default():
    import argparse

    from overgmm import OverparamGMM
    from overgmm.cli import build_parser
    from overgmm.cli.fit import estimator_params

    parser = build_parser()
    params = estimator_params(parser.parse_args(["fit", "data.csv"]))
    expected = OverparamGMM().get_params()
    assert params == {**expected, "verbose": 1}  # the bar is on at the command line, --quiet turns it off
    assert estimator_params(parser.parse_args(["fit", "data.csv", "--quiet"]))["verbose"] == 0
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        for action in p._actions:
            if isinstance(action, argparse._HelpAction) or not action.option_strings and action.dest == "help":
                continue
            assert action.help, (name, action.dest)
            takes_value = action.option_strings and action.nargs != 0
            assert not takes_value or "default" in action.help, (name, action.dest, action.help)


def test_fit_tied_writes_one_shared_covariance_and_loads(tmp_path, capsys):
    from overgmm import OverparamGMM

    X = data(n=400)
    write_csv(tmp_path / "d.csv", X)
    argv = ["fit", str(tmp_path / "d.csv"), "--out", str(tmp_path / "o"), "--covariance-type", "tied", "--quiet"]
    assert main(argv) == 0
    model = json.loads((tmp_path / "o" / "model.json").read_text())
    assert model["covariance_type"] == "tied" and np.asarray(model["covariances"]).shape == (2, 2)
    k = model["n_components"]
    assert model["n_parameters"] == k * 2 + 3 + k - 1  # means, one shared covariance, weights
    est = OverparamGMM.load(tmp_path / "o" / "model.json")
    assert est.bic(X) == pytest.approx(model["bic"], rel=1e-9)
    assert "covariance type: tied" in capsys.readouterr().out


def test_allow_missing_fits_and_labels_a_csv_with_empty_cells(tmp_path, capsys):
    X = data()
    gaps = np.random.default_rng(3).uniform(size=X.shape) < 0.1
    gaps[gaps.all(axis=1), 0] = False
    cells = np.where(gaps, "", np.char.mod("%.10g", X))
    rows = [",".join(r) for r in cells]
    (tmp_path / "g.csv").write_text("width,height\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert main(["fit", str(tmp_path / "g.csv"), "--out", str(out), "--covariance-type", "diag"]) == 2
    assert "is empty (a missing value)" in capsys.readouterr().err
    argv = ["fit", str(tmp_path / "g.csv"), "--out", str(out), "--covariance-type", "diag", "--allow-missing"]
    assert main(argv) == 0
    model = json.loads((out / "model.json").read_text())
    assert model["params"]["allow_missing"] is True and model["n_components"] == 4
    labels = tmp_path / "labels.csv"
    assert main(["predict", str(out / "model.json"), str(tmp_path / "g.csv"), "--out", str(labels)]) == 0
    lines = labels.read_text().splitlines()
    assert len(lines) == 401 and all("nan" not in line for line in lines[1:])
    # a model fitted without --allow-missing: the advice is predict's own (it named fit's option as predict's)
    full = tmp_path / "full"
    np.savetxt(tmp_path / "c.csv", X, delimiter=",", header="width,height", comments="")
    assert main(["fit", str(tmp_path / "c.csv"), "--out", str(full), "--covariance-type", "diag", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["predict", str(full / "model.json"), str(tmp_path / "g.csv"), "--out", str(labels)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "remove or impute it before labelling (a model fitted with --allow-missing labels rows with gaps)"
    )


def test_predict_gives_its_own_advice_on_every_kind_of_bad_value(tmp_path, capsys):
    """Each reader's bad value (a CSV cell, a Parquet null, a non-finite value in memory or
    in streamed chunks) keeps its place and takes predict's advice, not fit's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    X = data()
    write_csv(tmp_path / "c.csv", X)
    out = tmp_path / "m"
    assert main(["fit", str(tmp_path / "c.csv"), "--out", str(out), "--covariance-type", "diag", "--quiet"]) == 0
    bad = X.copy()
    bad[7, 1] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    table = pa.table(
        {"width": pa.array(X[:, 0]), "height": pa.array([None if i == 4 else v for i, v in enumerate(X[:, 1])])}
    )
    pq.write_table(table, tmp_path / "null.parquet")
    cases = [
        (["inf.npy"], "inf.npy: row 8, column 2"),  # in memory
        (["inf.npy", "--memory-budget", "1KiB"], "inf.npy: row 8, column 2"),  # streamed, a chunk at a time
        (["null.parquet"], "null.parquet: row 5, column 2 ('height') is missing"),
    ]
    capsys.readouterr()
    for extra, place in cases:
        argv = [
            "predict",
            str(out / "model.json"),
            str(tmp_path / extra[0]),
            *extra[1:],
            "--out",
            str(tmp_path / "l.csv"),
        ]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert place in err and err.endswith(LABEL_ADVICE), err
        assert "before fitting" not in err and "--allow-missing)" not in err
    assert not (tmp_path / "l.csv").exists()
