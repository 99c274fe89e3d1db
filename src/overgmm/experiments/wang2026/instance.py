"""The common instance of W1-W6 (teacher, students, problem) and the helpers that run methods on it."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

import overgmm as og
from overgmm import config
from overgmm.experiments.base import TableSink, history_frame, population_backend, progress

PAPER = "Wang, Fazel, Charisopoulos 2026"
QUARTIC_FACTOR = 0.75**4  # a Polyak step on c s^4 maps s to 3s/4

# ---- the instance ---------------------------------------------------------------------


def teacher_of(cfg: dict):
    """The instance's teacher: ``m`` means N(0, teacher_scale^2 I_d) drawn with ``teacher_seed``."""
    spec = {"d": cfg["d"], "m": cfg["m"], "scale": cfg["teacher_scale"], "seed": cfg["teacher_seed"]}
    return config.teacher({**spec, "weights": cfg["teacher_weights"]})


def student_of(cfg: dict, teacher, *, mismatch: float = 0.0, seed: int | None = None):
    """The student of the common instance (``student.init = "perturbed"`` of the schema).
    ``mismatch`` in [0, 1] interpolates the weights from the split teacher weights
    (Delta_pi = 0) to uniform weights (the largest mismatch of this assignment)."""
    n, m = cfg["n"], cfg["m"]
    spec = {"n": n, "init": "perturbed", "noise": cfg["init_noise"]}
    means = config.student(spec, teacher, cfg["seed"] if seed is None else seed).means
    assign = np.arange(n) % m
    tw = np.asarray(teacher.weights)
    split = np.array([tw[a] / np.sum(assign == a) for a in assign])
    w = (1 - mismatch) * split + mismatch * np.full(n, 1.0 / n)
    return og.Mixture(means, w / w.sum())


def problem_of(cfg: dict, teacher, quadrature_key: str = "quadrature"):
    return og.Problem.population(teacher, backend=population_backend({**cfg, "quadrature": cfg[quadrature_key]}))


def run_method(problem, spec: dict, student, seed: int, record=(), **labels) -> tuple[pd.DataFrame, Any]:
    import jax

    alg = config.algorithm(problem, spec)
    stride = int(spec.get("stride", 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hist = og.run(alg, student, int(spec["steps"]), key=jax.random.key(seed), stride=stride, record=record)
    df = history_frame(hist, **labels)
    df["status"] = int(np.atleast_1d(hist.status)[0])
    df["warning"] = "; ".join(str(w.message) for w in caught)[:200]
    return df, hist


def final_check(cfg, teacher, hist, method: str, **labels) -> dict:
    """The final state's loss under the run's rule and under the finer check rule."""
    run_problem = problem_of(cfg, teacher)
    check = problem_of(cfg, teacher, "check_quadrature") if cfg["backend"] == "quadrature" else run_problem
    student = hist.final.student
    return {
        "method": method,
        **labels,
        "loss_run_rule": float(run_problem.loss(student)),
        "loss_check_rule": float(check.loss(student)),
        "backend": hist.backend,
    }


def run_methods(cfg: dict, sink: TableSink, teacher, student, label: str, *, check: bool = False) -> None:
    """Every method of ``cfg["methods"]`` from the same start, into the table ``history``
    (and, with ``check``, each final state under the finer rule into ``final_check``)."""
    problem = problem_of(cfg, teacher)
    checks = []
    for name, spec in progress(cfg["methods"].items(), len(cfg["methods"]), label):
        df, hist = run_method(problem, spec, student, cfg["seed"], method=name)
        sink.write("history", df, append=True)
        if check:
            checks.append(final_check(cfg, teacher, hist, name))
            sink.write("final_check", checks)


def run_trials(problem, spec: dict, students: list, seed: int, labels: dict[str, list]) -> pd.DataFrame:
    """Trials that differ only in their start, in one compiled vmap call; ``labels``
    gives per-trial label columns."""
    import jax

    alg = config.algorithm(problem, spec)
    keys = jax.random.split(jax.random.key(seed), len(students))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        hist = og.run_batch(alg, og.stack(students), int(spec["steps"]), keys=keys, stride=int(spec.get("stride", 1)))
    df = pd.DataFrame(hist.to_rows())
    for name, values in labels.items():
        df[name] = np.asarray(values)[df["trial"].to_numpy()]
    status = np.atleast_1d(hist.status)
    df["status"] = status[df["trial"].to_numpy()]
    return df


def sample_start(cfg: dict, teacher, seed: int):
    """n students at samples of the teacher (seeded), uniform weights."""
    import jax

    X = teacher.sample(jax.random.key(seed), cfg["n"])
    return og.Mixture(np.asarray(X))
