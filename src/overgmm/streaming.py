"""Exact full-data EM on data in chunks: every statistic is a sum over chunks.

The E-step statistics (:class:`overgmm.statistics.Raw`: loss, masses, first and second
moments) and the merge costs (:func:`overgmm.reduce.pair_cost_sums`) are sums over rows,
so each chunk of a :mod:`overgmm.chunks` source reduces to O(n d^2) numbers with the
compiled kernel (padded to one shape: one compilation), the host adds them in chunk order
in float64, and the algorithm's own step runs on the total
(:meth:`overgmm.Problem.from_statistics`) inside the driver's step
(:func:`overgmm.driver.solve_step`). Each step reads every chunk once; nothing is
stochastic, and the numbers equal the in-memory pass to rounding.

A :class:`View` says how a chunk is seen: standardized by ``shift``/``scale``, and which
rows count (``rows="all"``; ``"fit"``, the rows outside :func:`holdout_mask`; ``"held"``,
the rows inside it; with ``below``, only those whose :func:`sample_hash` is at most it).
Workers compute it from the chunk's values, so no mask travels.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from overgmm import chunks as C
from overgmm import driver, rounding
from overgmm._validation import NonFiniteValue
from overgmm._xla import jit_by_rows
from overgmm.algorithms.base import Method
from overgmm.mixture import Mixture
from overgmm.problem import Problem
from overgmm.reduce import cost_matrix, merge_pairs, pair_cost_sums
from overgmm.statistics import Raw, centred, raw_moments

HOLDOUT_FOLDS = 5
SUBSAMPLE_ROWS = 1 << 16  # rows kept (about) for drawing starting students
_GOLDEN = 0x9E3779B97F4A7C15
_MIX = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))  # MurmurHash3's fmix64


# ----------------------------------------------------------------------------- row hashes
def _fmix(k: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer (a bijection in which every input bit moves every
    output bit): float64 bit patterns of integers end in 40 or more zero bits, which a
    multiply alone keeps, so every value goes through it."""
    k = k ^ (k >> np.uint64(33))
    k = k * _MIX[0]
    k ^= k >> np.uint64(33)
    k *= _MIX[1]
    k ^= k >> np.uint64(33)
    return k


def row_hash(X: np.ndarray, salt: int = 0) -> np.ndarray:
    """A 64-bit hash ``(N,)`` of each row's float64 values: equal rows hash equally, so
    what depends on it ignores row order, chunking and duplication. Every value is mixed
    (:func:`_fmix`), so rows of integers or halves spread evenly over any modulus."""
    rows = np.ascontiguousarray(X, dtype=np.float64).view(np.uint64).reshape(X.shape[0], -1)
    h = np.full(X.shape[0], np.uint64((int(salt) * _GOLDEN) % 2**64))
    with np.errstate(over="ignore"):
        for j in range(rows.shape[1]):
            h = _fmix(h ^ _fmix(rows[:, j] + np.uint64((j * _GOLDEN) % 2**64)))
    return h


def holdout_mask(X: np.ndarray) -> np.ndarray:
    """About one row in :data:`HOLDOUT_FOLDS`, chosen by :func:`row_hash` (the validation
    rows of the estimator's ``covariance_type="auto"``)."""
    h = row_hash(X) if X.shape[0] else np.zeros(0, np.uint64)
    return (h % np.uint64(HOLDOUT_FOLDS)) == 0


