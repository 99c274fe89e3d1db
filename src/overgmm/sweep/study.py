"""Study files (TOML): a base experiment plus axes to sweep, expanded into resolved run
configs, each named by a content hash.

A study file::

    [study]
    name = "W6"                 # free text
    figure = "w6"               # what `overgmm plot` draws: x4 | z1 | w6 | loss

    [base]
    steps = 440                 # iterations per run
    stride = 440                # record every `stride` iterations

    [base.teacher]              # the true mixture (identity covariances)
    d = 5
    m = 3
    scale = 2.1213              # means ~ N(0, scale^2 I) with `seed` (or give `means`)
    weights = [0.2, 0.3, 0.5]   # or "uniform"
    seed = 1

    [base.student]
    n = 20
    init = "samples"            # samples (of the teacher) | perturbed (teacher means + noise) | normal
    noise = 0.5                 # perturbed: N(0, noise^2 I) around the teacher means; normal: scale
    weights = "uniform"         # uniform | split (each cluster's mass = its teacher weight) | dirichlet

    [base.data]                 # optional: sample-based (NLL) instead of the population KL
    n_samples = 1000

    [base.algorithm]            # any algorithm of overgmm.experiments.base.algorithm_from_spec
    name = "polyak"
    step_size = 1.0
    n_short = 10

    [base.backend]              # population expectations
    kind = "quadrature"         # quadrature | monte-carlo (fixed sample) | auto (quadrature up to d = 5)
    nodes = 11                  # further keys: options of overgmm.Quadrature / samples of MonteCarlo

    [axes]                      # the product of these lists; dotted keys address [base]
    "teacher.d" = [2, 5, 10]
    seed = { start = 0, stop = 20 }   # or a list; seeds drive the student (and data) draws

Runs that differ only in ``seed`` form a group: they share shapes and are run
together in one compiled ``vmap`` call (see :mod:`overgmm.sweep.execute`).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import tomllib
from pathlib import Path
from typing import Any

SECTIONS = {"study", "base", "axes"}
STUDY_KEYS = {"name": str, "figure": str, "description": str}
FIGURES = ("x4", "z1", "w6", "loss")
BASE_KEYS = {
    "steps": int,
    "stride": int,
    "threshold": float,
    "teacher": dict,
    "student": dict,
    "data": dict,
    "algorithm": dict,
    "backend": dict,
}
TEACHER_KEYS = {"d": int, "m": int, "scale": float, "weights": (list, str), "seed": int, "means": list}
STUDENT_KEYS = {"n": int, "init": str, "noise": float, "weights": (list, str)}
DATA_KEYS = {"n_samples": int}
BACKEND_KINDS = ("quadrature", "monte-carlo", "auto")
STUDENT_INITS = ("samples", "perturbed", "normal")
STUDENT_WEIGHTS = ("uniform", "split", "dirichlet")


class StudyError(ValueError):
    """A study file that cannot be used; the message names the file, key or line."""


def load(path: str | Path) -> dict:
    """Read and validate a study file. Raises :class:`StudyError` naming the line of a
    TOML syntax error, an unknown key (with the valid keys) or a value of a wrong type."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise StudyError(f"cannot read study file {path}: {err}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise StudyError(f"{path}: malformed TOML: {err}") from None
    return validate(raw, str(path))


def _check_keys(table: dict, allowed: dict, where: str) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise StudyError(f"{where}: unknown key {key!r}; valid keys: {', '.join(sorted(allowed))}")
        want = allowed[key]
        types = want if isinstance(want, tuple) else (want,)
        ok = any(
            (isinstance(value, float | int) and not isinstance(value, bool))
            if t is float
            else (isinstance(value, int) and not isinstance(value, bool))
            if t is int
            else isinstance(value, t)
            for t in types
        )
        if not ok:
            names = " or ".join(t.__name__ for t in types)
            raise StudyError(f"{where}.{key}: expected {names}, got {type(value).__name__} {value!r}")


