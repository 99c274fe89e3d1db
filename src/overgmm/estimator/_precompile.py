"""Compilation of the fit's programs in background threads, while the caller fits
(:class:`Precompiler`): the "auto" candidates' types, and the narrower widths a fit on
many rows drops to (:mod:`._slots`). Compile only, into the persistent cache."""

from __future__ import annotations

import os
import threading
from typing import Any

import jax
import numpy as np

from overgmm import covariances as C
from overgmm.driver import precompile_solve_batch
from overgmm.estimator import _slots
from overgmm.estimator._fit import RECORD, InMemory, _merge, _options, _summary
from overgmm.mixture import Mixture


class Precompiler:
    """Compiles the fit's programs (solver, summary, merge) for the covariance types still to
    come in background threads (one per spare core), last type first, while the caller fits
    the first: the compilations of ``covariance_type="auto"``'s candidates overlap; or, with
    (type, width) jobs in order, a fit's narrower widths while it runs at the wider; or, with
    (type, None, part) jobs in order, a fit's own programs while it starts. Each program
    lands in the persistent compilation cache, where the caller's own call of the same
    shapes finds it (nothing runs in the thread: two threads running programs at once can
    deadlock XLA's CPU pool, see :mod:`overgmm.covariances.base`). Without the persistent
    cache it does nothing.

    :meth:`start` once the first type's problem and students exist; :meth:`claim` before
    fitting a type (waits while the thread compiles it, else the caller compiles it itself
    and the thread skips it), or :meth:`take` to fit first whichever type is ready;
    :meth:`close` at the end."""

    def __init__(self, kinds, *, last_first: bool = True, widths: dict | None = None) -> None:
        # the types to come, in the caller's order; a job is a type, or (type, width): that
        # type's programs for students narrowed to ``width`` components (:mod:`._slots`),
        # or (type, None, part): one of its programs (:func:`final_fit`).
        # last_first: compiled from the last (the caller is fitting the first), else in order
        # widths: {type: slots} for a type job whose fit starts narrower than the students
        # start() is given ("auto"'s full candidate, _fit.auto_n_components)
        self._kinds = tuple(kinds) if not last_first else tuple(reversed(tuple(kinds)))
        self._widths = dict(widths or {})
        self._lock = threading.Lock()
        self._state: dict[Any, str] = {}
        self._done: dict[Any, threading.Event] = {}
        self._threads: list[threading.Thread] = []

    def claim_width(self, width: int) -> None:
        """:meth:`claim` the (type, ``width``) job, if there is one."""
        for job in self._kinds:
            if not isinstance(job, str) and job[1] == width:
                self.claim(job)

    def start(self, engine: InMemory, like: Mixture, keys, max_iter: int, *, merge: bool = True) -> None:
        """Start compiling, once: ``engine``'s problem, students shaped like ``like``;
        ``merge``: whether the fit merges (else its merge program is not compiled)."""
        kinds = self._kinds
        if self._threads or not kinds or not getattr(jax.config, "jax_compilation_cache_dir", None):
            return
        self._state = {k: "pending" for k in kinds}
        self._done = {k: threading.Event() for k in kinds}
        args = (engine, like, keys, kinds, max_iter, merge)
        # one thread per spare core (the caller compiles on its own), at most one per type
        for _ in range(max(1, min(len(kinds), (os.cpu_count() or 2) - 1))):
            # not a daemon: a compilation that close(wait=False) leaves running ends before
            # the interpreter does (XLA's compiler cut off at exit is not safe)
            thread = threading.Thread(target=self._work, args=args, name="overgmm-precompile", daemon=False)
            thread.start()
            self._threads.append(thread)

    def _work(self, engine: InMemory, like: Mixture, keys, kinds, max_iter: int, merge: bool) -> None:
        for kind in kinds:
            with self._lock:
                if self._state[kind] != "pending":
                    continue
                self._state[kind] = "compiling"
            try:
                job = (kind, self._widths[kind]) if kind in self._widths else kind
                compile_type(engine, like, keys, job, max_iter, merge)
            except Exception:  # noqa: BLE001 - an optimisation only: the caller compiles what is missing
                pass
            finally:
                self._done[kind].set()

    def claim(self, kind) -> None:
        with self._lock:
            state = self._state.get(kind)
            if state == "pending":
                self._state[kind] = "caller"
        if state == "compiling":
            self._done[kind].wait()

    def take(self, kinds) -> Any:
        """Which of ``kinds`` (the jobs still to fit, in the caller's order) to fit next,
        :meth:`claim`-ed: the first whose programs are compiled, else the first no thread has
        started (the caller compiles it while the threads go on), else the first (after its
        compilation ends); a thread may start the one picked first, and then it is waited
        for. Without threads: the first."""
        with self._lock:
            ready = [k for k in kinds if self._state.get(k) == "compiling" and self._done[k].is_set()]
            free = [k for k in kinds if self._state.get(k) in (None, "pending", "caller")]
        kind = (ready or free or list(kinds))[0]
        self.claim(kind)
        return kind

    def close(self, wait: bool = True) -> None:
        """No more jobs; ``wait``: for a compilation in progress to end (else it ends in
        the background, into the persistent cache)."""
        with self._lock:
            for k, state in self._state.items():
                if state == "pending":
                    self._state[k] = "caller"
        for thread in self._threads if wait else ():
            thread.join()


