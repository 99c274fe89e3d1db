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
