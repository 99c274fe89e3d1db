"""Study files: a base run (the schema of :mod:`overgmm.config`) plus axes to sweep,
expanded into resolved run configs, each named by a content hash (``run_id``) and grouped
by everything but the seed (``group_id``: runs of a group share shapes and run together in
one compiled ``vmap`` call). The file format is documented in :mod:`overgmm.sweep`.

Used by the sweeps and by the reproductions whose configs are studies (X4, Z1, W6).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import warnings
from pathlib import Path
from typing import Any

from overgmm.config import (
    DATA_KEYS,
    RENAMES,
    RUN_KEYS,
    STUDENT_KEYS,
    TEACHER_KEYS,
    ConfigError,
    _is,
    check,
    check_keys,
    check_run,
    config_path,
    read_toml,
    renamed,
)

STUDY_SECTIONS = {"study", "base", "axes", "settings", "experiment", "quick", "reproduce"}
STUDY_KEYS = {"name": str, "figure": str, "description": str}
FIGURES = ("x4", "z1", "w6", "loss")
FIGURE_AXES = {"x4": "data.n_samples", "z1": "student.n", "w6": "teacher.d"}
SETTING_TYPES = (int, float, str, bool, list)


def load_study(path: str | Path) -> dict:
    """Read and validate a study file (a path, or the name of a config in ``configs/``
    that holds a study). Raises :class:`ConfigError` naming the line of a TOML syntax
    error, an unknown key (with the valid keys) or a value of a wrong type."""
    path = study_path(path)
    return validate_study(read_toml(path), str(path))


def study_path(path: str | Path) -> Path:
    """``path`` itself, or for a bare name such as ``W6`` that is not a file, the config
    of that name in ``configs/``."""
    path = Path(path)
    if not path.exists() and path.suffix != ".toml" and len(path.parts) == 1:
        return config_path(str(path))
    return path


def _table(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key!r} must be a table ([{key}]), got {type(value).__name__} {value!r}")
    return value


def _axis_values(key: str, values: Any, base: dict, where: str) -> list:
    if key == "seed":
        if isinstance(values, dict):
            check_keys(values, {"start": int, "stop": int}, where)
            if "stop" not in values:
                raise ConfigError(f"{where}: a seed range needs 'stop' (seeds start, ..., stop - 1)")
            values = list(range(values.get("start", 0), values["stop"]))
        if isinstance(values, list) and not all(_is(v, int) and v >= 0 for v in values):
            raise ConfigError(f"{where}: seeds must be non-negative integers, got {values!r}")
    else:
        if isinstance(values, dict):
            first = next(iter(values), "")
            raise ConfigError(
                f'{where}: expected a list, got a table; quote dotted axis names: "{key}.{first}" = [...]'
            )
        _resolve_path(base, key, where.rsplit(".", 1)[0])
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: expected a non-empty list, got {values!r}")
    canon = [repr(sorted(v.items()) if isinstance(v, dict) else v) for v in values]
    if len(set(canon)) != len(canon):
        raise ConfigError(f"{where}: repeated values {values!r}")
    if all(_is(v, float) for v in values) and any(isinstance(v, float) for v in values):
        values = [float(v) for v in values]  # 1 and 0.5 on one axis: all floats (one Parquet type)
    return values


def validate_study(raw: dict, source: str = "study") -> dict:
    """Check a parsed study and return it with defaults: ``{"study", "base", "axes",
    "settings"}`` (the ``[experiment]`` and ``[quick]`` tables of a config file that is
    also a reproduction are not part of the study)."""
    unknown = set(raw) - STUDY_SECTIONS
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; valid sections: {sorted(STUDY_SECTIONS)}")
    if "base" not in raw:
        raise ConfigError(f"{source}: missing section [base]")
    study = dict(_table(raw, "study", source))
    check_keys(study, STUDY_KEYS, f"{source}: [study]")
    study.setdefault("name", Path(source).stem)
    study.setdefault("figure", "loss")
    if study["figure"] not in FIGURES:
        raise ConfigError(f"{source}: [study].figure must be one of {FIGURES}, got {study['figure']!r}")
    settings = dict(_table(raw, "settings", source))
    check_keys(settings, dict.fromkeys(settings, SETTING_TYPES), f"{source}: [settings]")
    base = renamed(copy.deepcopy(_table(raw, "base", source)), f"{source}: [base]")
    check_keys(base, RUN_KEYS, f"{source}: [base]")
    for key in ("steps", "teacher", "student", "algorithm"):
        if key not in base:
            raise ConfigError(f"{source}: [base] needs {key!r}")
    if isinstance(base["algorithm"], dict):
        base["algorithm"] = renamed(base["algorithm"], f"{source}: [base.algorithm]")
    base.setdefault("stride", base["steps"])
    base.setdefault("backend", {"kind": "auto"})
    for key, allowed in (("teacher", TEACHER_KEYS), ("student", STUDENT_KEYS), ("data", DATA_KEYS)):
        if key in base:
            check_keys(base[key], allowed, f"{source}: [base.{key}]")
    axes = {}
    for key, values in _table(raw, "axes", source).items():
        if key.startswith("algorithm."):
            leaf = key.split(".", 1)[1]
            if leaf in RENAMES:
                new = f"algorithm.{RENAMES[leaf]}"
                warnings.warn(f"{source}: axis {key!r} is deprecated; use {new!r}", DeprecationWarning, stacklevel=2)
                key = new
        axes[key] = _axis_values(key, values, base, f"{source}: [axes].{key}")
    axes.setdefault("seed", [0])
    need = FIGURE_AXES.get(study["figure"])
    if need and need not in axes:
        raise ConfigError(f"{source}: figure {study['figure']!r} needs the axis {need!r} in [axes]")
    out = {"study": study, "base": base, "axes": axes, "settings": settings}
    for run in expand(out):
        check_run(run["config"], f"{source}: run {run['axes']}")
    return out


def check_study_runs(study: dict) -> None:
    """Build the teacher, a student, the backend and the algorithm of one run per group,
    so that a bad option (an unknown algorithm or option, a backend key, a shape) is a
    :class:`ConfigError` before anything runs, not a failure of every run."""
    seen = set()
    for run in expand(study):
        if run["group"] in seen:
            continue
        seen.add(run["group"])
        try:
            check(run["config"])
        except (ValueError, TypeError, KeyError) as err:
            raise ConfigError(f"run {run['axes']}: {type(err).__name__}: {err}") from None


def _resolve_path(base: dict, dotted: str, where: str) -> tuple[dict, str]:
    parts = dotted.split(".")
    node = base
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            raise ConfigError(f"{where}: axis {dotted!r} does not name a key of [base] (no table {p!r})")
        node = node[p]
    keys: dict[str, dict] = {"": RUN_KEYS, "teacher": TEACHER_KEYS, "student": STUDENT_KEYS, "data": DATA_KEYS}
    allowed = keys.get(".".join(parts[:-1]))
    if allowed is not None and parts[-1] not in allowed:
        raise ConfigError(f"{where}: axis {dotted!r}: unknown key; valid keys: {', '.join(sorted(allowed))}")
    return node, parts[-1]


def expand(study: dict) -> list[dict]:
    """All resolved run configs of a study (the product of its axes), each with its
    ``seed``, its ``axes`` values, its content hash ``run_id`` and its ``group`` (the
    hash without the seed: runs that share one compiled batch)."""
    names = list(study["axes"])
    runs = []
    for combo in itertools.product(*(study["axes"][k] for k in names)):
        cfg = copy.deepcopy(study["base"])
        values = dict(zip(names, combo, strict=True))
        for key, value in values.items():
            if key != "seed":
                node, leaf = _resolve_path(cfg, key, "[axes]")
                node[leaf] = value
        cfg["seed"] = int(values["seed"])
        runs.append({"config": cfg, "axes": values, "run_id": run_id(cfg), "group": group_id(cfg)})
    return runs


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def run_id(cfg: dict) -> str:
    """Content hash of a resolved run config (first 16 hex digits of SHA-256)."""
    return hashlib.sha256(_canonical(cfg).encode()).hexdigest()[:16]


def group_id(cfg: dict) -> str:
    """Hash of the config without its seed: runs that can share one compiled batch."""
    return run_id({k: v for k, v in cfg.items() if k != "seed"})
