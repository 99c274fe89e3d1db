"""EM sufficient statistics of a student: what EM, gradient EM and the Polyak method read.

For a student ``p_theta`` and data (or a teacher) the E-step gives, per component ``i``:

* ``loss``: the objective (mean negative log-likelihood on data; the KL to a teacher);
* ``mass``: ``N_i = E[psi_i]``, shape ``(n,)`` (sums to 1);
* ``shift``: ``E[psi_i (x - mu_i)]``, shape ``(n, d)``: minus the gradient in the means for
  identity covariances (Fact 1 of Xu et al.), and ``Sigma_i`` times minus the gradient
  otherwise;
* ``scatter``: the second moment about the current mean ``E[psi_i (x - mu_i)(x - mu_i)^T]``
  in the covariance type's shape: ``(n,)`` spherical (the mean over the d axes of the
  diagonal), ``(n, d)`` diag, ``(n, d, d)`` full; ``None`` for identity covariances.

On data, :func:`data_statistics` accumulates them over row blocks inside the compiled
function (memory O(block n d + n d^2), not O(N n)): the block is chosen from the shapes so
that the largest temporary (``block x n x d`` for full covariances, ``block x n``
otherwise) stays near :data:`BLOCK_ELEMENTS` float64 numbers. The expectations are
weighted by the sample weights ``w`` (zero weights allowed).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from overgmm import covariances as C
from overgmm._eager import compiled_when_eager
from overgmm.mixture import Mixture

TINY = 1e-300  # a mass at or below this counts as empty (a component keeps its parameters)
BLOCK_ELEMENTS = 1 << 18  # 256k float64 (2 MiB) per block temporary: cache-resident, measured fastest
MIN_BLOCK = 1024
# with missing values a full or tied pass holds a d x d matrix per row and component: past
# the budget, blocks of 256 rows ran 2.4x faster per row than 1024-row blocks (a full E-step
# at 25 components in d = 13: 86 against 237 us per row), and with the observed-block
# precisions by Schur complements 128 rows about 10% faster than 256 (a block runs as many
# steps as its row with the most gaps has gaps; wine, olive, ais with 10% gaps 36.5 -> 32.2 s
# in all, breast_cancer's full EM step 0.24 -> 0.22 s)
MIN_BLOCK_OBSERVED = 128


class Stats(NamedTuple):
    """E-step statistics (see the module docstring). Shapes: ``loss ()``, ``mass (n,)``,
    ``shift (n, d)``, ``scatter`` by covariance type (``None`` for identity)."""

    loss: jax.Array
    mass: jax.Array
    shift: jax.Array
    scatter: jax.Array | None = None


def rows_for_width(n_rows: int, width: int, min_rows: int = MIN_BLOCK) -> int:
    """Rows per block of a blocked pass whose widest per-row temporary holds ``width``
    numbers: about :data:`BLOCK_ELEMENTS` per block, at least ``min_rows`` rows, and
    all rows if they fit (the one block-size rule: statistics and merge costs)."""
    return int(min(n_rows, max(min_rows, BLOCK_ELEMENTS // max(width, 1))))


def block_rows(n_rows: int, n_components: int, dim: int, covariance_type: str, missing: bool = False) -> int:
    """Rows per block of :func:`data_statistics` for these shapes (all rows if they fit)."""
    t = C.of(covariance_type)
    if missing:
        return rows_for_width(n_rows, t.block_width_observed(n_components, dim), MIN_BLOCK_OBSERVED)
    return rows_for_width(n_rows, t.block_width(n_components, dim))


class Raw(NamedTuple):
    """Weighted sums over rows (not yet normalised): what chunks of data reduce to."""

    loss: jax.Array  # sum_k w_k log p(x_k) (negated later)
    mass: jax.Array  # sum_k w_k psi_ki
    s1: jax.Array  # sum_k w_k psi_ki x_k
    s2: jax.Array | None  # sum_k w_k psi_ki x_k^2 (diag/spherical) or x_k x_k^T (full)


def _raw_block(student: Mixture, x: jax.Array, w: jax.Array, missing: bool = False) -> Raw:
    t = student.cov_type
    lw = student.log_weights - jax.scipy.special.logsumexp(student.log_weights)
    if missing:
        x0, o = C.observed(x)
        logits = t.logits_observed(x0, o, student.means, lw, student.cov_params)
    else:
        logits = t.logits(x, student.means, lw, student.cov_params)  # (b, n)
    # one exponential per entry: the log-likelihood and the responsibilities share it, and
    # it is the expression Mixture.log_prob reads (the in-memory and chunked fits agree)
    ll, resp = C.log_posterior(logits)
    wr = resp * w[:, None]  # w_k psi_ki
    # zero-weight rows may hold anything finite; keep them out of the loss
    loss = jnp.sum(jnp.where(w > 0, w * ll, 0.0))
    mass = jnp.sum(wr, axis=0)
    if missing:
        s1, s2 = t.estep_moments_observed(wr, x0, o, logits, student.means, student.cov_params)
    else:
        s1, s2 = t.estep_moments(wr, x, logits.feats)
    return Raw(loss, mass, s1, s2)


def _add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def blocked_sum(fn, X: jax.Array, w: jax.Array, block: int):
    """``sum_b fn(X_b, w_b)`` over row blocks of ``block`` rows (a pytree of sums), one
    block at a time inside a ``lax.scan``: memory is that of one block's ``fn``."""
    n_rows = X.shape[0]
    n_full = n_rows // block
    if n_full <= 1:
        return fn(X, w)

    def body(acc, i):
        xb = jax.lax.dynamic_slice_in_dim(X, i * block, block)
        wb = jax.lax.dynamic_slice_in_dim(w, i * block, block)
        return _add(acc, fn(xb, wb)), None

    acc, _ = jax.lax.scan(body, fn(X[:block], w[:block]), jnp.arange(1, n_full))
    if n_full * block < n_rows:
        acc = _add(acc, fn(X[n_full * block :], w[n_full * block :]))
    return acc


