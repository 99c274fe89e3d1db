"""The one description of a run, shared by ``overgmm reproduce``, ``overgmm sweep`` and the
experiments: the blocks of a resolved config, their validation, and the builders that
turn them into a teacher, a student, a sample, a backend and an algorithm.

A resolved run config (what a study's ``[base]`` holds, and what each run of a study is)::

    steps = 440          # the budget: iterations
    stride = 44          # the records: one every `stride` iterations
    threshold = 1e-3     # weight above which a component counts as active (measures)
    [teacher]            # the true mixture (identity covariances)
    d = 5
    m = 3
    scale = 2.1213       # means ~ N(0, scale^2 I) with `seed` (or give `means`)
    weights = [0.2, 0.3, 0.5]   # or "uniform"
    seed = 1
    [student]            # the initialiser
    n = 20
    init = "samples"     # samples (of the teacher) | perturbed (teacher means + noise) | normal
    noise = 0.5
    weights = "uniform"  # uniform | split | dirichlet | a list
    [data]               # optional: a sample of the teacher, so the objective is the NLL
    n_samples = 1000
    [algorithm]          # name + the options of the function of that name
    name = "polyak"
    step_size = 1.0
    [backend]            # population expectations (objective KL)
    kind = "auto"        # quadrature | monte-carlo | auto (quadrature up to d = 5)
    nodes = 11           # options of overgmm.Quadrature; samples, seed, fresh for MonteCarlo
    [backend.by_dim."2"] # options that replace these in one dimension
    nodes = 81

One term per concept: ``steps`` (not ``n_steps``), ``step_size`` (not ``eta``), an
algorithm's ``name`` (not ``algorithm``); the old keys still load, with a
DeprecationWarning naming the new one (:func:`renamed`).

Config files are TOML; a ``[quick]`` table holds overrides (TOML dotted keys or tables),
deep-merged over the rest by :func:`deep_merge`; a table whose ``skip`` is true is left
out of the merged config (how a quick variant drops a method). The experiments' files
live in ``overgmm/configs/`` (:func:`config_path`).
"""

from __future__ import annotations

import copy
import tomllib
import warnings
from pathlib import Path
from typing import Any

import numpy as np

CONFIG_DIR = Path(__file__).parent / "configs"

RUN_KEYS = {
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
QUADRATURE_KEYS = {
    "rule",
    "nodes",
    "rank",
    "half_width",
    "defensive",
    "check_rule",
    "tails",
    "spacing",
    "defensive_share",
}
MONTE_CARLO_KEYS = {"samples", "seed", "fresh"}
BACKEND_KINDS = ("quadrature", "monte-carlo", "auto")
STUDENT_INITS = ("samples", "perturbed", "normal")
STUDENT_WEIGHTS = ("uniform", "split", "dirichlet")
ALGORITHMS = ("polyak", "gradient_em", "em", "gradient_descent", "adam", "nesterov")
# Keys of an algorithm table that belong to the run (budget, records, labels), not to the algorithm.
RUN_OF_ALGORITHM = ("name", "steps", "stride", "label", "skip")
RENAMES = {"n_steps": "steps", "eta": "step_size", "algorithm": "name"}


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file, the key or the line."""


# ---- files, merging, names ------------------------------------------------------------


def read_toml(path: str | Path) -> dict:
    """A TOML file as a dict; a syntax error names the line."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: malformed TOML: {err}") from None


def config_path(name: str) -> Path:
    """The config file of the experiment or study ``name`` (case-insensitive) in the
    package's ``configs/`` folder."""
    for p in sorted(CONFIG_DIR.glob("*.toml")):
        if p.stem.lower() == str(name).lower():
            return p
    names = ", ".join(p.stem for p in sorted(CONFIG_DIR.glob("*.toml")))
    raise ConfigError(f"no config {name!r} in {CONFIG_DIR}; choose one of {names}")


