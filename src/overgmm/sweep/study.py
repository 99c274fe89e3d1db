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

The schema, its validation and the expansion live in :mod:`overgmm.config` (one schema
for studies and reproductions); a config file of ``overgmm/configs/`` that has these
sections is a study too (``overgmm sweep W6``). Runs that differ only in ``seed`` form a
group: they share shapes and are run together in one compiled ``vmap`` call (see
:mod:`overgmm.sweep.execute`).
"""

from __future__ import annotations

from overgmm.config import ConfigError as StudyError
from overgmm.config import check_study_runs as check_runs
from overgmm.config import expand, group_id, run_id
from overgmm.config import load_study as load
from overgmm.config import validate_study as validate

__all__ = ["StudyError", "check_runs", "expand", "group_id", "load", "run_id", "validate"]
