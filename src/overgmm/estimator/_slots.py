"""Component slots of a fit on many rows: the dead ones dropped between merge rounds.

A fit keeps its pruned and merged-away components as slots of weight 0, so that shapes
and compiled programs stay fixed. Each EM step and merge round costs in proportion to the
slots, live or dead (10^6 rows, d = 10, full covariances: about 600 ms a step with 25
slots whether 25 or 5 are live). So :func:`overgmm.estimator._fit.fit` on
:data:`COMPACT_ROWS` rows or more moves the live components to the front after a merge
round and drops the dead slots, whenever the live ones of every restart fit a smaller
bucket (:func:`width`: powers of two, at least :data:`MIN_SLOTS`, so that few programs are
compiled). A dead slot changes nothing a live component sees (its responsibilities are 0
exactly), the live components keep their order, and :meth:`Slots.student` /
:meth:`Slots.covariances` / :meth:`Slots.weights` expand the result back to the starting
width: the fit returns the same shapes as without dropping, and the same mixture to
rounding (tested).

Arrays here are the host batches of the fit (leading axis R, restarts; component axis 1).
"""

from __future__ import annotations

import numpy as np

from overgmm import covariances as C
from overgmm.mixture import Mixture

# a fit on this many rows (sum of sample weights) or more drops dead slots. Measured
# (docs/estimator.md; 5 full clusters in d = 10, a first and a second fit in one process):
# at 10^6 rows 42.0 -> 37.2 s and 25.2 -> 15.9 s; at 10^5 rows the second fit gained 1-2 s
# but the first, on an empty cache, lost 2-11 s: each width's solver, summary and merge
# compile in 2-5 s (compiled meanwhile on a spare core, which does not always finish first)
COMPACT_ROWS = 1 << 17
MIN_SLOTS = 8
# inference on this many rows or more evaluates the live components alone (for_scoring)
SCORE_ROWS = 1 << 14


def bucket_components(n: int) -> int:
    """Components are padded (pruned, weight 0) to a power of two up to 16."""
    return n if n > 16 else 1 << (int(n) - 1).bit_length()


def compact(total: float) -> bool:
    """Whether a fit on ``total`` rows (the sum of sample weights) drops its dead slots."""
    return total >= COMPACT_ROWS


def width(student: Mixture, ok: np.ndarray) -> int:
    """The slots that the live components of the restarts in ``ok`` (R,) fit in: the next
    power of two, at least :data:`MIN_SLOTS`, at most the current width."""
    n = student.log_weights.shape[1]
    live = np.isfinite(student.log_weights[ok]).sum(axis=1)
    to = bucket_components(int(live.max())) if live.size else n
    return n if to > 16 else min(n, max(MIN_SLOTS, to))


def widths(n: int) -> list[int]:
    """The widths a fit that starts with ``n`` slots may narrow to, widest first."""
    out, w = [], 1 << max(0, (n - 1).bit_length() - 1)
    while MIN_SLOTS <= w < n:
        out.append(w)
        w //= 2
    return out


def for_scoring(student: Mixture, live: np.ndarray, n_rows: int) -> tuple[Mixture, np.ndarray]:
    """What inference on ``n_rows`` rows evaluates: the fitted (unbatched) ``student`` and the
    slots of its ``live`` components; on :data:`SCORE_ROWS` rows or more, the live components
    first, in their order, in the fewest slots of a bucket (a power of two up to 16), and
    their new slots. The same log-densities and responsibilities (dead slots add exactly 0)
    for a fraction of the work (k live of 25 slots); on fewer rows the fit's own width, whose
    evaluation program "auto" has compiled already."""
    n, k = student.log_weights.shape[0], live.size
    if n_rows < SCORE_ROWS:
        return student, live
    to = min(n, bucket_components(k))
    order = np.concatenate([live, np.flatnonzero(~np.isin(np.arange(n), live))[: to - k]])
    per = _per_component(student.covariance_type)
    params = None if student.cov_params is None else (student.cov_params[order] if per else student.cov_params)
    narrowed = Mixture.tree_unflatten(
        student.covariance_type, (np.asarray(student.means)[order], np.asarray(student.log_weights)[order], params)
    )
    return narrowed, np.arange(k)


def _per_component(kind: str) -> bool:
    """Whether the covariance parameters (and natural covariances) of ``kind`` have a
    component axis (all but tied: one covariance shared by the components)."""
    return C.of(kind).natural_shape(2, 3)[:1] == (2,)


def _take(a, index: np.ndarray, per: bool):
    if a is None or not per:
        return a
    return np.stack([a[r][index[r]] for r in range(index.shape[0])])


def _put(base, a, index: np.ndarray, per: bool):
    if a is None or not per:
        return a
    out = np.array(base, copy=True)
    for r in range(index.shape[0]):
        out[r][index[r]] = a[r]
    return out


class Slots:
    """Which starting slot each current slot of a batch of ``R`` restarts holds
    (``index`` (R, width)), and the starting-width batch behind the dropped slots."""

    def __init__(self, n: int, R: int) -> None:
        self.index = np.tile(np.arange(n), (R, 1))
        self._student: Mixture | None = None  # starting width: the values of dropped slots
        self._cov: tuple | None = None

    @property
    def width(self) -> int:
        return self.index.shape[1]

    def narrow(self, nxt: Mixture, cov: tuple, to: int) -> np.ndarray:
        """Drop to ``to`` slots, by the live components of ``nxt`` (the students the fit goes
        on with; current width), whose values, with ``cov`` (their covariances, current
        width), stand for the dropped slots from now on. Returns the kept slots (R, to) in
        current-width positions: the live ones first, in their order."""
        self._student, self._cov = self.student(nxt), self.covariances(cov)
        order = np.argsort(~np.isfinite(np.asarray(nxt.log_weights)), axis=1, kind="stable")[:, :to]
        self.index = np.take_along_axis(self.index, order, axis=1)
        return order

    def take(self, student: Mixture, cov: tuple, order: np.ndarray) -> tuple[Mixture, tuple]:
        """``student`` and ``cov`` (current width) at the slots ``order`` of :meth:`narrow`."""
        per = _per_component(student.covariance_type)
        leaves = (
            _take(student.means, order, True),
            _take(student.log_weights, order, True),
            _take(student.cov_params, order, per),
        )
        return Mixture.tree_unflatten(student.covariance_type, leaves), tuple(_take(a, order, per) for a in cov)

    def student(self, student: Mixture) -> Mixture:
        """``student`` (current width) at the starting width (dropped slots: weight 0)."""
        if self._student is None:
            return student
        base, per = self._student, _per_component(student.covariance_type)
        leaves = (
            _put(base.means, student.means, self.index, True),
            _put(base.log_weights, student.log_weights, self.index, True),
            _put(base.cov_params, student.cov_params, self.index, per),
        )
        return Mixture.tree_unflatten(student.covariance_type, leaves)

    def covariances(self, cov: tuple) -> tuple:
        """The fit's covariances (natural shape, precision factors; current width) at the
        starting width."""
        if self._cov is None or self._student is None:
            return cov
        per = _per_component(self._student.covariance_type)
        return tuple(_put(b, a, self.index, per) for b, a in zip(self._cov, cov, strict=True))

    def weights(self, r: int, w: np.ndarray) -> np.ndarray:
        """Restart ``r``'s recorded weights ``w`` (T, width) at the starting width (T, n)."""
        if self._student is None:
            return w
        out = np.zeros(w.shape[:-1] + (self._student.log_weights.shape[1],))
        out[..., self.index[r]] = w
        return out
