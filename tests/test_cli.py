import json

import pytest

from overgmm.cli import main


def test_demo_writes_table_summary_and_figure(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "42"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["backend"].startswith("kl: quadrature")
    pol, gem = summary["methods"]["polyak"], summary["methods"]["gradient_em"]
    assert pol["final_loss"] < gem["final_loss"]  # the Polyak method is ahead at equal evaluations
    assert (tmp_path / "demo.png").stat().st_size > 1000
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0].startswith("method,step") and len(lines) == 1 + 2 * 43
    assert "gradient evaluations" in capsys.readouterr().out


def test_bad_steps_is_an_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--steps", "0"])
    assert exc.value.code == 2
    assert "--steps" in capsys.readouterr().err


def test_help_version_and_the_other_commands_start_without_scikit_learn():
    """Only the command being run registers its arguments: ``--help``, ``--version`` and
    ``reproduce --list`` do not import scikit-learn (fit's defaults are the estimator's)."""
    import subprocess
    import sys

    code = """import contextlib, io, sys
from overgmm.cli import main
for argv in (["--version"], ["--help"], ["reproduce", "--list"], ["nonsense"]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main(argv)
        except SystemExit:
            pass
    print(argv[0], "|", " ".join(out.getvalue().split()))
print("sklearn imported:", any(m == "sklearn" or m.startswith("sklearn.") for m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    assert lines[-1] == "sklearn imported: False", done.stdout
    text = {line.split(" | ")[0]: line.split(" | ")[1] for line in lines[:-1]}
    assert text["--version"].startswith("overgmm ")
    for name in ("demo", "reproduce", "fit", "predict", "sweep", "plot"):
        assert f" {name} " in text["--help"]  # every command listed, with its help
    assert "label a CSV" in text["--help"] and "draw a stored study's figure" in text["--help"]
    assert "W1" in text["reproduce"] and "invalid choice: 'nonsense'" in text["nonsense"]


def test_each_command_parses_its_own_arguments():
    from overgmm.cli import build_parser

    assert build_parser("fit").parse_args(["fit", "x.csv", "--tol", "0.5"]).tol == 0.5
    assert build_parser("plot").parse_args(["plot", "d"]).dir == "d"
    with pytest.raises(SystemExit):  # only the command's own module registers arguments
        build_parser("plot").parse_args(["fit", "x.csv", "--tol", "0.5"])
