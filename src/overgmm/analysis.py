"""Analysis of recorded runs, shared by the experiments' claims and the studies' plots:
line fits (log-log slopes, semilog rates), first crossings, the envelope of a Polyak run
and the loss at a budget. NumPy and pandas only; every function reads tables or arrays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def line_fit(x, y) -> tuple[float, float]:
    """Least-squares slope of y against x and the R^2 of that line (nan with fewer than
    two points or no spread in y)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2:
        return float("nan"), float("nan")
    b, a = np.polyfit(x, y, 1)
    ss = np.sum((y - y.mean()) ** 2)
    return float(b), float(1 - np.sum((y - (a + b * x)) ** 2) / ss) if ss > 0 else float("nan")


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (positive finite points only)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def loglog_fit(x, y) -> tuple[float, float]:
    """(slope, R^2) of log10 y against log10 x over the positive finite points (nan with
    fewer than three)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan"), float("nan")
    return line_fit(np.log10(x[ok]), np.log10(y[ok]))


def semilog_fit(x, y) -> tuple[float, float]:
    """Fit log10 y = a + b x over the positive finite y; returns (b, R^2) (nan with
    fewer than three points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (y > 0) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan"), float("nan")
    return line_fit(x[ok], np.log10(y[ok]))


def window_slope(df: pd.DataFrame, lo: float, hi: float, x: str = "step", y: str = "loss") -> float:
    """:func:`loglog_slope` of ``df[y]`` against ``df[x]`` over ``lo <= x <= hi``."""
    sel = df[(df[x] >= lo) & (df[x] <= hi)]
    return loglog_slope(sel[x].to_numpy(), sel[y].to_numpy())


def first_below(x, y, level: float) -> float:
    """The first ``x`` at which ``y <= level`` (inf if never)."""
    idx = np.flatnonzero(np.asarray(y) <= level)
    return float(np.asarray(x)[idx[0]]) if len(idx) else float("inf")


def first_below_by(hist: pd.DataFrame, level: float, by: list[str], x: str = "step", y: str = "loss") -> pd.DataFrame:
    """:func:`first_below` per group of ``by + ["trial"]``, strictly below ``level``: a
    table with the group keys and ``time`` (inf if never)."""
    rows = []
    for key, g in hist.groupby(by + ["trial"]):
        below = g[g[y] < level][x]
        rows.append(
            {**dict(zip(by + ["trial"], key, strict=True)), "time": float(below.min()) if len(below) else np.inf}
        )
    return pd.DataFrame(rows)


def loss_at(df: pd.DataFrame, evals: float) -> float:
    """The loss of the last record with at most ``evals`` gradient evaluations."""
    sub = df[df["grad_evals"] <= evals]
    return float(sub["loss"].iloc[-1]) if len(sub) else float("nan")


def envelope(df: pd.DataFrame) -> pd.DataFrame:
    """The records just before each long Polyak step (the loss the long step starts from)."""
    idx = np.flatnonzero(df["polyak"].to_numpy().astype(bool))
    before = idx - 1
    before = before[before >= 0]
    return df.iloc[before]


def envelope_rate(df: pd.DataFrame, floor: float = 0.0, min_loss: float = 1e-300) -> tuple[float, float, float]:
    """Per-long-step factor of the envelope (median ratio of consecutive envelope values
    of ``loss - floor``), the R^2 of a semilog line through them and the decades they span."""
    env = envelope(df)
    gap = env["loss"].to_numpy() - floor
    ok = gap > min_loss
    x, y = env["grad_evals"].to_numpy()[ok], gap[ok]
    if len(y) < 3:
        return float("nan"), float("nan"), 0.0
    ratios = y[1:] / y[:-1]
    _, r2 = semilog_fit(x, y)
    return float(np.median(ratios)), r2, float(np.log10(y.max() / y.min()))


def long_step_rises(df: pd.DataFrame) -> int:
    """How many long Polyak steps raised the loss."""
    idx = np.flatnonzero(df["polyak"].to_numpy().astype(bool))
    idx = idx[idx >= 1]
    loss = df["loss"].to_numpy()
    return int(np.sum(loss[idx] > loss[idx - 1]))


def evals_to(df: pd.DataFrame, level: float) -> float:
    """Gradient evaluations at the first record with loss <= level (inf if never)."""
    return first_below(df["grad_evals"], df["loss"], level)
