"""The figure of a stored study (``overgmm plot DIR``), from the store's tables only:
x4: error vs sample size on log-log axes with the fitted slope; z1: success rate vs n;
w6: histogram of active components per dimension; loss: loss curves per group.

Measures come from :mod:`overgmm.measures`, fits from :mod:`overgmm.analysis`, and the
success thresholds from the study's ``[settings]`` (``radius``, ``loss_threshold``,
``active_weight``; ``expected_slope`` for x4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from overgmm import config, measures
from overgmm.analysis import loglog_slope
from overgmm.mixture import Mixture
from overgmm.studies import load_study as load
from overgmm.sweep import store

# The defaults of [settings] for the z1 figure: Z1's success rule (configs/Z1.toml).
SUCCESS_DEFAULTS = {"radius": 0.5, "loss_threshold": 1e-3, "active_weight": 1e-3}


def _final_student(row: pd.Series) -> Mixture:
    return Mixture(np.asarray(row["final_means"]), np.asarray(row["final_weights"]))


def _success(row: pd.Series, teacher_means: np.ndarray, settings: dict) -> bool:
    """Z1's success rule, :func:`overgmm.measures.recovers`, on a run's final row."""
    return measures.recovers(teacher_means, row["final_means"], row["final_weights"], row["loss"], **settings)


def summarize(out: str | Path) -> tuple[pd.DataFrame, dict]:
    """The table the study's figure draws, and its headline numbers."""
    out = Path(out)
    study = load(out / "study.toml")
    finals = store.load_finals(out)
    if finals.empty:
        raise ValueError(f"{out} holds no finished runs yet")
    kind, settings = study["study"]["figure"], study["settings"]
    if kind in ("x4", "z1"):
        teacher = config.teacher(finals["config"].iloc[0]["teacher"])
    if kind == "x4":
        dist = [
            float(measures.teacher_measures(teacher, _final_student(r))["param_dist"]) for _, r in finals.iterrows()
        ]
        finals["error"] = np.sqrt(dist)
        table = finals.groupby("data.n_samples")["error"].agg(["mean", "std", "count"]).reset_index()
        slope = loglog_slope(table["data.n_samples"], table["mean"])
        return table, {"slope": slope, "expected": settings.get("expected_slope", -0.25)}
    if kind == "z1":
        rule = {**SUCCESS_DEFAULTS, **{k: settings[k] for k in SUCCESS_DEFAULTS if k in settings}}
        tm = np.asarray(teacher.means)
        finals["success"] = [_success(r, tm, rule) for _, r in finals.iterrows()]
        table = finals.groupby("student.n")["success"].agg(["mean", "count"]).reset_index()
        return table, {"success_rate": dict(zip(table["student.n"].tolist(), table["mean"].tolist(), strict=True))}
    if kind == "w6":
        table = finals.groupby(["teacher.d", "active"]).size().rename("trials").reset_index()
        med = finals.groupby("teacher.d")["active"].median()
        return table, {"median_active": {int(k): float(v) for k, v in med.items()}}
    table = finals.drop(columns=["final_means", "final_weights", "config"])
    return table, {"median_final_loss": float(finals["loss"].median())}


def plot(out: str | Path) -> Path:
    """Draw ``DIR/figure.png`` (and ``DIR/figure.csv``, the table it shows)."""
    from overgmm import plotting as pl

    out = Path(out)
    study = load(out / "study.toml")
    kind = study["study"]["figure"]
    table, head = summarize(out)
    table.to_csv(out / "figure.csv", index=False)
    if kind == "x4":
        fig, (ax,) = pl.subplots(1)
        n = table["data.n_samples"].to_numpy(float)
        ax.errorbar(n, table["mean"], yerr=table["std"] / np.sqrt(table["count"]), fmt="o-", label="mean error")
        expected = head["expected"]
        ax.loglog(n, table["mean"].iloc[0] * (n / n[0]) ** expected, "r--", lw=0.8, label=f"N^{expected:g}")
        ax.loglog(
            n,
            table["mean"].iloc[0] * (n / n[0]) ** head["slope"],
            "g:",
            lw=0.8,
            label=f"fit: slope {head['slope']:.3f}",
        )
        ax.set_xlabel("number of samples N")
        ax.set_ylabel("error: sqrt(param. distance) at the end")
        ax.legend(fontsize=7)
    elif kind == "z1":
        fig, (ax,) = pl.subplots(1)
        ax.plot(table["student.n"], table["mean"], "o-")
        ax.set_xlabel("student components n")
        ax.set_ylabel("success rate over seeds")
        ax.set_ylim(-0.05, 1.05)
    elif kind == "w6":
        dims = sorted(table["teacher.d"].unique())
        fig, axes = pl.subplots(len(dims), width=3.4)
        for ax, d in zip(axes, dims, strict=True):
            g = table[table["teacher.d"] == d]
            ax.bar(g["active"], g["trials"], width=0.8)
            ax.set_xlim(0.5, study["base"]["student"]["n"] + 0.5)
            ax.set_title(f"d = {d}", fontsize=9)
            ax.set_xlabel("active components")
        axes[0].set_ylabel("trials")
    else:
        fig, (ax,) = pl.subplots(1)
        hist = store.load_history(out)
        for _, g in hist.groupby("run_id"):
            ax.semilogy(g["step"], pl.positive(g["loss"]), lw=0.6, color="C0", alpha=0.5)
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
    name = study["study"]["name"]
    return pl.save(fig, out, "figure", f"{name}: {study['study'].get('description', '')} ({len(table)} rows; {head})")
