"""X3 (Theorem 7's bad point) and X4 (the statistical rate of sample-based gradient EM)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

import overgmm as og
from overgmm import config, studies
from overgmm.analysis import first_below, line_fit, loglog_slope, semilog_fit
from overgmm.experiments.base import Experiment, Tables, TableSink, claim, history_frame, progress
from overgmm.experiments.xu2024.common import (
    HISTORY_COLUMNS,
    PAPER,
    _teacher,
)

# ---- X3: Theorem 7's bad point, c = 2 and c = 12 ---------------------------------------------


def log_grad_norm_line(positions, weights=None, *, h_scale: float = 0.2, tail: float = 12.0) -> float:
    """``log |grad L|`` for a student on a line learning ``N(0, I_d)``: the core's
    log-domain Lemma 9 integration, :func:`overgmm.tails.line_log_gradient_norm`."""
    from overgmm.tails import line_log_gradient_norm

    return line_log_gradient_norm(positions, weights, h_scale=h_scale, tail=tail)


def theorem7_positions(c: float, d: int, n: int) -> np.ndarray:
    """Theorem 7's point along e_1: ``mu_1 = c sqrt(d)``, ``mu_2 = -mu_1``, the rest 0."""
    a = c * math.sqrt(d)
    return np.array([a, -a] + [0.0] * (n - 2))


def _autodiff_grad_norm(c_list, d_list, n: int, tails: str) -> dict:
    """|grad L| (the whole vector) from jax.grad of og.kl, rank-1 quadrature: with
    ``tails="off"`` every component by the bulk rule (the form -E[psi_i (x - mu_i)] summed
    next to O(1) terms), with ``"auto"`` (the default) the small components on their own
    nodes and the one at the teacher in its complement form (overgmm.tails, issue 19).
    Computed in 1-D: with every mean on one line the d-dim KL equals the 1-D one (the
    orthogonal coordinates integrate out)."""
    import jax
    import jax.numpy as jnp

    teacher = _teacher(1)
    backend = og.Quadrature(rank=1, tails=tails)

    @jax.jit
    def gnorm(means):
        g = jax.grad(lambda mu: og.kl(teacher, og.Mixture(mu, jnp.full(n, 1.0 / n)), backend=backend))(means)
        return jnp.sqrt(jnp.sum(g**2))

    return {(c, d): float(gnorm(jnp.asarray(theorem7_positions(c, d, n))[:, None])) for c in c_list for d in d_list}


def x3_run(cfg: dict, sink: TableSink) -> None:
    import jax

    n, ds, cs = cfg["n"], list(range(1, cfg["d_max"] + 1)), cfg["cs"]
    auto = _autodiff_grad_norm(cs, ds, n, tails="off")
    core = _autodiff_grad_norm(cs, ds, n, tails="auto")
    rows = []
    for c in cs:
        for d in ds:
            pos = theorem7_positions(c, d, n)
            lg = log_grad_norm_line(pos, h_scale=cfg["h_scale"], tail=cfg["tail"])
            lg2 = log_grad_norm_line(pos, h_scale=cfg["check_h_scale"], tail=cfg["check_tail"])
            ad = auto[(c, d)]
            rows.append(
                {
                    "c": c,
                    "d": d,
                    "n": n,
                    "mu1_norm": c * math.sqrt(d),
                    "log10_grad": lg / math.log(10),
                    "log10_grad_check": lg2 / math.log(10),
                    "rel_diff": abs(math.expm1(lg2 - lg)),
                    "log10_grad_autodiff": math.log10(ad) if ad > 0 else float("-inf"),
                    "log10_grad_core": math.log10(core[(c, d)]) if core[(c, d)] > 0 else float("-inf"),
                    "log10_asymptote": (-(c**2) * d / 8 - 0.5 * math.log(2 * math.pi)) / math.log(10),
                }
            )
    sink.write("grad_norm", rows)

    # gradient EM from Theorem 7's point with c_trap: exact in 1-D (means on a line), all d in one batch
    c, steps, stride = cfg["trap_c"], int(cfg["trap_steps"]), int(cfg["trap_stride"])
    tds = list(range(1, cfg["trap_d_max"] + 1))
    students = og.stack([og.Mixture(theorem7_positions(c, d, n)[:, None], np.full(n, 1.0 / n)) for d in tds])
    problem = og.Problem.population(_teacher(1), backend=og.Quadrature(rank=1))
    hist = og.run_batch(
        og.gradient_em(problem, cfg["step_size"]),
        students,
        steps,
        stride=stride,
        keys=jax.random.split(jax.random.key(int(cfg["seed"])), len(tds)),
    )
    df = history_frame(hist)
    df["d"] = [tds[t] for t in df["trial"]]
    df["c"] = c
    df["mu1_0"] = c * np.sqrt(df["d"])
    sink.write("trap", df[HISTORY_COLUMNS + ["d", "c", "mu1_0"]])


