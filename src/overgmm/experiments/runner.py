"""Run one experiment end to end: resolve its config, run it into tables, check the
claims, draw the figures, write ``config.json`` and ``summary.json``."""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

from overgmm.experiments.base import Experiment, TableSink, read_tables, write_json


def reproduce(
    exp: Experiment,
    *,
    quick: bool = False,
    out: Path | None = None,
    seed: int | None = None,
    backend: str | None = None,
) -> dict:
    """Run ``exp`` and write everything into ``out`` (default ``results/NAME``).

    Returns the summary (also written to ``out/summary.json``). An exception inside the
    run is re-raised after writing what was computed so far and a summary whose
    ``status`` is ``"failed"`` with the traceback.
    """
    cfg = exp.resolve(quick=quick, seed=seed, backend=backend)
    out = Path(out) if out is not None else Path("results") / exp.name
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg)
    sink = TableSink(out)
    t0 = time.perf_counter()
    summary = {"experiment": exp.name, "paper": exp.paper, "description": exp.description, "config": cfg}
    try:
        exp.run(cfg, sink)
    except Exception:
        summary.update(
            status="failed",
            seconds=round(time.perf_counter() - t0, 2),
            error=traceback.format_exc(),
            tables=sorted(sink.tables),
        )
        write_json(out / "summary.json", summary)
        raise
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return _finish(exp, cfg, sink.tables, out, summary)


def replot(exp: Experiment, out: Path) -> dict:
    """Recompute claims and figures from the tables and config already in ``out``."""
    out = Path(out)
    cfg = json.loads((out / "config.json").read_text())
    old = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    summary = {
        "experiment": exp.name,
        "paper": exp.paper,
        "description": exp.description,
        "config": cfg,
        "seconds": old.get("seconds"),
    }
    return _finish(exp, cfg, read_tables(out), out, summary)


def _finish(exp: Experiment, cfg: dict, tables, out: Path, summary: dict) -> dict:
    summary["claims"] = exp.claims(tables, cfg)
    summary["status"] = "ok"
    summary["tables"] = sorted(f"{k}.csv" for k in tables)
    write_json(out / "summary.json", summary)
    figures = exp.figure(tables, cfg, out)
    summary["figures"] = [Path(p).name for p in figures]
    write_json(out / "summary.json", summary)
    return summary


def format_claims(summary: dict) -> str:
    """The claims as a plain-text table."""
    rows = [("claim", "holds", "measured", "expected")]
    for c in summary["claims"]:
        measured = c["measured"]
        if isinstance(measured, float):
            measured = f"{measured:.4g}"
        elif isinstance(measured, dict | list):
            measured = json.dumps(measured, default=str)
        rows.append((c["name"], "yes" if c["holds"] else "NO", str(measured), c["expected"]))
    widths = [min(max(len(r[i]) for r in rows), cap) for i, cap in enumerate((46, 5, 40, 200))]

    def fmt(r):
        cells = [r[i] if len(r[i]) <= widths[i] else r[i][: widths[i] - 1] + "~" for i in range(4)]
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    lines = [fmt(rows[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]]
    return "\n".join(lines)


def claims_markdown(summary: dict) -> str:
    """The claims as a Markdown table (for docs/reproductions.md)."""

    def fmt(x):
        if isinstance(x, float):
            return f"{x:.4g}"
        if isinstance(x, dict):
            return ", ".join(f"{k}: {fmt(v)}" for k, v in x.items())
        return str(x)

    lines = ["| claim | expected | measured | holds |", "|---|---|---|---|"]
    for c in summary["claims"]:
        lines.append(f"| {c['name']} | {c['expected']} | {fmt(c['measured'])} | {'yes' if c['holds'] else '**no**'} |")
    return "\n".join(lines)
