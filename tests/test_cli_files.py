"""The command line as a user runs it: ``overgmm`` in a subprocess, on files.

A fit writes a model that ``predict`` and ``OverparamGMM.load`` use; every bad input
exits with status 2, one line naming the file, row and column (from 1), and nothing
written."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from overgmm import OverparamGMM

# the installed console script, as a user runs it
SCRIPT = Path(sys.executable).with_name("overgmm")
CLI = [str(SCRIPT)] if SCRIPT.exists() else [shutil.which("overgmm") or "overgmm"]


def run(*args, cwd):
    return subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


def three_clusters(n=600, seed=0):
    rng = np.random.default_rng(seed)
    covs = [[[2, 1.5], [1.5, 2]], [[1, -0.8], [-0.8, 1]], [[0.3, 0], [0, 3]]]
    means = [[0, 0], [7, 0], [0, 8]]
    comp = rng.choice(3, size=n)
    return np.stack([rng.multivariate_normal(means[c], covs[c]) for c in comp]), comp


def strict(text: str):
    def refuse(token):
        raise AssertionError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_fit_predict_and_load_agree(tmp_path):
    X, comp = three_clusters()
    np.savetxt(tmp_path / "d.csv", X, delimiter=",", header="a,b", comments="")
    r = run("fit", "d.csv", "--out", "out", "--labels", "--seed", "0", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "covariance type: full (auto; held-out log-likelihood per sample: spherical" in r.stdout
    assert "components: 3 " in r.stdout and "BIC " in r.stdout and "parameters" in r.stdout
    model = strict((tmp_path / "out" / "model.json").read_text())
    assert model["features"] == ["a", "b"] and model["n_samples"] == 600
    assert set(model["validation_scores"]) == {"spherical", "diag", "tied", "full", "rotated"}
    est = OverparamGMM.load(tmp_path / "out" / "model.json")
    assert est.covariance_type_ == "full" and model["n_parameters"] == 3 * (2 + 3) + 2
    assert model["bic"] == pytest.approx(est.bic(X), rel=1e-9) and model["aic"] == pytest.approx(est.aic(X), rel=1e-9)
    labels = np.loadtxt(tmp_path / "out" / "labels.csv", delimiter=",", skiprows=1)
    assert labels.shape == (600, 3 + 3) and labels[:, 0].tolist() == list(range(1, 601))
    np.testing.assert_array_equal(labels[:, 1], est.predict(X))
    np.testing.assert_allclose(labels[:, 2], est.score_samples(X), rtol=1e-9)
    # new data with the columns in another order: taken by name
    np.savetxt(tmp_path / "new.csv", X[:50, ::-1], delimiter=",", header="b,a", comments="")
    r = run("predict", "out/model.json", "new.csv", "--out", "p.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    pred = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(pred, labels[:50])


def test_constant_column_warns_by_name(tmp_path):
    X = np.random.default_rng(1).normal(size=(200, 3))
    X[:, 1] = 5.0
    np.savetxt(tmp_path / "c.csv", X, delimiter=",", header="p,q,r", comments="")
    r = run("fit", "c.csv", "--out", "o", "--quiet", "--covariance-type", "diag", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning: c.csv: column 2 ('q') is constant" in r.stderr


def bad_inputs(tmp):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 3))
    big = X.copy()
    big[4, 1] = 1e308
    np.savetxt(tmp / "big.csv", big, delimiter=",")
    tiny = X.copy()
    tiny[:, 0] *= 1e-300
    np.savetxt(tmp / "tiny.csv", tiny, delimiter=",")
    inf = X.copy()
    inf[6, 2] = np.inf
    np.save(tmp / "inf.npy", inf)
    (tmp / "nan.csv").write_text("a,b\n1,2\n3,NaN\n5,6\n")
    (tmp / "amb.csv").write_text("-0.521742,abc,1\n1,2,3\n4,5,6\n")
    (tmp / "bin.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    np.savetxt(tmp / "ok.csv", X, delimiter=",")
    (tmp / "afile").write_text("x")
    (tmp / "fake.npy").write_bytes(b"not an array")  # numpy would say "pickled data"
    np.save(tmp / "none.npy", np.zeros((0, 3)))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": np.zeros(0), "b": np.zeros(0)}), tmp / "none.parquet")
    return [
        (["fit", "big.csv"], "big.csv: column 2 ('x1') holds values too large for float64"),
        (["fit", "tiny.csv"], "tiny.csv: column 1 ('x0') holds values too small for float64"),
        (["fit", "inf.npy"], "inf.npy: row 7, column 3 ('x2') is inf, not finite"),
        (["fit", "nan.csv"], "nan.csv: row 2 (line 3), column 2 ('b') is 'NaN', not finite"),
        (["fit", "amb.csv"], "amb.csv: the first row mixes numbers ('-0.521742') and text ('abc')"),
        (["fit", "bin.csv"], "bin.csv: not a CSV text file (byte 0x89 at offset 0"),
        (["fit", "ok.csv", "--out", "afile/sub"], "--out afile/sub: a part of the path is a file"),
        (["fit", "ok.csv", "--columns", "a"], "ok.csv: no column named 'a'"),
        (["fit", "missing.csv"], "missing.csv: no such file"),
        (["fit", "fake.npy"], "fake.npy: not a readable .npy file (it does not start with the .npy magic bytes)"),
        (["fit", "none.npy"], "none.npy: the file holds no data rows"),
        (["fit", "none.parquet"], "none.parquet: the Parquet data holds no rows"),
        (["predict", "ok.csv", "ok.csv", "--out", "p.csv"], "ok.csv: not an overgmm model file"),
    ]


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path, monkeypatch, capsys):
    # the first case in a subprocess, as a user meets it (exit status, stderr, no
    # traceback); the others through the same entry point in this process (a subprocess
    # pays about 3 s of imports each)
    from overgmm.cli import main

    monkeypatch.chdir(tmp_path)
    failures = []
    for i, (args, expected) in enumerate(bad_inputs(tmp_path)):
        extra = ["--out", "o", "--quiet"] if args[0] == "fit" and "--out" not in args else []
        if i == 0:
            r = run(*args, *extra, cwd=tmp_path)
            code, stderr = r.returncode, r.stderr
        else:
            code, stderr = main([*args, *extra]), capsys.readouterr().err
        err = stderr.strip().splitlines()
        if not (code == 2 and len(err) == 1 and expected in err[0] and "Traceback" not in stderr):
            failures.append((args, code, stderr))
    assert not failures, failures
    assert not (tmp_path / "o" / "model.json").exists() and not (tmp_path / "p.csv").exists()


def test_columns_named_twice_or_empty_are_errors(tmp_path, monkeypatch, capsys):
    """`--columns x0,x0` fitted a copy of x0 beside itself."""
    from overgmm.cli import main

    monkeypatch.chdir(tmp_path)
    np.savetxt(tmp_path / "ok.csv", np.random.default_rng(0).normal(size=(30, 3)), delimiter=",")
    with pytest.raises(SystemExit) as exc:  # a usage error
        main(["fit", "ok.csv", "--columns", "x0,,x1", "--out", "o"])
    assert exc.value.code == 2 and "got 'x0,,x1' (an empty name)" in capsys.readouterr().err
    assert main(["fit", "ok.csv", "--columns", "x0,x0", "--out", "o"]) == 2
    assert capsys.readouterr().err.strip() == "overgmm fit: error: ok.csv: column 'x0' is chosen twice"
    assert not (tmp_path / "o" / "model.json").exists()


def test_version_and_help(tmp_path):
    from overgmm import __version__

    r = run("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"overgmm {__version__}"
    r = run("fit", "--help", cwd=tmp_path)
    text = " ".join(r.stdout.split()).replace("- ", "-")  # argparse may wrap after a hyphen
    assert r.returncode == 0 and "held-out log-likelihood is within 0.02" in text
    assert "fewest free parameters" in text