def compile_type(engine: InMemory, like: Mixture, keys, kind, max_iter: int, merge: bool) -> None:
    """Compile (not run) the solver, summary and (``merge``) merge of covariance type
    ``kind`` for ``engine``'s problem and students shaped like ``like`` (R, n, d);
    ``kind`` = (type, width): for ``width`` components instead of n (None: n); (type,
    width, part): only ``part``, one of "solve", "summary", "merge"."""
    kind, width, part = (kind, None, None) if isinstance(kind, str) else (*kind, None)[:3]
    R, n, d = like.means.shape
    n = n if width is None else width
    t = C.public(kind)
    spec = lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype)  # noqa: E731
    student = Mixture.tree_unflatten(
        t.name, (spec(like.means[:, :n]), spec(like.log_weights[:, :n]), jax.eval_shape(lambda: t.zeros((R, n), d)))
    )
    prob, alg = engine.problem, engine.algorithm
    if alg is None:
        return
    if part in (None, "solve"):
        opts = _options(prob)
        precompile_solve_batch(alg, student, max_steps=max_iter, keys=keys, record=RECORD, compiler_options=opts)
    if part in (None, "summary"):
        _summary.precompile(prob, student)
    if merge and part in (None, "merge"):
        _merge.precompile(prob, student, np.float64(0.0))


def final_fit(engine: InMemory, like: Mixture, keys, kind: str, max_iter: int, merge: bool) -> Precompiler:
    """A started :class:`Precompiler` of the programs of a fit of type ``kind`` on
    ``engine``'s problem (only its shapes count: the programs take the data as arguments)
    from students shaped like ``like``: the solver, then the merge round, then the summary
    (the solver is claimed first; the merge round, the costliest to compile, compiles
    while the fit solves). "auto" on large data starts it for its final fit on all rows."""
    pre = Precompiler([(kind, None, part) for part in ("solve", "merge", "summary")], last_first=False)
    pre.start(engine, like, keys, max_iter, merge=merge)
    return pre


class Awaiting:
    """``engine`` (:class:`InMemory`) for a fit of type ``kind`` whose programs ``pre``
    (:func:`final_fit`) may be compiling: each of its solver, summary and merge round waits
    for its own program first (one not yet started is compiled by the caller instead)."""

    def __init__(self, engine: InMemory, pre: Precompiler, kind: str) -> None:
        self.engine, self.pre, self.kind = engine, pre, kind
        self.problem, self.algorithm, self.sums = engine.problem, engine.algorithm, engine.sums

    def solve(self, students, keys, max_iter: int, tol: float):
        self.pre.claim((self.kind, None, "solve"))
        return self.engine.solve(students, keys, max_iter, tol)

    def summary(self, students):
        self.pre.claim((self.kind, None, "summary"))
        return self.engine.summary(students)

    def merge(self, students, price: float):
        self.pre.claim((self.kind, None, "merge"))
        return self.engine.merge(students, price)


def for_widths(engine: InMemory, students: Mixture, keys, kind: str, max_iter: int, merge: bool) -> Precompiler:
    """A started :class:`Precompiler` of the narrower widths (:func:`._slots.widths`) a fit of
    ``kind`` that starts with ``students`` (R, n, d) may drop to, widest first."""
    pre = Precompiler([(kind, w) for w in _slots.widths(students.means.shape[1])], last_first=False)
    pre.start(engine, students, keys, max_iter, merge=merge)
    return pre