def deep_merge(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged in, tables into tables, other values replaced.
    (TOML's dotted keys, ``methods.em.steps = 20``, are nested tables when read; a
    quoted key such as ``"teacher.d"`` stays one key.)"""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def drop_skipped(cfg: Any) -> Any:
    """``cfg`` without the tables whose ``skip`` is true."""
    if not isinstance(cfg, dict):
        return cfg
    return {k: drop_skipped(v) for k, v in cfg.items() if not (isinstance(v, dict) and v.get("skip") is True)}


def renamed(table: dict, where: str) -> dict:
    """``table`` with deprecated keys renamed (``eta`` -> ``step_size``, ``n_steps`` ->
    ``steps``, an algorithm's ``algorithm`` -> ``name``), each with a DeprecationWarning."""
    out = {}
    for key, value in table.items():
        new = RENAMES.get(key)
        if new is not None and not (key == "algorithm" and isinstance(value, dict)):
            if new in table:
                raise ConfigError(f"{where}: both {key!r} (deprecated) and {new!r}; keep {new!r}")
            warnings.warn(f"{where}: key {key!r} is deprecated; use {new!r}", DeprecationWarning, stacklevel=3)
            key = new
        out[key] = value
    return out


# ---- validation -----------------------------------------------------------------------


def _is(value: Any, t: type) -> bool:
    if t is float:
        return isinstance(value, float | int) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t)


def check_keys(table: dict, allowed: dict, where: str) -> None:
    """Every key of ``table`` is one of ``allowed`` (a dict key -> type or tuple of types)
    and of that type; otherwise a :class:`ConfigError` naming the key, the valid keys or
    the expected type."""
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(sorted(allowed))}")
        want = allowed[key]
        types = want if isinstance(want, tuple) else (want,)
        if not any(_is(value, t) for t in types):
            names = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"{where}.{key}: expected {names}, got {type(value).__name__} {value!r}")


def positive_int(value: Any, where: str) -> int:
    if not _is(value, int) or value < 1:
        raise ConfigError(f"{where}: expected a positive integer, got {value!r}")
    return value


def check_run(cfg: dict, where: str) -> None:
    """The static checks of one resolved run config (keys, types, choices)."""
    check_keys(cfg, {**RUN_KEYS, "seed": int}, where)
    for key in ("steps", "teacher", "student", "algorithm"):
        if key not in cfg:
            raise ConfigError(f"{where} needs {key!r}")
    positive_int(cfg["steps"], f"{where}: steps")
    positive_int(cfg.get("stride", cfg["steps"]), f"{where}: stride")
    if cfg["steps"] % cfg.get("stride", cfg["steps"]):
        raise ConfigError(f"{where}: steps ({cfg['steps']}) must be a multiple of stride ({cfg['stride']})")
    check_keys(cfg["teacher"], TEACHER_KEYS, f"{where}: teacher")
    check_keys(cfg["student"], STUDENT_KEYS, f"{where}: student")
    for key in ("d", "m"):
        if key not in cfg["teacher"]:
            raise ConfigError(f"{where}: teacher needs {key!r}")
    if "n" not in cfg["student"]:
        raise ConfigError(f"{where}: student needs 'n'")
    if "data" in cfg:
        check_keys(cfg["data"], DATA_KEYS, f"{where}: data")
    if cfg["student"].get("init", "samples") not in STUDENT_INITS:
        raise ConfigError(f"{where}: student.init must be one of {STUDENT_INITS}, got {cfg['student']['init']!r}")
    w = cfg["student"].get("weights", "uniform")
    if isinstance(w, str) and w not in STUDENT_WEIGHTS:
        raise ConfigError(f"{where}: student.weights must be one of {STUDENT_WEIGHTS} or a list, got {w!r}")
    tw = cfg["teacher"].get("weights", "uniform")
    if isinstance(tw, str) and tw != "uniform":
        raise ConfigError(f"{where}: teacher.weights must be 'uniform' or a list, got {tw!r}")
    if "name" not in cfg["algorithm"]:
        raise ConfigError(f"{where}: algorithm needs 'name'")
    kind = cfg.get("backend", {}).get("kind", "auto")
    if kind not in BACKEND_KINDS:
        raise ConfigError(f"{where}: backend.kind must be one of {BACKEND_KINDS}, got {kind!r}")


