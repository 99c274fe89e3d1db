"""From resolved run configs to computed runs: the teacher, the students of a group's
seeds, the problem, the algorithm, and one :func:`overgmm.run_batch` call per batch
(a data-based run passes each seed's sample as its own problem, ``problems=``).

The driver caches its compiled functions on (algorithm config, loop settings, shapes),
so a worker compiles each group's batch shape once, not once per task.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from overgmm import driver
from overgmm.experiments.base import algorithm_from_spec
from overgmm.mixture import Mixture
from overgmm.problem import Problem


def teacher_of(cfg: dict) -> Mixture:
    t = cfg["teacher"]
    d, m = int(t["d"]), int(t["m"])
    if "means" in t:
        means = np.asarray(t["means"], float)
        if means.shape != (m, d):
            raise ValueError(f"teacher.means has shape {means.shape}, expected (m, d) = ({m}, {d})")
    else:
        rng = np.random.default_rng(int(t.get("seed", 0)))
        means = rng.normal(size=(m, d)) * float(t.get("scale", 1.0))
    w = t.get("weights", "uniform")
    weights = np.full(m, 1.0 / m) if w == "uniform" else np.asarray(w, float)
    return Mixture(means, weights)


def student_of(cfg: dict, teacher: Mixture, seed: int) -> Mixture:
    s = cfg["student"]
    n, d = int(s["n"]), teacher.dim
    rng = np.random.default_rng(seed)
    init = s.get("init", "samples")
    assign = np.arange(n) % teacher.n_components
    if init == "samples":
        means = np.asarray(teacher.sample(jax.random.key(seed), n))
    elif init == "perturbed":
        means = np.asarray(teacher.means)[assign] + float(s.get("noise", 0.5)) * rng.normal(size=(n, d))
    elif init == "normal":
        means = float(s.get("noise", 1.0)) * rng.normal(size=(n, d))
    else:
        raise ValueError(f"student.init must be one of samples, perturbed, normal; got {init!r}")
    w = s.get("weights", "uniform")
    if w == "uniform":
        weights = np.full(n, 1.0 / n)
    elif w == "split":
        tw = np.asarray(teacher.weights)
        weights = np.array([tw[a] / np.sum(assign == a) for a in assign])
    elif w == "dirichlet":
        weights = rng.dirichlet(np.ones(n))
    elif isinstance(w, list):
        weights = np.asarray(w, float)
    else:
        raise ValueError(f"student.weights must be uniform, split, dirichlet or a list; got {w!r}")
    return Mixture(means, weights)


def data_of(cfg: dict, teacher: Mixture, seed: int) -> np.ndarray:
    """The sample of a data-based run: ``n_samples`` points of the teacher, drawn with
    a key derived from the seed (independent of the student's draw)."""
    key = jax.random.fold_in(jax.random.key(seed), 0xDA7A)
    return np.asarray(teacher.sample(key, int(cfg["data"]["n_samples"])))


def backend_of(cfg: dict, teacher: Mixture):
    import overgmm as og

    b = dict(cfg.get("backend", {}))
    kind = b.pop("kind", "auto")
    known = {"rule", "nodes", "rank", "half_width", "defensive", "check_rule", "samples", "seed"}
    if set(b) - known:
        raise ValueError(f"unknown backend option(s) {sorted(set(b) - known)}; valid: kind, {', '.join(sorted(known))}")
    if kind == "auto":
        kind = "quadrature" if teacher.dim <= 5 else "monte-carlo"
    if kind == "monte-carlo":
        return og.MonteCarlo(samples=int(b.get("samples", 20_000)), fresh=False, seed=int(b.get("seed", 0)))
    b.pop("samples", None)
    b.pop("seed", None)
    return og.Quadrature(**b)


def check_config(cfg: dict) -> None:
    """Build everything one run needs (without running it): raises the error a bad
    option would raise inside a run."""
    teacher = teacher_of(cfg)
    student_of(cfg, teacher, 0)
    if "data" in cfg:
        n = cfg["data"].get("n_samples")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"data.n_samples must be a positive integer, got {n!r}")
        problem = Problem.from_data(np.zeros((2, teacher.dim)))
    else:
        problem = Problem.population(teacher, backend=backend_of(cfg, teacher))
    _algorithm(problem, cfg)


def _algorithm(problem: Problem, cfg: dict):
    spec = dict(cfg["algorithm"])
    spec["algorithm"] = spec.pop("name")
    return algorithm_from_spec(problem, spec)


def run_batch(configs: list[dict], group: str) -> list[dict]:
    """Run configs that differ only in their seed, in one compiled ``vmap`` call.

    Returns, per config: ``{"columns": {name: array (n_records, ...)}, "final":
    {"means", "weights"}, "status", "failed_at"}``.
    """
    cfg = configs[0]
    teacher = teacher_of(cfg)
    seeds = [int(c["seed"]) for c in configs]
    students = driver.stack([student_of(cfg, teacher, s) for s in seeds])
    keys = jnp.stack([jax.random.fold_in(jax.random.key(0), s) for s in seeds])
    if "data" in cfg:
        per_seed = [Problem.from_data(data_of(cfg, teacher, s)) for s in seeds]
        problem, problems = per_seed[0], driver.stack(per_seed)
    else:
        problems = None
        problem = Problem.population(teacher, backend=backend_of(cfg, teacher))
    steps, stride = int(cfg["steps"]), int(cfg.get("stride", cfg["steps"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = driver.run_batch(
            _algorithm(problem, cfg),
            students,
            steps,
            keys=keys,
            stride=stride,
            threshold=float(cfg.get("threshold", 1e-3)),
            problems=problems,
        )
    means = np.asarray(hist.final.student.means)
    weights = np.asarray(jnp.exp(hist.final.student.log_weights))
    out = []
    for b in range(len(seeds)):
        out.append(
            {
                "columns": {k: v[b] for k, v in hist.columns.items()},
                "final": {"means": means[b].tolist(), "weights": weights[b].tolist()},
                "status": int(hist.status[b]),
                "failed_at": int(hist.failed_at[b]),
            }
        )
    return out
