"""The rounding grid of recorded data, for a variance floor that sees it.

Real data are often recorded on a grid: pixel intensities 0..16, counts, durations to
the minute, lengths to 0.1 cm. A Gaussian fitted to such values can shrink its variance
along a feature towards 0 where a component's rows share one value, and a continuous
density then scores those ties as huge while a new row one step away costs thousands of
nats (scikit-learn's digits: a diagonal model scored -2065 nats/sample on one held-out
fold). A value recorded to a step ``g`` stands for an interval of width ``g``: its
variance within the interval is ``g^2 / 12`` (Sheppard's correction), and no component
can know a feature more finely than that. :func:`grid` finds ``g`` per feature: the
largest step of which every value is an integer multiple (after an offset), for values
with at most :data:`MAX_DECIMALS` decimals; 0 where there is none (continuous values).
Data stored in float32 are read to float32's precision (0.1 in float32 is on the grid
of 0.1).
:func:`grid_parts` and :func:`combine` compute it over chunks of rows.
"""

from __future__ import annotations

import math

import numpy as np

MAX_DECIMALS = 6
_PROBE = 256  # rows that screen each number of decimals before every row is checked
# scaled values must stay below this: a float64 there is still known to 1e-3 of a step
# (beyond it every value is near an integer and a continuous feature would look rounded)
_EXACT = 2.0**40
_TOL = 4 * np.finfo(np.float64).eps
# values that are float32 numbers (data stored in float32, cast to float64) are known to
# float32's precision only: 0.1 is 0.10000000149..., 4 float32 ulps from the grid; the
# same tolerance, with scaled values below 2^14 (known to 1e-2 of a step)
_EXACT32 = 2.0**14
_TOL32 = 4 * float(np.finfo(np.float32).eps)


def _near_integers(s: np.ndarray, bound: float, tol: float) -> bool:
    return bool(np.max(np.abs(s)) < bound and np.all(np.abs(s - np.rint(s)) <= tol * np.maximum(1.0, np.abs(s))))


def _on_grid(v: np.ndarray, p: int) -> bool:
    """Every value of ``v`` is an integer at the scale ``10^p``, to float64's precision, or
    to float32's where every value is a float32 number. A subset of values that passes
    passes too (what :func:`combine` relies on)."""
    with np.errstate(over="ignore", invalid="ignore"):  # huge values: no grid (below)
        s = v * 10.0**p
        if s.size == 0:
            return False
        if _near_integers(s, _EXACT, _TOL):
            return True
        return bool(np.all(v.astype(np.float32) == v)) and _near_integers(s, _EXACT32, _TOL32)


def _feature_part(v: np.ndarray) -> tuple[int, int]:
    """``(p, k)``: the values are integer multiples of ``k / 10^p`` after an offset (the
    fewest decimals ``p``, ``k`` the gcd of their differences at that scale); ``(-1, 0)``
    without a grid, ``(0, 0)`` for a single value."""
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0, 0
    for p in range(MAX_DECIMALS + 1):
        if _on_grid(v[:_PROBE], p) and _on_grid(v, p):
            ints = np.rint(v * 10.0**p).astype(np.int64)
            return p, int(np.gcd.reduce(ints - ints.min()))
    return -1, 0


def grid_parts(X: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per feature of ``X`` (N, d), over the rows of positive weight ``w`` (N,) (all rows
    without; NaN entries ignored): ``(p, k, ref, amax)``, each (d,): decimals, the gcd of the
    scaled differences, one value and the largest magnitude, for :func:`combine` across
    chunks."""
    X = np.asarray(X, dtype=np.float64)
    if w is not None:
        X = X[np.asarray(w) > 0]
    d = X.shape[1]
    p, k, ref, amax = np.zeros(d, np.int64), np.zeros(d, np.int64), np.zeros(d), np.zeros(d)
    for j in range(d):
        p[j], k[j] = _feature_part(X[:, j])
        col = X[:, j][np.isfinite(X[:, j])]
        ref[j] = col[0] if col.size else np.nan
        amax[j] = np.max(np.abs(col)) if col.size else 0.0
    return p, k, ref, amax


def _stack(parts):
    parts = list(parts)
    return tuple(np.stack([q[i] for q in parts]) for i in range(4))


def _combine_feature(p, k, ref, amax) -> tuple[int, int] | None:
    """One feature's ``(decimals, step in units of 10^-decimals)`` over the chunks' parts
    (arrays over chunks), or None without a grid."""
    seen = np.isfinite(ref)
    if not seen.any() or np.any(p[seen] < 0):
        return None
    top = int(p[seen].max())
    scale = 10.0**top
    if not (np.max(amax[seen]) * scale < _EXACT and _on_grid(ref[seen], top)):
        return None  # as in memory: every value must stay exact at the finest scale
    ints = [int(x) for x in np.rint(ref[seen] * scale)]
    g = 0
    for kk, pp in zip(k[seen], p[seen], strict=True):
        g = math.gcd(g, int(kk) * 10 ** (top - int(pp)))
    for x in ints:
        g = math.gcd(g, x - min(ints))
    return top, g


def combine(parts) -> np.ndarray:
    """The grid (d,) of the rows of several :func:`grid_parts` (one per chunk): the chunks'
    steps brought to the most decimals, their gcd with the differences between the chunks'
    reference values; 0 where any chunk has no grid or every value is the same."""
    p, k, ref, amax = _stack(parts)
    out = np.zeros(p.shape[1])
    for j in range(p.shape[1]):
        got = _combine_feature(p[:, j], k[:, j], ref[:, j], amax[:, j])
        if got is not None and got[1] > 0:
            out[j] = got[1] / 10.0 ** got[0]
    return out


def combined_part(parts) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One :func:`grid_parts` tuple for the rows of several: combining it with later parts
    gives the grid of all their rows (what :meth:`OverparamGMM.partial_fit` keeps between
    batches instead of every batch's part)."""
    p, k, ref, amax = _stack(parts)
    d = p.shape[1]
    out_p, out_k = np.zeros(d, np.int64), np.zeros(d, np.int64)
    out_ref, out_amax = np.full(d, np.nan), np.max(amax, axis=0)
    for j in range(d):
        seen = np.isfinite(ref[:, j])
        if seen.any():
            out_ref[j] = ref[seen, j][0]
        got = _combine_feature(p[:, j], k[:, j], ref[:, j], amax[:, j])
        if got is None:
            out_p[j] = -1 if seen.any() else 0
        else:
            out_p[j], out_k[j] = got
    return out_p, out_k, out_ref, out_amax


def grid(X: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """The rounding grid (d,) of each feature of ``X`` (N, d) over the rows of positive
    weight ``w``: the largest step ``g`` with every value an integer multiple of ``g`` after
    an offset, values with at most :data:`MAX_DECIMALS` decimals; 0 where there is none."""
    return combine([grid_parts(X, w)])


def sheppard_variance(g: np.ndarray) -> np.ndarray:
    """``g^2 / 12`` (d,): the variance of a value rounded to a grid of step ``g``."""
    g = np.asarray(g, dtype=np.float64)
    return g * g / 12.0
