"""overgmm: over-parameterized Gaussian mixtures learned with gradient methods.

Importing overgmm turns on JAX's float64 mode (``jax_enable_x64``): theory mode
computes everything in float64. It also turns on JAX's persistent compilation cache in
``~/.cache/overgmm/jax`` (``COMPILATION_CACHE``; ``OVERGMM_CACHE=0`` turns it off; see
:mod:`overgmm._compilation_cache`).

The public API lives here:

* objects: :class:`Mixture` (identity, spherical, diag or full covariances), :class:`Problem`;
* expectation backends: :class:`Quadrature`, :class:`MonteCarlo`, :func:`expectation`, :class:`Estimate`;
* objectives: :func:`kl`, :func:`nll`, :func:`score_matching`, :func:`denoising_score_matching`;
* algorithms: :func:`gradient_em`, :func:`em`, :func:`polyak`, :func:`gradient_descent`, :func:`optax_method`;
* E-step statistics: :func:`statistics.data_statistics` (:class:`Stats`);
* starting students and fewer components: :mod:`overgmm.init` (``init.from_data``),
  :mod:`overgmm.reduce` (``prune``, ``merge_round``);
* the driver: :func:`run`, :func:`run_batch` (fixed T), :func:`solve`, :func:`solve_batch`
  (stopping rule), :func:`stack`, :class:`History`, :class:`Solution`;
* data in chunks: :mod:`overgmm.chunks` (NumPy/memmap, Parquet, Dask sources; ``chunks.read``)
  and :mod:`overgmm.streaming` (exact EM, one pass over the chunks per step:
  ``streaming.solve``); where they run: :mod:`overgmm.cluster` (``cluster.connect``);
* the scikit-learn estimator :class:`OverparamGMM` (imported on first use: it imports scikit-learn).
"""

import jax

jax.config.update("jax_enable_x64", True)

from overgmm import _compilation_cache  # noqa: E402

COMPILATION_CACHE = _compilation_cache.enable()

from overgmm import chunks, cluster, init, reduce, streaming  # noqa: E402
from overgmm.algorithms import (  # noqa: E402
    Algorithm,
    Method,
    State,
    em,
    gradient_descent,
    gradient_em,
    optax_method,
    polyak,
    stepwise_em,
    with_pruning,
)
from overgmm.driver import History, Solution, run, run_batch, solve, solve_batch, stack, trace_count  # noqa: E402
from overgmm.expectations import Estimate, MonteCarlo, Quadrature, expectation  # noqa: E402
from overgmm.measures import student_measures, teacher_measures  # noqa: E402
from overgmm.mixture import Mixture  # noqa: E402
from overgmm.objectives import denoising_score_matching, kl, nll, score_matching  # noqa: E402
from overgmm.problem import Problem  # noqa: E402
from overgmm.statistics import Stats, data_statistics  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name: str):
    # lazy: importing scikit-learn adds about half a second to `import overgmm`
    if name == "OverparamGMM":
        from overgmm.estimator import OverparamGMM

        return OverparamGMM
    raise AttributeError(f"module 'overgmm' has no attribute {name!r}")


__all__ = [
    "Algorithm",
    "Estimate",
    "History",
    "Method",
    "Solution",
    "Stats",
    "chunks",
    "cluster",
    "streaming",
    "Mixture",
    "MonteCarlo",
    "OverparamGMM",
    "Problem",
    "Quadrature",
    "State",
    "data_statistics",
    "denoising_score_matching",
    "em",
    "expectation",
    "gradient_descent",
    "gradient_em",
    "init",
    "kl",
    "nll",
    "optax_method",
    "polyak",
    "reduce",
    "run",
    "run_batch",
    "score_matching",
    "solve",
    "solve_batch",
    "stack",
    "stepwise_em",
    "student_measures",
    "teacher_measures",
    "trace_count",
    "with_pruning",
]
