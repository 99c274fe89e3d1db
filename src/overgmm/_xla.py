"""Compile options by problem size: small programs are built for compile speed.

A first fit of small data waits for XLA's compiler far longer than it computes. Up to
:data:`SMALL_ROWS` (padded) rows, the programs of the estimator and of the chunked fit
(:mod:`overgmm.streaming`) are compiled with :data:`FAST_COMPILE`: XLA's backend
optimisation off (on iris that halved their compilation) and XLA:CPU's older loop
emitters instead of its MLIR fusion emitters (a cold iris fit 5.3 -> 2.5 s, XLA
compilation 7.8 -> 2.7 s; the same fit to the last digit). Larger programs keep XLA's
defaults: at N = 1e5 the optimised build runs about 1.6x faster, and the older emitters
ran the quadrature of the W5 reproduction 1.5x slower. The limit was 2^14 rows until the
eighth session; at 10^4 rows (10240 padded, d = 10, 25 full components) the optimised
build solved 2.4x faster (a second "auto" fit 2.97 -> 1.44 s; backend optimisation alone
2.42 s, the fusion emitters alone 3.28 s), so the solver and the chunked fit's per-chunk
kernels (:data:`SMALL_ROWS`) now get XLA's defaults over 2^13 rows. The programs that run
a few times per fit (``light``: starting students, summary, merge round, E-step sums,
evaluation) keep the fast build up to :data:`LIGHT_ROWS` = 2^14: built optimised, they
tripled the compilation of a cold 1e4 fit (3.4 -> 17.1 s of XLA; the merge round alone
5 s) for 0.2 s less work (a cold fit 6.9 -> 13.4 s; with them light 9.1 s, the second
fit 1.77 s against 3.3 s). CPU only; other backends always get the defaults.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

from overgmm._eager import traced
from overgmm._executables import persistent

SMALL_ROWS = 1 << 13
# programs run a few times per fit (the starting students, the summary, the merge round,
# the E-step sums, evaluation) keep the fast build up to 2^14 rows: optimised, they cost
# far more compilation than they save (the merge round alone 5 s of XLA at 1e4 rows)
LIGHT_ROWS = 1 << 14
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def small(rows: int, limit: int | None = None) -> bool:
    """Whether programs over ``rows`` (padded) rows compile with :data:`FAST_COMPILE`: at
    most ``limit`` rows (default :data:`SMALL_ROWS`; :data:`LIGHT_ROWS` for light programs)."""
    return rows <= (SMALL_ROWS if limit is None else limit) and jax.default_backend() == "cpu"


def compile_options(rows: int) -> dict | None:
    """XLA compiler options for a program over ``rows`` rows (None: XLA's defaults)."""
    return FAST_COMPILE if small(rows) else None


def jit_by_rows(
    rows: Callable[..., int], name: str | None = None, light: bool = False, **jit_kwargs
) -> Callable[[Callable], Any]:
    """Decorator: ``jax.jit`` with two builds, :data:`FAST_COMPILE` when ``rows(*args,
    **kwargs)`` (the padded row count of the call; 0 for programs that read no rows) is
    :func:`small` (or the call's ``data_rows=`` keyword, when given; ``light``: up to
    :data:`LIGHT_ROWS`), XLA's defaults otherwise; called under a transformation, the plain
    ``jax.jit`` (compiler options belong to the outer program). ``lower`` and
    ``_cache_size`` follow jit's; ``fast`` and ``full`` are the two builds. Each build is
    :func:`overgmm._executables.persistent` (``name``: as there), so a new process loads
    its programs compiled instead of tracing them."""

    limit = LIGHT_ROWS if light else None

    def decorate(fn):
        fast = persistent(fn, name, compiler_options=FAST_COMPILE, **jit_kwargs)
        full = persistent(fn, name, **jit_kwargs)

        def pick(*args, **kwargs):
            if traced((args, kwargs)):  # inside another program (jit, eval_shape): its options
                return full
            return fast if small(rows(*args, **kwargs), limit) else full

        @functools.wraps(fn)
        def call(*args, data_rows=None, **kwargs):
            # data_rows: decide by these rows instead (a chunk of larger data: its total)
            if data_rows is not None and not traced((args, kwargs)):
                return (fast if small(data_rows, limit) else full)(*args, **kwargs)
            return pick(*args, **kwargs)(*args, **kwargs)

        call.fast, call.full = fast, full
        call._cache_size = lambda: fast._cache_size() + full._cache_size()
        call.lower = lambda *args, **kwargs: pick(*args, **kwargs).lower(*args, **kwargs)
        call.precompile = lambda *args, **kwargs: pick(*args, **kwargs).precompile(*args, **kwargs)
        return call

    return decorate