def _escape_steps(trap: pd.DataFrame, fraction: float) -> dict[int, float]:
    out = {}
    for d, g in trap.groupby("d"):
        out[int(d)] = first_below(g["step"], g["max_norm"] / g["mu1_0"], fraction)
    return out


def x3_claims(tables: Tables, cfg: dict) -> list[dict]:
    gn = tables["grad_norm"]
    out = []
    for c in cfg["cs"]:
        sub = gn[gn["c"] == c].sort_values("d")
        b, r2 = line_fit(sub["d"], sub["log10_grad"])  # on log10 values: no underflow for any d
        out.append(
            claim(
                f"grad_exponential_in_d_c{c:g}",
                f"{PAPER}, Fig. 2 left / Theorem 7 (c = {c:g})",
                f"|grad L| at Theorem 7's point with c={c:g} falls exponentially in d = 1..{cfg['d_max']}: "
                f"log10|grad L| linear in d (R^2 >= {cfg['r2_min']}), slope < 0 (large-d asymptote "
                f"{-(c**2) / 8 / math.log(10):.3f} per d)",
                {
                    "log10_slope_per_d": round(float(b), 4),
                    "r2": round(r2, 6),
                    "log10_grad_at_d_max": round(float(sub["log10_grad"].iloc[-1]), 3),
                },
                bool(b < 0 and r2 >= cfg["r2_min"]),
            )
        )
    worst = float(gn["rel_diff"].max())
    out.append(
        claim(
            "relative_accuracy_1e-6",
            "issue 3 (beyond the paper)",
            f"two different log-domain rules agree to relative {cfg['rel_tol']:g} at every (c, d), c = 12 included "
            "(values far below 1e-100)",
            {"max_rel_diff": worst, "min_log10_grad": round(float(gn["log10_grad"].min()), 3)},
            bool(worst <= cfg["rel_tol"]),
        )
    )
    big = gn[(gn["c"] == max(cfg["cs"])) & (gn["d"] >= 2)]
    auto_err = np.abs(10.0 ** (big["log10_grad_autodiff"] - big["log10_grad"]) - 1)
    core_err = np.abs(10.0 ** (gn["log10_grad_core"] - gn["log10_grad"]) - 1) if "log10_grad_core" in gn else None
    measured = {
        "min_rel_error": float(f"{auto_err.min():.3g}"),
        "min_log10_autodiff": round(float(big["log10_grad_autodiff"].min()), 2),
    }
    if core_err is not None:
        measured["core_tails_max_rel_error"] = float(f"{core_err.max():.3g}")
    out.append(
        claim(
            "naive_form_cancels",
            "issue 3 (beyond the paper)",
            f"the autodiff form -E[psi_i (x - mu_i)] summed by the bulk rule (Quadrature(tails='off')) cannot "
            f"resolve c={max(cfg['cs']):g} for d >= 2 (relative error > 1: rounding noise of the zero components "
            "swamps the true norm), which is why Lemma 9's form is used here; the core's default (tails='auto', "
            "issues 11 and 19) integrates those components on their own nodes and the one at the teacher in its "
            "complement form (core_tails_max_rel_error: jax.grad of og.kl against Lemma 9, the whole vector)",
            measured,
            bool(auto_err.min() > 1),
        )
    )
    trap = tables["trap"]
    esc = _escape_steps(trap, cfg["escape_fraction"])
    fit_d = [d for d in sorted(esc) if d >= cfg["escape_fit_d_min"] and math.isfinite(esc[d])]
    slope, r2 = semilog_fit(np.array(fit_d, float), np.array([esc[d] for d in fit_d]))
    dmax = max(esc)
    g = trap[trap["d"] == dmax].sort_values("step")
    at = g[g["step"] <= cfg["trap_check_steps"]].iloc[-1]
    loss_change = float(1 - at["loss"] / g["loss"].iloc[0])
    mu_change = float(1 - at["max_norm"] / g["max_norm"].iloc[0])
    out.append(
        claim(
            "trapped_exponentially_long",
            f"{PAPER}, Theorem 7 (gradient EM, c = {cfg['trap_c']:g}, step {cfg['step_size']})",
            f"gradient EM stays near the bad point for exp(Theta(d)) steps: steps until max|mu_i| falls below "
            f"{cfg['escape_fraction']} of its start grow exponentially in d (semilog fit over d >= "
            f"{cfg['escape_fit_d_min']}: slope > 0, R^2 >= {cfg['escape_r2_min']}); at d = {dmax} the loss moves "
            f"< 1% and |mu_1| < 5% over the first {cfg['trap_check_steps']} steps",
            {
                "escape_steps": {str(k): v for k, v in esc.items()},
                "log10_slope_per_d": round(slope, 4),
                "r2": round(r2, 5),
                f"loss_change_first_{cfg['trap_check_steps']}": float(f"{loss_change:.3g}"),
                f"mu1_change_first_{cfg['trap_check_steps']}": float(f"{mu_change:.3g}"),
            },
            bool(
                len(fit_d) >= 3
                and slope > 0
                and r2 >= cfg["escape_r2_min"]
                and abs(loss_change) < 0.01
                and abs(mu_change) < 0.05
            ),
        )
    )
    return out


