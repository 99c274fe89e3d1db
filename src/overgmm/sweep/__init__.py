"""Studies at scale: a TOML study file (a base experiment and axes to sweep), expanded
into runs named by content hash, batched by seed into compiled ``vmap`` calls, run in
this process or on a Dask cluster, stored one Parquet file per run, resumable.

    from overgmm import sweep
    sweep.sweep("W6", "results/w6")      # configs/W6.toml (or a path); runs what is missing
    sweep.status("results/w6")                          # done / failed / missing
    sweep.load_finals("results/w6")                     # one row per run (pandas)

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

    [base.algorithm]            # any algorithm of overgmm.config.algorithm
    name = "polyak"
    step_size = 1.0
    n_short = 10

    [base.backend]              # population expectations
    kind = "quadrature"         # quadrature | monte-carlo (fixed sample) | auto (quadrature up to d = 5)
    nodes = 11                  # further keys: options of overgmm.Quadrature / samples, seed, fresh of MonteCarlo

    [base.backend.by_dim.2]     # optional: options that replace those above in one dimension
    nodes = 81

    [settings]                  # optional: settings of the study's analysis (success thresholds)
    radius = 0.5

    [axes]                      # the product of these lists; dotted keys address [base]
    "teacher.d" = [2, 5, 10]
    seed = { start = 0, stop = 20 }   # or a list; seeds drive the student (and data) draws

The run schema lives in :mod:`overgmm.config`, the study's validation and expansion in
:mod:`overgmm.studies` (one schema
for studies and reproductions: ``studies.load_study``, ``studies.expand``, ``config.ConfigError``,
exported here as ``load``, ``expand`` and ``StudyError``); a config file of ``overgmm/configs/`` that has these
sections is a study too (``overgmm sweep W6``). Runs that differ only in ``seed`` form a
group: they share shapes and are run together in one compiled ``vmap`` call (see
:mod:`overgmm.sweep.execute`).
"""

from overgmm.config import ConfigError as StudyError
from overgmm.studies import expand
from overgmm.studies import load_study as load
from overgmm.sweep.execute import ONE_THREAD_ENV, plan, run_chunk, status, sweep
from overgmm.sweep.store import load_failures, load_finals, load_history

__all__ = [
    "ONE_THREAD_ENV",
    "StudyError",
    "expand",
    "load",
    "load_failures",
    "load_finals",
    "load_history",
    "plan",
    "run_chunk",
    "status",
    "sweep",
]
