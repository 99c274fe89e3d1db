"""Run one experiment end to end: resolve its config, run it into tables, check the
claims, draw the figures, write ``config.json`` and ``summary.json``."""

from __future__ import annotations

import json
import math
import re
import time
import traceback
from pathlib import Path
from typing import Any

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
    summary: dict[str, Any] = {
        "experiment": exp.name,
        "paper": exp.paper,
        "description": exp.description,
        "config": cfg,
    }
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


def format_number(x: float) -> str:
    """A measured number to 3 significant digits, trailing zeros kept (``-2.00``,
    ``1.00e-12``); a whole number below 1e7 in full (``198``)."""
    if not math.isfinite(x):
        return str(x)
    if x == int(x) and abs(x) < 1e7:
        return str(int(x))
    text = f"{x:#.3g}"
    return text[:-1] if text.endswith(".") else text


def format_measured(x: Any) -> str:
    """A measured value for a claims table: numbers to 3 significant digits, a dict as
    ``key=value`` pairs (a nested dict in parentheses), a list in brackets."""
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, float):
        return format_number(x)
    if isinstance(x, dict):
        return ", ".join(
            f"{k}=" + (f"({format_measured(v)})" if isinstance(v, dict) else format_measured(v)) for k, v in x.items()
        )
    if isinstance(x, list | tuple):
        return "[" + ", ".join(format_measured(v) for v in x) + "]"
    return str(x)


def _wrap(text: str, width: int) -> list[str]:
    """Lines of at most ``width`` characters, broken after ", " or at spaces (never inside a
    number); a single item longer than ``width`` keeps its own line."""
    lines, cur = [], ""
    for part in re.split(r"(?<=, )|(?<= )", text):
        if cur and len(cur) + len(part.rstrip()) > width:
            lines.append(cur.rstrip())
            cur = ""
        cur += part
    return [*lines, cur.rstrip()] if cur.strip() or not lines else lines


def format_claims(summary: dict) -> str:
    """The claims as a plain-text table (long cells wrap onto further lines)."""
    rows = [("claim", "holds", "measured", "expected")]
    for c in summary["claims"]:
        rows.append((c["name"], "yes" if c["holds"] else "NO", format_measured(c["measured"]), c["expected"]))
    caps = (46, 5, 56, 10_000)
    widths = [min(max(len(r[i]) for r in rows), cap) for i, cap in enumerate(caps)]
    out = []
    for k, r in enumerate(rows):
        cells = [_wrap(r[i], widths[i]) if i < 3 else [r[i]] for i in range(4)]
        for j in range(max(len(c) for c in cells)):
            line = [c[j] if j < len(c) else "" for c in cells]
            out.append("  ".join(t.ljust(w) for t, w in zip(line, widths, strict=True)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def claims_markdown(summary: dict) -> str:
    """The claims as a Markdown table (for docs/reproductions.md)."""
    lines = ["| claim | holds | measured | expected |", "|---|---|---|---|"]
    for c in summary["claims"]:
        measured = format_measured(c["measured"]).replace("|", "\\|")
        holds = "yes" if c["holds"] else "**no**"
        lines.append(f"| {c['name']} | {holds} | {measured} | {c['expected'].replace('|', chr(92) + '|')} |")
    return "\n".join(lines)