def x3_figure(tables: Tables, cfg: dict, out: Path) -> list[Path]:
    from overgmm import plotting

    gn = tables["grad_norm"]
    fig, axes = plotting.subplots(3, width=4.3)
    ax = axes[0]  # the paper's plot: the smallest c on a log axis
    c0 = min(cfg["cs"])
    sub = gn[gn["c"] == c0].sort_values("d")
    ax.plot(sub["d"], 10.0 ** sub["log10_grad"], "o-", color="C0", ms=4, label="|grad L|")
    ax.set(yscale="log", xlabel="dimension d", ylabel="|grad L(mu(0))|")
    ax.set_title(f"As plotted in the paper: c = {c0:g}", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    for i, c in enumerate(cfg["cs"]):
        sub = gn[gn["c"] == c].sort_values("d")
        b, a = np.polyfit(sub["d"], sub["log10_grad"], 1)
        ax.plot(sub["d"], sub["log10_grad"], "o-", color=f"C{i}", ms=4, label=f"c = {c:g} (Lemma 9, log domain)")
        ax.plot(sub["d"], a + b * sub["d"], ":", color=f"C{i}", lw=1, label=f"fit: {b:.3f} per d")
        ad = sub["log10_grad_autodiff"].replace(-np.inf, np.nan)
        ax.plot(sub["d"], ad, "x", color=f"C{i}", ms=5, label=f"c = {c:g}, autodiff, tails='off'")
        if "log10_grad_core" in sub:
            ax.plot(sub["d"], sub["log10_grad_core"], "+", color=f"C{i}", ms=7, label=f"c = {c:g}, jax.grad(og.kl)")
    ax.set(xlabel="dimension d", ylabel="log10 |grad L(mu(0))|")
    ax.set_title(f"Theorem 7's point (n = {cfg['n']}): c = 2 and c = 12", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[2]
    trap = tables["trap"]
    esc = _escape_steps(trap, cfg["escape_fraction"])
    ds = sorted(esc)
    ax.plot(ds, [esc[d] for d in ds], "o-", color="C0", ms=4)
    ax.set(
        yscale="log",
        xlabel="dimension d",
        ylabel=f"steps until max|mu_i| < {cfg['escape_fraction']} max|mu_i(0)|",
    )
    ax.set_title(f"Gradient EM from the bad point, c = {cfg['trap_c']:g}", fontsize=9)
    extra = (
        f"X3: teacher N(0, I_d), n={cfg['n']} equal weights, mu_1 = -mu_2 = c sqrt(d) e_1, rest 0; "
        f"step {cfg['step_size']}; |grad L| by Lemma 9 in the log domain "
        "(1-D trapezoid in x_1, checked by a second rule)"
    )
    note = "expectations: exact 1-D quadrature in x_1 (the integrands depend on x_1 only)"
    note += f"; seed {cfg['seed']}" + ("; --quick" if cfg.get("quick") else "")
    return [plotting.save(fig, out, "X3", f"{extra}\n{note}")]


X3 = Experiment.from_config("X3", run=x3_run, claims=x3_claims, figure=x3_figure)


# ---- X4: statistical rate of sample-based gradient EM --------------------------------


def x4_flat(cfg: dict) -> dict:
    """The settings of the run in one flat table, from ``configs/X4.toml``'s study: the
    sizes N and the number of runs from its axes, the rest from its base and settings."""
    if "base" not in cfg:  # already flat
        return cfg
    study = studies.validate_study({k: cfg[k] for k in ("study", "base", "axes", "settings")}, "X4")
    b = study["base"]
    return {
        **study["settings"],
        "d": b["teacher"]["d"],
        "n": b["student"]["n"],
        "step_size": b["algorithm"]["step_size"],
        "sample_sizes": study["axes"]["data.n_samples"],
        "trials": len(study["axes"]["seed"]),
        "steps": b["steps"],
        "records": b["steps"] // b["stride"],
        "init_scale": b["student"]["noise"],
        **{k: cfg[k] for k in ("seed", "backend", "quick")},
    }


def x4_run(cfg: dict, sink: TableSink) -> None:
    """The runs of the study in ``configs/X4.toml`` (the ones ``overgmm sweep X4`` stores),
    through :func:`overgmm.config.run_seeds`, one compiled batch per N; trial seeds
    ``1000 seed + s``. A seed's sample at size N is the first N points of its sample at
    any larger size (the teacher's draws are prefixes of one stream), and its start is the
    same at every N: the sizes share their random numbers, which cuts the noise of the
    fitted slope."""
    study = studies.validate_study({k: cfg[k] for k in ("study", "base", "axes", "settings")}, "X4")
    flat = x4_flat(cfg)
    if int(flat["steps"]) % int(flat["records"]):
        raise ValueError("X4: steps must be a multiple of records")
    groups: dict[int, list[dict]] = {}
    for run in studies.expand(study):
        groups.setdefault(int(run["axes"]["data.n_samples"]), []).append(run)
    for size, runs in progress(groups.items(), len(groups), "X4 N"):
        run_cfg = runs[0]["config"]
        seeds = [int(cfg["seed"]) * 1000 + r["config"]["seed"] for r in runs]
        hist = config.run_seeds(run_cfg, seeds, record=("means", "weights"))
        teacher = config.teacher(run_cfg["teacher"])
        # (trials, records, n, d) and (trials, records, n), the start left out
        means, weights = hist["means"][:, 1:], hist["weights"][:, 1:]
        target = np.asarray(teacher.means)[0]  # the teacher is one component
        pd_path = np.sum(weights * np.sum((means - target) ** 2, axis=-1), axis=-1)
        x = np.stack([config.sample(run_cfg["data"], teacher, s) for s in seeds])
        final = pd_path[:, -1]
        rows = pd.DataFrame(
            {
                "N": size,
                "trial": np.arange(len(seeds)),
                "seed": seeds,
                "param_dist": final,
                "param_error": np.sqrt(final),
                "rel_change_last": np.abs(pd_path[:, -1] / np.where(pd_path[:, -2] > 0, pd_path[:, -2], 1.0) - 1),
                "sample_mean": x.mean(axis=1)[:, 0],
                "sample_var_excess": x.var(axis=1).mean(axis=-1) - 1,
                "status": np.atleast_1d(hist.status),
            }
        )
        sink.write("trials", rows, append=True)


def _x4_summary(trials: pd.DataFrame) -> pd.DataFrame:
    g = trials.groupby("N")
    return pd.DataFrame(
        {
            "N": sorted(trials["N"].unique()),
            "mean_error": g["param_error"].mean().to_numpy(),
            "se_error": (g["param_error"].std() / np.sqrt(g["param_error"].count())).to_numpy(),
            "mean_param_dist": g["param_dist"].mean().to_numpy(),
        }
    )


def _bootstrap_slope(trials: pd.DataFrame, col: str, reps: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    groups = {int(k): g[col].to_numpy() for k, g in trials.groupby("N")}
    sizes = np.array(sorted(groups), float)
    slopes = []
    for _ in range(reps):
        means = [rng.choice(groups[int(s)], size=len(groups[int(s)])).mean() for s in sizes]
        slopes.append(loglog_slope(sizes, np.array(means)))
    return float(np.std(slopes))


def x4_claims(tables: Tables, cfg: dict) -> list[dict]:
    cfg = x4_flat(cfg)
    trials = tables["trials"]
    summ = _x4_summary(trials)
    fits = {}  # claim -> the fitted slope of a column of the summary and its bootstrap standard error
    for name, col, summ_col, band in (
        ("error_rate_quarter", "param_error", "mean_error", "slope_band"),
        ("squared_distance_rate_half", "param_dist", "mean_param_dist", "squared_slope_band"),
    ):
        slope = loglog_slope(summ["N"], summ[summ_col])
        se = _bootstrap_slope(trials, col, 200, int(cfg["seed"]))
        lo, hi = cfg[band]
        fits[name] = ({"slope": round(slope, 4), "bootstrap_se": round(se, 4)}, bool(lo <= slope <= hi), lo, hi)
    conv = trials.groupby("N")["rel_change_last"].median()
    paper = f"{PAPER}, Fig. 2 right"
    (m1, ok1, lo, hi), (m2, ok2, lo2, hi2) = fits["error_rate_quarter"], fits["squared_distance_rate_half"]
    quarter = (
        f"mean parametric error sqrt(sum_i pi_i |mu_i - mu*|^2) after convergence ~ N^(-1/4): fitted log-log "
        f"slope over N = {int(summ['N'].min())}..{int(summ['N'].max())} ({cfg['trials']} runs each) in [{lo}, {hi}]"
    )
    half = (
        f"if 'parametric error' is the squared distance sum_i pi_i |mu_i - mu*|^2, its slope is twice as steep "
        f"(about -1/2): slope in [{lo2}, {hi2}]"
    )
    return [
        claim("error_rate_quarter", paper, quarter, m1, ok1),
        claim("squared_distance_rate_half", f"{paper} (the squared distance of Fig. 1's y-axis)", half, m2, ok2),
        claim(
            "converged",
            paper,
            f"'after convergence': median relative change of the distance over the last {1 / cfg['records']:.0%} "
            f"of the {cfg['steps']} steps below {cfg['converged_tol']:g} at every N",
            {str(int(k)): float(f"{v:.3g}") for k, v in conv.items()},
            bool((conv <= cfg["converged_tol"]).all()),
        ),
    ]


def x4_figure(tables: Tables, cfg: dict, out: Path) -> list[Path]:
    cfg = x4_flat(cfg)
    from overgmm import plotting

    trials = tables["trials"]
    summ = _x4_summary(trials)
    fig, axes = plotting.subplots(1, width=6.8, height=4.6)
    ax = axes[0]
    x, y = summ["N"].to_numpy(float), summ["mean_error"].to_numpy()
    ax.errorbar(x, y, yerr=summ["se_error"], fmt="o-", color="C0", ms=4, label="parametric error (mean of runs)")
    b, a = np.polyfit(np.log(x), np.log(y), 1)
    ax.plot(x, np.exp(a) * x**b, "-", color="C2", lw=1, label=f"fit: N^{b:.3f}")
    ax.plot(x, y[0] * (x / x[0]) ** -0.25, "--", color="C3", lw=1, label="Theta(N^-1/4)")
    ax.set(xscale="log", yscale="log", xlabel="number of samples N", ylabel="sqrt(sum_i pi_i |mu_i - mu*|^2)")
    ax.set_title(f"Statistical rate of gradient EM (n = {cfg['n']})", fontsize=9)
    ax.legend(fontsize=7)
    extra = (
        f"X4: sample-based gradient EM, teacher N(0, I_{cfg['d']}), n={cfg['n']} equal fixed weights, "
        f"step {cfg['step_size']}, {cfg['steps']} steps, {cfg['trials']} runs per N (nested samples), "
        "error bars: 1 s.e."
    )
    note = f"sample negative log-likelihood (no population expectation); seed {cfg['seed']}"
    note += "; --quick" if cfg.get("quick") else ""
    return [plotting.save(fig, out, "X4", f"{extra}\n{note}")]


X4 = Experiment.from_config("X4", run=x4_run, claims=x4_claims, figure=x4_figure)