def validate(raw: dict, source: str = "study") -> dict:
    """Check a parsed study (see the module docstring) and return it with defaults."""
    unknown = set(raw) - SECTIONS
    if unknown:
        raise StudyError(f"{source}: unknown section(s) {sorted(unknown)}; valid sections: {sorted(SECTIONS)}")
    if "base" not in raw:
        raise StudyError(f"{source}: missing section [base]")
    study = dict(raw.get("study", {}))
    _check_keys(study, STUDY_KEYS, f"{source}: [study]")
    study.setdefault("name", Path(source).stem)
    study.setdefault("figure", "loss")
    if study["figure"] not in FIGURES:
        raise StudyError(f"{source}: [study].figure must be one of {FIGURES}, got {study['figure']!r}")
    base = copy.deepcopy(raw["base"])
    _check_keys(base, BASE_KEYS, f"{source}: [base]")
    for key in ("steps", "teacher", "student", "algorithm"):
        if key not in base:
            raise StudyError(f"{source}: [base] needs {key!r}")
    base.setdefault("stride", base["steps"])
    base.setdefault("backend", {"kind": "auto"})
    _check_keys(base["teacher"], TEACHER_KEYS, f"{source}: [base.teacher]")
    _check_keys(base["student"], STUDENT_KEYS, f"{source}: [base.student]")
    if "data" in base:
        _check_keys(base["data"], DATA_KEYS, f"{source}: [base.data]")
    if "name" not in base["algorithm"]:
        raise StudyError(f"{source}: [base.algorithm] needs 'name'")
    kind = base["backend"].get("kind", "auto")
    if kind not in BACKEND_KINDS:
        raise StudyError(f"{source}: [base.backend].kind must be one of {BACKEND_KINDS}, got {kind!r}")
    axes = {}
    for key, values in raw.get("axes", {}).items():
        if key == "seed":
            if isinstance(values, dict):
                _check_keys(values, {"start": int, "stop": int}, f"{source}: [axes].seed")
                values = list(range(values.get("start", 0), values["stop"]))
        else:
            _resolve_path(base, key, f"{source}: [axes]")
        if not isinstance(values, list) or not values:
            raise StudyError(f"{source}: [axes].{key}: expected a non-empty list, got {values!r}")
        axes[key] = values
    axes.setdefault("seed", [0])
    return {"study": study, "base": base, "axes": axes}


def _resolve_path(base: dict, dotted: str, where: str) -> tuple[dict, str]:
    parts = dotted.split(".")
    node = base
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            raise StudyError(f"{where}: axis {dotted!r} does not name a key of [base] (no table {p!r})")
        node = node[p]
    allowed = {"": BASE_KEYS, "teacher": TEACHER_KEYS, "student": STUDENT_KEYS, "data": DATA_KEYS}.get(
        ".".join(parts[:-1])
    )
    if allowed is not None and parts[-1] not in allowed:
        raise StudyError(f"{where}: axis {dotted!r}: unknown key; valid keys: {', '.join(sorted(allowed))}")
    return node, parts[-1]


def expand(study: dict) -> list[dict]:
    """All resolved run configs of a study (the product of its axes), each with its
    ``seed``, its ``axes`` values and its content hash ``run_id``."""
    names = list(study["axes"])
    runs = []
    for combo in itertools.product(*(study["axes"][k] for k in names)):
        cfg = copy.deepcopy(study["base"])
        values = dict(zip(names, combo, strict=True))
        for key, value in values.items():
            if key == "seed":
                continue
            node, leaf = _resolve_path(cfg, key, "[axes]")
            node[leaf] = value
        cfg["seed"] = int(values["seed"])
        run = {"config": cfg, "axes": values}
        run["run_id"] = run_id(cfg)
        run["group"] = group_id(cfg)
        runs.append(run)
    return runs


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def run_id(cfg: dict) -> str:
    """Content hash of a resolved run config (first 16 hex digits of SHA-256)."""
    return hashlib.sha256(_canonical(cfg).encode()).hexdigest()[:16]


def group_id(cfg: dict) -> str:
    """Hash of the config without its seed: runs that can share one compiled batch."""
    return run_id({k: v for k, v in cfg.items() if k != "seed"})
