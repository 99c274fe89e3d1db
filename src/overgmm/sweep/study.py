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
    except (OSError, UnicodeDecodeError) as err:
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


FIGURE_AXES = {"x4": "data.n_samples", "z1": "student.n", "w6": "teacher.d"}


def _table(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise StudyError(f"{where}: {key!r} must be a table ([{key}]), got {type(value).__name__} {value!r}")
    return value


def _positive_int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StudyError(f"{where}: expected a positive integer, got {value!r}")
    return value


def validate(raw: dict, source: str = "study") -> dict:
    """Check a parsed study (see the module docstring) and return it with defaults."""
    unknown = set(raw) - SECTIONS
    if unknown:
        raise StudyError(f"{source}: unknown section(s) {sorted(unknown)}; valid sections: {sorted(SECTIONS)}")
    if "base" not in raw:
        raise StudyError(f"{source}: missing section [base]")
    study = dict(_table(raw, "study", source))
    _check_keys(study, STUDY_KEYS, f"{source}: [study]")
    study.setdefault("name", Path(source).stem)
    study.setdefault("figure", "loss")
    if study["figure"] not in FIGURES:
        raise StudyError(f"{source}: [study].figure must be one of {FIGURES}, got {study['figure']!r}")
    base = copy.deepcopy(_table(raw, "base", source))
    _check_keys(base, BASE_KEYS, f"{source}: [base]")
    for key in ("steps", "teacher", "student", "algorithm"):
        if key not in base:
            raise StudyError(f"{source}: [base] needs {key!r}")
    base.setdefault("stride", base["steps"])
    base.setdefault("backend", {"kind": "auto"})
    _check_keys(base["teacher"], TEACHER_KEYS, f"{source}: [base.teacher]")
    _check_keys(base["student"], STUDENT_KEYS, f"{source}: [base.student]")
    for key in ("d", "m"):
        if key not in base["teacher"]:
            raise StudyError(f"{source}: [base.teacher] needs {key!r}")
    if "n" not in base["student"]:
        raise StudyError(f"{source}: [base.student] needs 'n'")
    if "data" in base:
        _check_keys(base["data"], DATA_KEYS, f"{source}: [base.data]")
    if "name" not in base["algorithm"]:
        raise StudyError(f"{source}: [base.algorithm] needs 'name'")
    kind = base["backend"].get("kind", "auto")
    if kind not in BACKEND_KINDS:
        raise StudyError(f"{source}: [base.backend].kind must be one of {BACKEND_KINDS}, got {kind!r}")
    axes = {}
    for key, values in _table(raw, "axes", source).items():
        where = f"{source}: [axes].{key}"
        if key == "seed":
            if isinstance(values, dict):
                _check_keys(values, {"start": int, "stop": int}, where)
                if "stop" not in values:
                    raise StudyError(f"{where}: a seed range needs 'stop' (seeds start, ..., stop - 1)")
                values = list(range(values.get("start", 0), values["stop"]))
            if isinstance(values, list) and not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
            ):
                raise StudyError(f"{where}: seeds must be non-negative integers, got {values!r}")
        else:
            if isinstance(values, dict):
                raise StudyError(
                    f'{where}: expected a list, got a table; quote dotted axis names: "{key}.{next(iter(values), "")}"'
                    " = [...]"
                )
            _resolve_path(base, key, f"{source}: [axes]")
        if not isinstance(values, list) or not values:
            raise StudyError(f"{where}: expected a non-empty list, got {values!r}")
        canon = [json.dumps(v, sort_keys=True) for v in values]
        if len(set(canon)) != len(canon):
            raise StudyError(f"{where}: repeated values {values!r}")
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values) and any(
            isinstance(v, float) for v in values
        ):
            values = [float(v) for v in values]  # 1 and 0.5 on one axis: all floats (one Parquet type)
        axes[key] = values
    axes.setdefault("seed", [0])
    need = FIGURE_AXES.get(study["figure"])
    if need and need not in axes:
        raise StudyError(f"{source}: figure {study['figure']!r} needs the axis {need!r} in [axes]")
    study_obj = {"study": study, "base": base, "axes": axes}
    for run in expand(study_obj):
        cfg, where = run["config"], f"{source}: run {run['axes']}"
        _positive_int(cfg["steps"], f"{where}: steps")
        _positive_int(cfg["stride"], f"{where}: stride")
        if cfg["steps"] % cfg["stride"]:
            raise StudyError(f"{where}: steps ({cfg['steps']}) must be a multiple of stride ({cfg['stride']})")
        _check_keys(cfg["teacher"], TEACHER_KEYS, f"{where}: teacher")
        _check_keys(cfg["student"], STUDENT_KEYS, f"{where}: student")
        if cfg["student"].get("init", "samples") not in STUDENT_INITS:
            raise StudyError(f"{where}: student.init must be one of {STUDENT_INITS}, got {cfg['student']['init']!r}")
        w = cfg["student"].get("weights", "uniform")
        if isinstance(w, str) and w not in STUDENT_WEIGHTS:
            raise StudyError(f"{where}: student.weights must be one of {STUDENT_WEIGHTS} or a list, got {w!r}")
        tw = cfg["teacher"].get("weights", "uniform")
        if isinstance(tw, str) and tw != "uniform":
            raise StudyError(f"{where}: teacher.weights must be 'uniform' or a list, got {tw!r}")
    return study_obj


def check_runs(study: dict) -> None:
    """Build the teacher, a student, the backend and the algorithm of one run per group,
    so that a bad option (an unknown algorithm or option, a backend key, a shape) is a
    :class:`StudyError` before anything runs, not a failure of every run."""
    from overgmm.sweep.build import check_config

    seen = set()
    for run in expand(study):
        if run["group"] in seen:
            continue
        seen.add(run["group"])
        try:
            check_config(run["config"])
        except (ValueError, TypeError, KeyError) as err:
            raise StudyError(f"run {run['axes']}: {type(err).__name__}: {err}") from None


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