# ---- builders -------------------------------------------------------------------------


def teacher(spec: dict):
    """The teacher :class:`~overgmm.Mixture` of a ``teacher`` table."""
    from overgmm.mixture import Mixture

    d, m = int(spec["d"]), int(spec["m"])
    if "means" in spec:
        means = np.asarray(spec["means"], float)
        if means.shape != (m, d):
            raise ValueError(f"teacher.means has shape {means.shape}, expected (m, d) = ({m}, {d})")
    else:
        rng = np.random.default_rng(int(spec.get("seed", 0)))
        means = rng.normal(size=(m, d)) * float(spec.get("scale", 1.0))
    w = spec.get("weights", "uniform")
    weights = np.full(m, 1.0 / m) if w == "uniform" else np.asarray(w, float)
    return Mixture(means, weights)


def student(spec: dict, teacher, seed: int):
    """The starting student of a ``student`` table, drawn with ``seed``."""
    import jax

    from overgmm.mixture import Mixture

    n, d = int(spec["n"]), teacher.dim
    rng = np.random.default_rng(seed)
    init = spec.get("init", "samples")
    assign = np.arange(n) % teacher.n_components
    if init == "samples":
        means = np.asarray(teacher.sample(jax.random.key(seed), n))
    elif init == "perturbed":
        means = np.asarray(teacher.means)[assign] + float(spec.get("noise", 0.5)) * rng.normal(size=(n, d))
    elif init == "normal":
        means = float(spec.get("noise", 1.0)) * rng.normal(size=(n, d))
    else:
        raise ValueError(f"student.init must be one of {', '.join(STUDENT_INITS)}; got {init!r}")
    w = spec.get("weights", "uniform")
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


def sample(spec: dict, teacher, seed: int) -> np.ndarray:
    """The data of a ``data`` table: ``n_samples`` points of the teacher, drawn with a key
    derived from ``seed`` (independent of the student's draw)."""
    import jax

    key = jax.random.fold_in(jax.random.key(seed), 0xDA7A)
    return np.asarray(teacher.sample(key, int(spec["n_samples"])))


def backend(spec: dict, dim: int | None = None):
    """The expectation backend of a ``backend`` table for a teacher in ``dim``
    dimensions: :class:`~overgmm.Quadrature` with its options, or
    :class:`~overgmm.MonteCarlo` (``samples``, ``seed``, ``fresh``: a new sample each
    step, default false: one fixed sample)."""
    from overgmm.expectations import MonteCarlo, Quadrature

    b = dict(spec)
    b.update(b.pop("by_dim", {}).get(str(dim), {}))
    kind = b.pop("kind", "auto")
    unknown = set(b) - QUADRATURE_KEYS - MONTE_CARLO_KEYS
    if unknown:
        valid = ", ".join(sorted({"kind", "by_dim"} | QUADRATURE_KEYS | MONTE_CARLO_KEYS))
        raise ValueError(f"unknown backend option(s) {sorted(unknown)}; valid: {valid}")
    if kind == "auto":
        if dim is None:
            raise ValueError("backend.kind 'auto' needs the teacher's dimension")
        kind = "quadrature" if dim <= 5 else "monte-carlo"
    if kind == "monte-carlo":
        return MonteCarlo(
            samples=int(b.get("samples", 20_000)), fresh=bool(b.get("fresh", False)), seed=int(b.get("seed", 0))
        )
    if kind != "quadrature":
        raise ValueError(f"backend.kind must be one of {BACKEND_KINDS}, got {kind!r}")
    return Quadrature(**{k: v for k, v in b.items() if k in QUADRATURE_KEYS})


