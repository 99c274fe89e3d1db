"""What X1-X4 share: the teacher at 0, the backend, budgets, decay diagnostics, captions."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

import overgmm as og
from overgmm.analysis import loglog_fit, loglog_slope, semilog_fit
from overgmm.experiments.base import population_backend

PAPER = "Xu, Fazel, Du 2024"
HISTORY_COLUMNS = ["step", "grad_evals", "loss", "grad_norm", "param_dist", "max_norm", "backend"]


# ---- shared helpers ------------------------------------------------------------------


def _teacher(d: int):
    return og.Mixture(np.zeros((1, d)))


def _backend(cfg: dict, rank: int | None):
    """The config's backend; for quadrature with the span rank of a teacher at 0 (the
    span of all means is the span of the student means, rank <= min(d, n))."""
    backend = population_backend(cfg)
    if isinstance(backend, og.Quadrature) and rank is not None:
        backend = dataclasses.replace(backend, rank=int(rank))
    return backend


def _steps(cfg: dict) -> tuple[int, int]:
    """(steps, stride) for the configured backend: fresh Monte Carlo with the papers'
    sample size costs about 0.1 s per step here, so it gets its own budget."""
    if cfg["backend"] == "monte-carlo":
        return int(cfg["monte_carlo_steps"]), int(cfg["monte_carlo_stride"])
    return int(cfg["steps"]), int(cfg["stride"])


def _seconds_per_eval(problem, student, repeats: int = 3) -> float:
    """Median wall time of one compiled value-and-gradient evaluation."""
    import jax

    f = jax.jit(lambda s, k: problem.value_and_grad(s, k))
    key = jax.random.key(0)
    jax.block_until_ready(f(student, key))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(student, key))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _sublinear(step, y, late_fraction: float) -> dict:
    """Late-run decay diagnostics: log-log slope over [late_fraction T, T], the slopes
    over the first and last thirds (in log t) of that window, and R^2 of the log-log and
    semilog fits. Exponential decay shows as a semilog fit at least as good as the
    log-log one and a log-log slope that keeps steepening."""
    step, y = np.asarray(step, float), np.asarray(y, float)
    t_end = step.max()
    late = step >= late_fraction * t_end
    s, v = step[late], y[late]
    lo, hi = np.log(late_fraction * t_end), np.log(t_end)
    cut1, cut2 = np.exp(lo + (hi - lo) / 3), np.exp(lo + 2 * (hi - lo) / 3)
    early_slope = loglog_slope(s[s <= cut1], v[s <= cut1])
    last_slope = loglog_slope(s[s >= cut2], v[s >= cut2])
    return {
        "slope": loglog_slope(s, v),
        "early_slope": early_slope,
        "last_slope": last_slope,
        "steepening": last_slope / early_slope if early_slope else float("nan"),
        "r2_loglog": loglog_fit(s, v)[1],
        "r2_semilog": semilog_fit(s, v)[1],
    }


def _is_sublinear(diag: dict, lo: float, hi: float, max_steepening: float) -> bool:
    return bool(
        lo <= diag["slope"] < hi
        and diag["r2_loglog"] > diag["r2_semilog"]
        and diag["steepening"] <= max_steepening
        and diag["last_slope"] < 0
    )


def _rounded(d: dict, digits: int = 4) -> dict:
    return {k: (round(float(v), digits) if isinstance(v, float | np.floating) else v) for k, v in d.items()}


def _caption(cfg: dict, extra: str) -> str:
    """The experiment's settings, then the backend line (with the quadrature rule)."""
    from overgmm.plotting import backend_caption

    rule = None
    if cfg["backend"] == "quadrature":
        q = cfg.get("quadrature", {})
        rule = (
            f"{q.get('rule', 'auto')}, {q.get('nodes', 'default')} nodes/axis on the span (rank min(d, n)), "
            f"{'defensive' if q.get('defensive', True) else 'teacher-centred'} nodes"
        )
    return f"{extra}\n{backend_caption(cfg, rule)}"