def subsample_mask(X: np.ndarray, w: np.ndarray, fraction: float) -> np.ndarray:
    """Rows of positive weight whose hash falls in the first ``fraction`` of its range
    (all of them when ``fraction >= 1``): a sample that depends only on the rows' values."""
    keep = w > 0
    if fraction >= 1:
        return keep
    u = (row_hash(X, salt=1) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return keep & (u < fraction)


def sample_hash(X: np.ndarray) -> np.ndarray:
    """The hash ``(N,)`` that chooses subsamples (:func:`row_hash` with its own salt)."""
    return row_hash(X, salt=1)


def kth_smallest(hashes: np.ndarray, k: int):
    """The ``k``-th smallest of ``hashes`` (None when there are at most ``k``): the rows whose
    :func:`sample_hash` is at most it are ``k`` rows (more only for duplicated rows)."""
    if hashes.size <= k:
        return None
    return int(np.partition(hashes, k - 1)[k - 1])


# ----------------------------------------------------------------------------- views
@dataclasses.dataclass(frozen=True)
class View:
    """How a chunk is seen: ``(X @ rotation - shift) / scale`` (None: as it is; ``rotation``
    (d, d) orthonormal, for ``covariance_type="rotated"``), which rows count: ``"all"``,
    ``"fit"`` (outside :func:`holdout_mask`) or ``"held"`` (inside it), and whether NaN
    entries are missing values (the missing-value E-step and merge costs; set from
    :attr:`Moments.gaps`, once per fit, as the in-memory problem's ``missing``). Which rows
    count is decided from the rows' own values, before any rotation."""

    shift: np.ndarray | None = None
    scale: np.ndarray | None = None
    rows: str = "all"
    below: int | None = None  # also: only rows whose sample_hash is at most this
    missing: bool = False
    rotation: np.ndarray | None = None

    def weights(self, X: np.ndarray, w: np.ndarray) -> np.ndarray:
        if self.below is not None:
            w = np.where(sample_hash(X) <= np.uint64(self.below), w, 0.0)
        if self.rows == "all":
            return w
        held = holdout_mask(X)
        return np.where(held, w, 0.0) if self.rows == "held" else np.where(held, 0.0, w)

    def data(self, X: np.ndarray) -> np.ndarray:
        X = X if self.rotation is None else X @ self.rotation
        return X if self.shift is None else (X - self.shift) / self.scale


ALL = View()


# ----------------------------------------------------------------------------- per-chunk work
def _scan_chunk(X, w, start, view: View, missing: bool = False):
    """Check finiteness (the error names the row and column; ``missing``: NaN is a missing
    value, a row with nothing observed an error), then the weighted count, sum (over the
    observed entries) and row count of the chunk's rows that count, the grid's part, and
    each feature's observed weight."""
    gaps = np.isnan(X) if missing else None
    bad = ~np.isfinite(X) if gaps is None else ~np.isfinite(X) & ~gaps
    if gaps is not None and gaps.all(axis=1).any():
        r = int(np.flatnonzero(gaps.all(axis=1))[0])
        raise ValueError(
            f"row {start + r} (row {r} of the chunk starting at row {start}) has no observed value (all NaN); "
            "drop it before fitting"
        )
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise NonFiniteValue(
            f"non-finite value {float(X[r, c])} at row {start + r} (row {r} of the chunk starting at row {start}), "
            f"column {c}",
            int(start + r),
            int(c),
            float(X[r, c]),
        )
    w = view.weights(X, w)
    if gaps is None or not gaps.any():
        seen = np.full(X.shape[1], float(w.sum()))
        return float(w.sum()), w @ X, int(np.count_nonzero(w)), rounding.grid_parts(X, w), seen
    seen = w @ (~gaps).astype(np.float64)
    return float(w.sum()), w @ np.where(gaps, 0.0, X), int(np.count_nonzero(w)), rounding.grid_parts(X, w), seen


def _second_chunk(X, w, start, view: View, mean):
    w = view.weights(X, w)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow: the caller reports the feature
        c = X - mean
        if np.isnan(c).any():  # missing values (scan(missing=True)): observed entries only
            c = np.where(np.isnan(X), 0.0, c)
        return (c * w[:, None]).T @ c


def _sample_chunk(X, w, start, view: View, fraction: float):
    w = view.weights(X, w)
    keep = subsample_mask(X, w, fraction)
    return X[keep], w[keep]


def _pad(Z: np.ndarray, w: np.ndarray, rows: int):
    if Z.shape[0] == rows:
        return Z, w
    Zp = np.zeros((rows, Z.shape[1]))
    Zp[: Z.shape[0]] = Z
    wp = np.zeros(rows)
    wp[: Z.shape[0]] = w
    return Zp, wp


# The restarts go through lax.map (a loop over R), not vmap: the vmapped E-step compiles to
# slower code (measured 1.3x at 2^18 rows, 2.7x at 2^22, d = 10, n = 20, even for R = 1).
def _z_rows(students, Z, *args) -> int:
    return Z.shape[0]


def _no_rows(*args) -> int:
    return 0


@jit_by_rows(_z_rows, static_argnames=("missing",))
def _moments_kernel(students: Mixture, Z, w, *, missing: bool = False) -> Raw:
    return jax.lax.map(lambda s: raw_moments(s, Z, w, missing=missing), students)


@jit_by_rows(_z_rows, static_argnames=("missing",))
def _pair_kernel(students: Mixture, Z, w, floor, *, missing: bool = False):
    return jax.lax.map(lambda s: pair_cost_sums(s, Z, w, floor, missing), students)


def _moments_chunk(X, w, start, view: View, students: Mixture, rows: int, data_rows: int):
    Z, w = _pad(view.data(X), view.weights(X, w), rows)
    raw = _moments_kernel(students, Z, w, missing=view.missing, data_rows=data_rows)
    return jax.tree_util.tree_map(np.asarray, raw)


def _pairs_chunk(X, w, start, view: View, students: Mixture, floor, rows: int, data_rows: int):
    Z, w = _pad(view.data(X), view.weights(X, w), rows)
    return np.asarray(_pair_kernel(students, Z, w, floor, missing=view.missing, data_rows=data_rows))


# ----------------------------------------------------------------------------- passes
@dataclasses.dataclass(frozen=True)
class Moments:
    """The weighted first two moments of the rows a view counts: ``total`` (sum of
    weights), ``count`` (rows of positive weight), ``mean (d,)``, ``cov (d, d)``, and each
    feature's rounding grid ``grid (d,)`` (:func:`overgmm.rounding.grid`, 0: none), and the
    weight of the rows where each feature is observed ``seen (d,)`` (``total`` for every
    feature without missing values); with missing values ``mean`` and the diagonal of
    ``cov`` are over those rows."""

    total: float
    count: int
    mean: np.ndarray
    cov: np.ndarray
    grid: np.ndarray
    seen: np.ndarray

    @property
    def gaps(self) -> bool:
        """Whether some feature is missing in some row that counts."""
        return bool(np.any(self.seen < self.total))


def scan(chunks, view: View = ALL, *, missing: bool = False) -> Moments:
    """Two passes: finiteness, the mean and the rounding grid, then the covariance about it.
    ``missing``: NaN entries are missing values; each feature's moments are over the rows
    where it is observed (as :func:`overgmm.estimator._checks.feature_moments` in memory)."""
    parts = chunks.map(_scan_chunk, view, missing)
    total = sum(p[0] for p in parts)
    count = sum(p[2] for p in parts)
    d = chunks.n_features
    if not total > 0:  # nothing counts: the caller decides
        return Moments(0.0, 0, np.zeros(d), np.zeros((d, d)), np.zeros(d), np.zeros(d))
    seen = C.add(*[p[4] for p in parts])
    if not np.any(seen < total):
        seen = np.full(d, total)
        mean = C.add(*[p[1] for p in parts]) / total
        cov = C.map_sum(chunks, _second_chunk, view, mean) / total
    else:
        safe = np.where(seen > 0, seen, 1.0)
        mean = C.add(*[p[1] for p in parts]) / safe
        cov = C.map_sum(chunks, _second_chunk, view, mean) / np.sqrt(np.outer(safe, safe))
    return Moments(total, count, mean, cov, rounding.combine(p[3] for p in parts if p[2] > 0), seen)


def _hashes_chunk(X, w, start, view: View, k: int):
    h = sample_hash(X)[view.weights(X, w) > 0]
    return h if h.size <= k else np.partition(h, k - 1)[:k]


def first_by_hash(chunks, view: View, k: int):
    """:func:`kth_smallest` of the :func:`sample_hash` of the rows the view counts, over every
    chunk (each chunk sends its ``k`` smallest): ``View(..., below=it)`` then counts ``k``
    of those rows, chosen by their values as in memory."""
    return kth_smallest(np.concatenate(chunks.map(_hashes_chunk, view, k)), k)


def _gather_chunk(X, w, start, view: View):
    w = view.weights(X, w)
    return X[w > 0], w[w > 0]


def gather(chunks, view: View) -> tuple[np.ndarray, np.ndarray]:
    """The rows (original units, chunk order) that ``view`` counts and their weights, in
    memory: for a view that counts few rows (``below``: "auto"'s candidate rows)."""
    parts = chunks.map(_gather_chunk, view)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def subsample(chunks, view: View, count: int, target: int = SUBSAMPLE_ROWS):
    """The rows (original units) and weights of :func:`subsample_mask` at about ``target``
    rows of the ``count`` the view counts, in a canonical (sorted) order."""
    parts = chunks.map(_sample_chunk, view, target / max(count, 1))
    X = np.concatenate([p[0] for p in parts])
    w = np.concatenate([p[1] for p in parts])
    order = np.lexsort(X.T[::-1])
    return X[order], w[order]


def statistics_sums(chunks, view: View, students: Mixture) -> Raw:
    """:class:`Raw` sums over every chunk for a batch of students (leading axis R)."""
    host = jax.tree_util.tree_map(np.asarray, students)
    return C.map_sum(chunks, _moments_chunk, view, host, _rows(chunks), chunks.n_rows)


def pair_costs(chunks, view: View, students: Mixture, floor, total: float) -> np.ndarray:
    """``(R, n, n)`` merge costs (:func:`overgmm.reduce.pair_costs`) over every chunk."""
    host = jax.tree_util.tree_map(np.asarray, students)
    sums = C.map_sum(chunks, _pairs_chunk, view, host, np.asarray(floor), _rows(chunks), chunks.n_rows)
    return np.asarray(jax.vmap(cost_matrix, in_axes=(0, 0, None))(students, sums, total))


@jit_by_rows(_no_rows)
def _merge_kernel(students, costs, price, floor):
    return jax.vmap(merge_pairs, in_axes=(0, 0, None, None))(students, costs, price, floor)


def merge_round(chunks, view: View, students: Mixture, floor, total: float, price):
    """:func:`overgmm.reduce.merge_round` for a batch of students on chunked data."""
    if students.n_components < 2:
        return students, np.zeros(students.means.shape[0], np.int32)
    costs = pair_costs(chunks, view, students, floor, total)
    return _merge_kernel(students, costs, np.float64(price), jnp.asarray(floor))


def _rows(chunks) -> int:
    """The one padded shape of every chunk: the largest chunk's rows rounded up to a power
    of two (one compilation; small data are not padded to the budget's chunk size)."""
    largest = max((b - a for a, b in chunks.bounds), default=1)
    return 1 << (int(max(largest, 1)) - 1).bit_length()


# ----------------------------------------------------------------------------- the solve loop
@functools.lru_cache(maxsize=32)
def _stepper(method: Method, max_steps: int, record: tuple[str, ...]):
    def one(raw, total, floor, tol, carry, student):
        stats = centred(student, raw, total)
        prob = Problem.from_statistics(stats, var_floor=floor)
        new = driver.solve_step(method, max_steps, record, prob, tol, carry)
        act = driver.solve_active(carry)
        return jax.tree_util.tree_map(lambda a, b: jnp.where(act, a, b), new, carry)

    batched = jax.vmap(one, in_axes=(0, None, None, None, 0, 0))

    def step(raw, total, floor, tol, carry):
        return batched(raw, total, floor, tol, carry, carry.state.student)

    return jit_by_rows(_no_rows, name=f"streaming.step[{method!r}, {max_steps}, {record}]")(step)


@functools.lru_cache(maxsize=32)
def _starter(method: Method, max_steps: int, record: tuple[str, ...]):
    def one(raw, total, floor, student, key):
        prob = Problem.from_statistics(centred(student, raw, total), var_floor=floor)
        return driver.solve_init(method, max_steps, record, prob, student, key)

    name = f"streaming.start[{method!r}, {max_steps}, {record}]"
    return jit_by_rows(_no_rows, name=name)(jax.vmap(one, in_axes=(0, None, None, 0, 0)))


def solve(
    method: Method,
    students: Mixture,
    chunks,
    *,
    floor,
    total: float,
    view: View = ALL,
    max_steps: int,
    tol: float = 0.0,
    keys=None,
    record=(),
    on_step=None,
) -> driver.Solution:
    """:func:`overgmm.solve_batch` of a streamable ``method`` (``method.streamable``) for a
    batch of ``students`` (leading axis R) on chunked data: every step is one pass over
    the chunks and the driver's own step on the reduced statistics. ``total``: the sum of
    the weights the view counts (statistics are means over it). ``on_step``: called after
    every pass with the best restart's mean negative log-likelihood (a float)."""
    if not method.streamable:
        raise ValueError(
            f"{method.name} reads the data more than once per step; on data in chunks use EM or gradient EM "
            "(weights 'fixed' or 'em')"
        )
    record = tuple(record)
    R = students.means.shape[0]
    keys = jax.random.split(jax.random.key(0), R) if keys is None else keys
    floor = jnp.asarray(floor, jnp.float64)
    total = np.float64(total)
    raw = _zeros_like_sums(chunks, students)  # init reads no data
    carry = _starter(method, max_steps, record)(raw, total, floor, students, keys)
    step = _stepper(method, max_steps, record)
    while bool(np.any(np.asarray(driver.solve_active(carry)))):
        raw = statistics_sums(chunks, view, carry.state.student)
        carry = step(raw, total, floor, np.float64(tol), carry)
        if on_step is not None:
            on_step(-float(np.max(np.asarray(raw.loss))) / total)
    result = _result(carry)
    return driver.solution(method, *result, warn=False)


_result = jit_by_rows(_no_rows, name="streaming.result[vmap(driver.solve_result)]")(jax.vmap(driver.solve_result))


def _zeros_like_sums(chunks, students: Mixture) -> Raw:
    rows = _rows(chunks)
    shapes = jax.eval_shape(_moments_kernel, students, np.zeros((rows, chunks.n_features)), np.zeros(rows))
    return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def loss(chunks, view: View, students: Mixture, total: float) -> np.ndarray:
    """Mean negative log-likelihood ``(R,)`` of a batch of students over the rows the view counts."""
    return -np.asarray(statistics_sums(chunks, view, students).loss) / total