def algorithm(problem, spec: dict):
    """The algorithm of an ``algorithm`` table bound to ``problem``: ``{"name": NAME,
    ...options}``.

    NAME is one of ``polyak``, ``gradient_em``, ``em``, ``gradient_descent`` (options as
    the functions of the same name take them), ``adam`` (``learning_rate``) or
    ``nesterov`` (``learning_rate``, ``momentum``); ``steps``, ``stride``, ``label`` and
    ``skip`` belong to the run and are ignored here.
    """
    from overgmm import algorithms

    spec = renamed(spec, "algorithm")
    opts = {k: v for k, v in spec.items() if k not in RUN_OF_ALGORITHM}
    name = spec.get("name")
    if name in ("polyak", "gradient_em", "em", "gradient_descent"):
        return getattr(algorithms, name)(problem, **opts)
    if name in ("adam", "nesterov"):
        import optax

        allowed = {"learning_rate"} if name == "adam" else {"learning_rate", "momentum"}
        if set(opts) - allowed:
            raise TypeError(f"{name} got unknown option(s) {sorted(set(opts) - allowed)}; valid: {sorted(allowed)}")
        if name == "adam":
            return algorithms.optax_method(problem, optax.adam(float(opts.get("learning_rate", 0.01))))
        lr, mom = float(opts.get("learning_rate", 0.1)), float(opts.get("momentum", 0.9))
        return algorithms.optax_method(problem, optax.sgd(lr, momentum=mom, nesterov=True))
    raise ValueError(f"unknown algorithm {name!r} in {spec}; choose one of {ALGORITHMS}")


def problem(cfg: dict, teacher, seed: int = 0):
    """The problem of a resolved run: the NLL of a sample when ``cfg`` has ``data``,
    otherwise the population KL with the config's backend."""
    from overgmm.problem import Problem

    if "data" in cfg:
        return Problem.from_data(sample(cfg["data"], teacher, seed))
    return Problem.population(teacher, backend=backend(cfg.get("backend", {}), teacher.dim))


def check(cfg: dict) -> None:
    """Build everything one run needs (without running it): raises the error a bad
    option would raise inside a run."""
    from overgmm.problem import Problem

    t = teacher(cfg["teacher"])
    student(cfg["student"], t, 0)
    if "data" in cfg:
        positive_int(cfg["data"].get("n_samples"), "data.n_samples")
        p = Problem.from_data(np.zeros((2, t.dim)))
    else:
        p = Problem.population(t, backend=backend(cfg.get("backend", {}), t.dim))
    algorithm(p, cfg["algorithm"])


def run_seeds(cfg: dict, seeds: list[int], *, record: tuple[str, ...] = ()):
    """Run the resolved config ``cfg`` once per seed (the seed draws the student and the
    data), all in one compiled ``vmap`` call; the driver's :class:`~overgmm.History`
    with the seeds on its batch axis (``record``: state fields kept at every record, as
    :func:`~overgmm.run_batch` takes them). A data-based run passes each seed's sample as
    its own problem (``problems=``). This is the one code path of every multi-trial run:
    ``overgmm sweep`` and the reproductions X4, Z1 and W6."""
    import jax
    import jax.numpy as jnp

    from overgmm import driver

    t = teacher(cfg["teacher"])
    students = driver.stack([student(cfg["student"], t, s) for s in seeds])
    keys = jnp.stack([jax.random.fold_in(jax.random.key(0), s) for s in seeds])
    if "data" in cfg:
        per_seed = [problem(cfg, t, s) for s in seeds]
        first, problems = per_seed[0], driver.stack(per_seed)
    else:
        first, problems = problem(cfg, t), None
    steps = int(cfg["steps"])
    return driver.run_batch(
        algorithm(first, cfg["algorithm"]),
        students,
        steps,
        keys=keys,
        stride=int(cfg.get("stride", steps)),
        threshold=float(cfg.get("threshold", 1e-3)),
        record=record,
        problems=problems,
    )
