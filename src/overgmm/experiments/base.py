"""What every reproduction shares: the :class:`Experiment` record, claims, resolved
configs, the table sink that writes results as they arrive, and a progress line.

An experiment is data plus three functions (SPEC, STYLE last section):

- ``run(cfg, sink)``: computes and writes tidy tables through ``sink.write(name, df)``
  (each table is on disk as soon as it is written, so a run that fails later loses
  nothing already computed);
- ``claims(tables, cfg)``: the paper's claims checked against the tables;
- ``figure(tables, cfg, out)``: draws PNGs from the tables alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overgmm import config

BACKENDS = ("quadrature", "monte-carlo")
EXPERIMENT_KEYS = {"name": str, "paper": str, "description": str, "multi_trial": bool}
Tables = dict[str, pd.DataFrame]


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One experiment of the papers.

    Attributes:
      name: short id (``"W1"``).
      paper: the paper and figure/theorem it reproduces.
      description: one line for ``overgmm reproduce --list``.
      config: the full-size settings (JSON-serialisable).
      quick: overrides of ``config`` for ``--quick`` (seconds to a minute).
      run: ``run(cfg, sink) -> None``.
      claims: ``claims(tables, cfg) -> list[dict]`` (see :func:`claim`).
      figure: ``figure(tables, cfg, out_dir) -> list[Path]``.
      multi_trial: many independent trials (X4, Z1, W6): excluded from the
        ``--all`` timing budget.
    """

    name: str
    paper: str
    description: str
    config: dict
    quick: dict
    run: Callable[[dict, TableSink], None]
    claims: Callable[[Tables, dict], list[dict]]
    figure: Callable[[Tables, dict, Path], list[Path]]
    multi_trial: bool = False

    @classmethod
    def from_config(cls, name: str, run, claims, figure) -> Experiment:
        """The experiment whose settings are the config file ``configs/NAME.toml``: its
        ``[experiment]`` table (name, paper, description, multi_trial), its ``[quick]``
        overrides, and the rest, the config."""
        path = config.config_path(name)
        raw = config.read_toml(path)
        meta, quick = raw.pop("experiment", {}), raw.pop("quick", {})
        config.check_keys(meta, EXPERIMENT_KEYS, f"{path}: [experiment]")
        for key in ("name", "paper", "description"):
            if key not in meta:
                raise config.ConfigError(f"{path}: [experiment] needs {key!r}")
        return cls(
            meta["name"],
            meta["paper"],
            meta["description"],
            raw,
            quick,
            run,
            claims,
            figure,
            meta.get("multi_trial", False),
        )

    def resolve(self, *, quick: bool = False, seed: int | None = None, backend: str | None = None) -> dict:
        """The fully resolved config of one run (what ``config.json`` records): the
        config, with the ``quick`` overrides deep-merged in for ``quick=True``."""
        unknown = set(self.quick) - set(self.config)
        if unknown:
            raise ValueError(f"{self.name}: quick overrides unknown keys {sorted(unknown)}")
        cfg = config.drop_skipped(config.deep_merge(self.config, self.quick) if quick else self.config)
        if seed is not None:
            cfg["seed"] = int(seed)
        if backend is not None:
            if backend not in BACKENDS:
                raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
            cfg["backend"] = backend
        cfg.setdefault("seed", 0)
        cfg.setdefault("backend", "quadrature")
        cfg["experiment"] = self.name
        cfg["quick"] = bool(quick)
        return cfg


def claim(name: str, paper: str, expected: str, measured: Any, holds: bool, **extra: Any) -> dict:
    """One checked claim: what the paper says (``expected``, in words), the number
    this run measured, and whether the claim holds."""
    return {
        "name": name,
        "paper": paper,
        "expected": expected,
        "measured": _jsonable(measured),
        "holds": bool(holds),
        **{k: _jsonable(v) for k, v in extra.items()},
    }


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


class TableSink:
    """Writes each table to ``out/NAME.csv`` the moment it arrives (through a
    temporary file renamed into place) and keeps it for the claims and figures.
    ``write`` with ``append=True`` adds rows to a table already written."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.tables: Tables = {}

    def write(self, name: str, data: pd.DataFrame | list[dict], *, append: bool = False) -> pd.DataFrame:
        df = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        if append and name in self.tables:
            df = pd.concat([self.tables[name], df], ignore_index=True)
        self.tables[name] = df
        path = self.out / f"{name}.csv"
        tmp = path.with_suffix(".csv.tmp")
        df.to_csv(tmp, index=False, float_format="%.17g")
        tmp.replace(path)
        return df


def read_tables(out: Path) -> Tables:
    """The tables a run wrote into ``out`` (every ``*.csv``)."""
    return {p.stem: pd.read_csv(p) for p in sorted(Path(out).glob("*.csv"))}


def write_json(path: Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")
    tmp.replace(path)


def progress(items: Iterable, total: int | None = None, desc: str = "", stream=None) -> Iterator:
    """Yield from ``items`` while printing ``desc [i/total] elapsed, ETA`` to stderr."""
    stream = sys.stderr if stream is None else stream
    if total is None:
        items = list(items)
        total = len(items)
    t0 = time.perf_counter()
    for i, item in enumerate(items):
        yield item
        done = i + 1
        el = time.perf_counter() - t0
        eta = el / done * (total - done)
        print(f"  {desc} [{done}/{total}] {el:.0f} s elapsed, ETA {eta:.0f} s", file=stream, flush=True)


# ---- shared helpers of the numerical experiments -------------------------------------


def population_backend(cfg: dict, dim: int | None = None):
    """The expectation backend an experiment's config asks for: exact quadrature
    (default; optional ``quadrature`` table of :class:`~overgmm.Quadrature` options) or
    the papers' fresh Monte Carlo with ``mc_samples`` samples per step, through the one
    schema (:func:`overgmm.config.backend`)."""
    if cfg["backend"] == "monte-carlo":
        spec = {"kind": "monte-carlo", "samples": int(cfg.get("mc_samples", 100_000)), "fresh": True}
        return config.backend({**spec, "seed": int(cfg["seed"])}, dim)
    return config.backend({"kind": "quadrature", **cfg.get("quadrature", {})}, dim)


def history_frame(hist, **labels: Any) -> pd.DataFrame:
    """A :class:`~overgmm.History` as a tidy frame, with constant label columns (the
    per-record state fields of ``record=``, such as the means, are left out)."""
    from overgmm.driver import RECORDABLE

    measures = {k: a for k, a in hist.columns.items() if k not in RECORDABLE}
    df = pd.DataFrame(dataclasses.replace(hist, columns=measures).to_rows())
    for k, v in labels.items():
        df[k] = v
    return df