@compiled_when_eager(static_argnames=("block", "missing"))
def raw_moments(
    student: Mixture, X: jax.Array, w: jax.Array, *, block: int | None = None, missing: bool = False
) -> Raw:
    """Weighted sums over the rows of ``X`` (N, d) with weights ``w`` (N,), in row blocks
    (``missing``: NaN entries are missing, see :func:`data_statistics`)."""
    n_rows = X.shape[0]
    if block is None:
        block = block_rows(n_rows, student.n_components, student.dim, student.covariance_type, missing)
    return blocked_sum(lambda xb, wb: _raw_block(student, xb, wb, missing), X, w, block)


@compiled_when_eager(static_argnames=("missing",))
def loglik_sum(student: Mixture, X: jax.Array, w: jax.Array, *, missing: bool = False) -> jax.Array:
    """``sum_k w_k log p(x_k)`` over the rows of ``X`` (N, d) with weights ``w`` (N,), in the
    row blocks of :func:`raw_moments` (its ``loss`` alone: a smaller program; rows of zero
    weight may hold anything finite)."""
    block = block_rows(X.shape[0], student.n_components, student.dim, student.covariance_type, missing)

    def one(xb, wb):
        return jnp.sum(jnp.where(wb > 0, wb * student.log_prob(xb, missing=missing), 0.0))

    return blocked_sum(one, X, w, block)


@compiled_when_eager
def centred(student: Mixture, raw: Raw, total: jax.Array) -> Stats:
    """:class:`Stats` (normalised by the total weight) from the raw weighted sums."""
    mu = student.means
    mass = raw.mass / total
    s1 = raw.s1 / total
    shift = s1 - mass[:, None] * mu
    if not student.cov_type.learned:
        return Stats(-raw.loss / total, mass, shift, None)
    if raw.s2 is None:
        raise ValueError(f"{student.covariance_type} statistics need second moments; these sums have none")
    return Stats(-raw.loss / total, mass, shift, student.cov_type.scatter(raw.s2 / total, s1, mass, mu))


@compiled_when_eager(static_argnames=("block", "missing"))
def data_statistics(
    student: Mixture, X: jax.Array, w: jax.Array, *, block: int | None = None, missing: bool = False
) -> Stats:
    """E-step statistics of ``student`` on data ``X`` (N, d) with sample weights ``w`` (N,).

    ``missing=True``: NaN entries of ``X`` are missing at random. The loss is the observed
    data's (each row's marginal over its observed features), and the moments fill each gap
    with its conditional expectation given the row's observed entries and the component
    (the second moments with the conditional covariance): EM on them is exact EM for the
    observed data, and ``shift`` is still ``Sigma_i`` times minus the gradient in ``mu_i``."""
    return centred(student, raw_moments(student, X, w, block=block, missing=missing), jnp.sum(w))


@compiled_when_eager
def from_gradient(student: Mixture, loss: jax.Array, grads: Mixture) -> Stats:
    """Identity covariances: the statistics follow from the loss gradient exactly (kl and
    nll; see :mod:`overgmm.problem`): ``E[psi_i] = pi_i - dL/da_i``, ``E[psi_i (x - mu_i)] = -dL/dmu_i``."""
    mass = jnp.exp(student.log_weights) - grads.log_weights
    return Stats(loss, mass, -grads.means, None)


def gradient_from(student: Mixture, stats: Stats) -> Mixture:
    """Identity covariances: the loss gradient (a :class:`Mixture`-shaped pytree) from the
    statistics, :func:`from_gradient` inverted: ``dL/da_i = pi_i - E[psi_i]``,
    ``dL/dmu_i = -E[psi_i (x - mu_i)]``."""
    return student.replace(means=-stats.shift, log_weights=jnp.exp(student.log_weights) - stats.mass)
