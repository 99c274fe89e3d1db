"""What every covariance type holds (:class:`Covariance`), the shared parts of the
diagonal types (:class:`_Axes`) and of the Cholesky-parametrised ones (:class:`_Cholesky`),
and the precision-factor parametrisation itself."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

LOG_2PI = math.log(2.0 * math.pi)


class Logits(NamedTuple):
    """A type's component log-densities of rows ``x`` (..., d), the one expression that
    the log-likelihood, the responsibilities and the E-step all read.

    ``values + offset[..., None]`` is ``lw_i + log N(x; mu_i, Sigma_i)``, shape (..., n).
    ``offset`` (...,) is the part every component shares (identity: ``-|x|^2/2 - d/2 log 2 pi``;
    None for the others), added after the log-sum-exp so that it cancels exactly in the
    responsibilities even for far-away rows. ``feats`` is what the E-step reads its
    moments from (None: the rows themselves)."""

    values: jax.Array
    offset: jax.Array | None = None
    feats: jax.Array | None = None


def observed(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(x0, o)`` for rows ``x`` (..., d) whose NaN entries are missing: ``o`` is 1.0 where
    an entry is observed and 0.0 where it is missing, ``x0`` is ``x`` with 0 in the gaps."""
    o = ~jnp.isnan(x)
    return jnp.where(o, x, 0.0), o.astype(x.dtype)


def _row(a: jax.Array, j) -> jax.Array:
    """``a[..., j, :]`` for a traced ``j``."""
    return jax.lax.dynamic_index_in_dim(a, j, axis=-2, keepdims=False)


def _entry(a: jax.Array, j) -> jax.Array:
    """``a[..., j]`` for a traced ``j``."""
    return jax.lax.dynamic_index_in_dim(a, j, axis=-1, keepdims=False)


def observed_precision(prec: jax.Array, o: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each row's observed marginal from the precisions ``prec`` (m, d, d) and the observed
    mask ``o`` (b, d) (1.0 observed, 0.0 missing): ``Sigma_oo^{-1}`` embedded in d x d with
    zeros in the gaps' rows and columns (b, m, d, d), and ``log det Sigma_oo - log det
    Sigma`` (b, m). One Schur complement per gap, ``P <- P - P e_j e_j^T P / P_jj`` (the
    precision of the marginal without feature j; ``det Sigma_{-j} = P_jj det Sigma``): d^2
    work per gap, row and component. The loop runs over gap slots (each row's first gap,
    second, ...) and skips the slots no row of the block reaches: a block with at most q gaps
    per row does q of the d steps. Plain array operations (no LAPACK custom call: batched in
    compiled loops, XLA's CPU runtime was seen to hang on them), differentiable."""
    b, d = o.shape
    count = jnp.sum(1.0 - o, axis=-1)  # gaps per row (b,)
    order = jnp.argsort(o, axis=-1, stable=True)  # each row's gaps first
    most = jnp.max(count)
    p0 = jnp.broadcast_to(prec, (b,) + prec.shape)

    def downdate(s, carry):
        p, corr = carry
        live = (s < count)[:, None]  # (b, 1): the row has an s-th gap
        j = jnp.broadcast_to(order[:, s][:, None, None, None], p.shape[:-1] + (1,))
        col = jnp.take_along_axis(p, j, axis=-1)[..., 0]  # p[..., :, j] (b, m, d)
        pjj = jnp.take_along_axis(col, j[..., 0, :], axis=-1)[..., 0]  # (b, m)
        pjj = jnp.where(live, pjj, 1.0)
        col = jnp.where(live[..., None], col, 0.0)
        return p - col[..., :, None] * (col / pjj[..., None])[..., None, :], corr + jnp.log(pjj)

    def slot(s, carry):
        return jax.lax.cond(s < most, downdate, lambda _, c: c, s, carry)

    p, corr = jax.lax.fori_loop(0, d, slot, (p0, jnp.zeros(p0.shape[:2], p0.dtype)))
    return p * (o[:, None, :, None] * o[:, None, None, :]), corr


def apply_observed(p_o: jax.Array, r: jax.Array) -> jax.Array:
    """``Sigma_oo^{-1} r`` (b, n, d) for :func:`observed_precision`'s ``p_o`` (b, n or 1, d,
    d) and vectors ``r`` (b, n, d) (a shared ``p_o`` is not copied per component)."""
    if p_o.shape[1] == 1:
        return jnp.einsum("bde,bne->bnd", p_o[:, 0], r)
    return jnp.einsum("bnde,bne->bnd", p_o, r)


def inverse_lower(low: jax.Array) -> jax.Array:
    """``low^{-1}`` (..., d, d) for lower-triangular ``low`` (..., d, d), row by row
    (``row_j = (e_j - sum_k low_jk row_k) / low_jj``) in plain array operations (see
    :func:`cholesky`). Solving for the identity's d columns at once, with a whole-array
    select per step, took 14x longer (29 against 2.1 ms at 128 rows x 25 components in
    d = 13: most of a missing-value E-step)."""
    d = low.shape[-1]
    eye = jnp.eye(d, dtype=low.dtype)

    def step(j, x):
        lj = _row(low, j)
        xj = (_row(eye, j) - jnp.einsum("...k,...ki->...i", lj, x)) / _entry(lj, j)[..., None]
        return jax.lax.dynamic_update_index_in_dim(x, xj, j, axis=-2)

    return jax.lax.fori_loop(0, d, step, jnp.zeros_like(low))


def log_posterior(logits: Logits) -> tuple[jax.Array, jax.Array]:
    """``(log p(x), psi(x))``, shapes (...,) and (..., n): the mixture's log-density and the
    responsibilities, from one exponential per entry (log domain; 0 for a pruned component,
    ``-inf`` log-density only where every component is ``-inf``)."""
    top = jax.lax.stop_gradient(jnp.max(logits.values, axis=-1, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.exp(logits.values - top)
    total = jnp.sum(e, axis=-1, keepdims=True)
    ll = (top + jnp.log(total))[..., 0]
    if logits.offset is not None:
        ll = ll + logits.offset
    return ll, e * (1.0 / total)


def precision_params(cov: jax.Array) -> jax.Array:
    """``cov_params`` (..., d, d) of full covariances ``cov`` (..., d, d): the upper
    Cholesky factor ``U`` of the precision (``Sigma^{-1} = U U^T``) with a log diagonal."""
    d = cov.shape[-1]
    c = jnp.linalg.cholesky(cov)
    eye = jnp.broadcast_to(jnp.eye(d, dtype=cov.dtype), cov.shape)
    u = jnp.swapaxes(jax.scipy.linalg.solve_triangular(c, eye, lower=True), -1, -2)
    diag = jnp.diagonal(u, axis1=-2, axis2=-1)
    return jnp.triu(u, 1) + jnp.einsum("...i,ij->...ij", jnp.log(diag), jnp.eye(d, dtype=cov.dtype))


def precision_cholesky(cov_params: jax.Array) -> jax.Array:
    """``U`` (..., d, d), upper triangular with positive diagonal, from ``cov_params``."""
    d = cov_params.shape[-1]
    diag = jnp.exp(jnp.diagonal(cov_params, axis1=-2, axis2=-1))
    return jnp.triu(cov_params, 1) + jnp.einsum("...i,ij->...ij", diag, jnp.eye(d, dtype=cov_params.dtype))


class Covariance:
    """The rules of one covariance type (a stateless singleton; see the module docstring)."""

    name: str = ""
    learned: bool = True
    shape_doc: str = ""
    public: str = ""  # the estimator's name for the type (identity is "fixed" there)
    common_scale: bool = False  # the estimator standardizes every feature by one scale

    # -- parameters ---------------------------------------------------------
    def natural_shape(self, n: int, d: int) -> tuple[int, ...]:
        raise NotImplementedError

    def zeros(self, lead: tuple[int, ...], d: int) -> jax.Array | None:
        """``cov_params`` of unit covariances for components of leading shape ``lead``."""
        return jnp.zeros(lead + self.natural_shape(1, d)[1:])

    def to_params(self, cov: jax.Array) -> jax.Array | None:
        """Unconstrained parameters from covariances in their natural shape."""
        return jnp.log(cov)

    def natural(self, params, means: jax.Array) -> jax.Array:
        """Covariances in their natural shape."""
        return jnp.exp(params)

    def variances(self, params, means: jax.Array) -> jax.Array:
        """Per-axis variances, shape of ``means``: the diagonal of each ``Sigma_i``."""
        raise NotImplementedError

    def matrices(self, params, means: jax.Array) -> jax.Array:
        """Covariance matrices ``(..., n, d, d)``."""
        d = means.shape[-1]
        return self.variances(params, means)[..., :, None] * jnp.eye(d, dtype=means.dtype)

    def check(self, cov: np.ndarray, n: int) -> None:
        """Values of concrete covariances in the natural shape (positive variances)."""
        if np.any(cov <= 0):
            i = int(np.flatnonzero(cov.reshape(n, -1).min(axis=1) <= 0)[0])
            raise ValueError(f"{self.name} covariances must be positive; component {i} has a variance <= 0")

    def n_parameters(self, d: int) -> int:
        """Free covariance parameters of one component."""
        raise NotImplementedError

    def shared_parameters(self, d: int) -> int:
        """Free covariance parameters shared by all components (tied)."""
        return 0

    def select(self, cov, idx):
        """The covariances (natural shape, or precision factors) of components ``idx``."""
        return cov[idx]

    def merge_params(self, keeper: jax.Array, merged, params):
        """``cov_params`` after a merge round: the merged components' where ``keeper`` (n,)."""
        sel = keeper.reshape(keeper.shape + (1,) * (params.ndim - keeper.ndim))
        return jnp.where(sel, merged, params)

    def widened(self, params, c: jax.Array, delta: jax.Array):
        """A shared covariance's ``cov_params`` after merges widen it by ``sum_p c_p delta_p
        delta_p^T`` (tied only: :meth:`merge_params` serves the types with one covariance
        per component)."""
        raise NotImplementedError(f"{self.name} has no shared covariance to widen")

    def precision_factor(self, params) -> jax.Array | None:
        """The precision's upper Cholesky factor ``U`` (full only; None otherwise)."""
        return None

    def in_units(self, cov, scale: np.ndarray) -> np.ndarray:
        """Covariances (natural shape, standardized units) in the units of the data, whose
        features were divided by ``scale`` (d,) (NumPy; the estimator's ``covariances_``)."""
        return cov * scale**2

    def precisions_in_units(self, cov_units: np.ndarray, u, scale: np.ndarray) -> np.ndarray:
        """scikit-learn's ``precisions_cholesky_`` in the units of the data."""
        return 1.0 / np.sqrt(cov_units)

    def matrices_in_units(self, cov_units: np.ndarray, k: int, d: int) -> np.ndarray:
        """:meth:`in_units`'s covariances as matrices ``(k, d, d)`` (NumPy)."""
        return np.asarray(cov_units)[:, :, None] * np.eye(d)

    def blend_identity(self, cov: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
        """``a Sigma + b I`` in the natural shape (the Ornstein-Uhlenbeck push of a covariance)."""
        return a * cov + b

    def from_data(self, centred: jax.Array, w: jax.Array, lead: tuple[int, ...], floor: jax.Array) -> jax.Array:
        """Every component's starting covariance (natural shape, leading shape ``lead``):
        the data's weighted covariance, ``centred`` (N, d) about the weighted mean with
        weights ``w`` (N,) summing to 1, floored."""
        raise NotImplementedError

    # -- densities ----------------------------------------------------------
    def logits(self, x: jax.Array, means: jax.Array, lw: jax.Array, params) -> Logits:
        """The component log-densities of rows ``x`` (..., d) as :class:`Logits`."""
        raise NotImplementedError

    def logits_observed(self, x0: jax.Array, o: jax.Array, means: jax.Array, lw: jax.Array, params) -> Logits:
        """:meth:`logits` of rows with missing entries (:func:`observed`: ``x0`` with 0 in
        the gaps, ``o`` the 0/1 mask), each row's density its marginal over its observed
        features (a row with nothing observed has log-density 0 in every component)."""
        raise NotImplementedError

    def estep_moments_observed(
        self, wr: jax.Array, x0: jax.Array, o: jax.Array, logits: Logits, means: jax.Array, params
    ) -> tuple[jax.Array, jax.Array | None]:
        """:meth:`estep_moments` of rows with missing entries: each gap filled with its
        conditional expectation given the row's observed entries and the component (and the
        second moment with the conditional covariance added): the exact E-step of EM on
        the observed data (Ghahramani and Jordan 1994)."""
        raise NotImplementedError

    def block_width_observed(self, n: int, d: int) -> int:
        """:meth:`block_width` of the E-step on rows with missing entries."""
        return self.block_width(n, d)

    def component_log_prob(self, x: jax.Array, means: jax.Array, lw: jax.Array, params) -> jax.Array:
        """``lw_i + log N(x; mu_i, Sigma_i)``, shape ``(..., n)`` for ``x`` (..., d)."""
        lg = self.logits(x, means, lw, params)
        return lg.values if lg.offset is None else lg.values + lg.offset[..., None]

    def mahalanobis_sq(self, params, means: jax.Array, shift: jax.Array) -> jax.Array:
        """``shift_i^T Sigma_i^{-1} shift_i``, shape (n,)."""
        return jnp.sum(shift**2 / self.variances(params, means), axis=-1)

    def noise(self, params, means: jax.Array, comp: jax.Array, z: jax.Array) -> jax.Array:
        """``Sigma_c^{1/2} z`` for standard normal ``z`` (N, d) of components ``comp`` (N,)."""
        return jnp.sqrt(self.variances(params, means)[comp]) * z

    # -- E-step and M-step --------------------------------------------------
    def estep_moments(self, wr: jax.Array, x: jax.Array, feats) -> tuple[jax.Array, jax.Array | None]:
        """First and second raw moment sums ``(s1, s2)`` of rows ``x`` with weighted
        responsibilities ``wr`` (b, n): ``s2`` is ``sum wr x^2`` (n, d) or ``sum wr x x^T``
        (n, d, d), None for identity."""
        raise NotImplementedError

    def block_width(self, n: int, d: int) -> int:
        """The widest per-row temporary of the blocked E-step, in numbers per row."""
        return n

    def scatter(self, s2: jax.Array, s1: jax.Array, mass: jax.Array, mu: jax.Array) -> jax.Array:
        """The scatter about the mean (natural shape) from the normalised raw sums ``s2``
        (second moments), ``s1`` (first) and the masses."""
        raise NotImplementedError

    def per_component(self, mask: jax.Array, like: jax.Array) -> jax.Array:
        """``mask`` (n,) broadcast against covariances ``like`` in the natural shape."""
        return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))

    def implied_scatter(self, cov: jax.Array, pi: jax.Array) -> jax.Array:
        """The scatter statistics a mixture implies about its own means, ``pi_i Sigma_i``
        (stepwise EM blends them with a batch's)."""
        return pi.reshape((-1,) + (1,) * (cov.ndim - 1)) * cov

    def em_target(self, scatter: jax.Array, n: jax.Array, delta: jax.Array) -> jax.Array:
        """EM's covariance about the new mean (natural shape, before the floor): the scatter
        per unit mass less the mean's move ``delta`` (n, d)."""
        raise NotImplementedError

    def floored(self, cov: jax.Array, floor: jax.Array) -> jax.Array:
        """The variance floor applied to an M-step's covariances."""
        raise NotImplementedError

    def relaxed(self, cov: jax.Array, target: jax.Array, f: jax.Array, floor: jax.Array) -> jax.Array:
        """A fraction ``f`` (per component, broadcast) of the way from ``cov`` to ``target``, floored."""
        return self.floored((1.0 - f) * cov + f * target, floor)

    # -- merging ------------------------------------------------------------
    def second_moments(self, cov: jax.Array, mu: jax.Array) -> jax.Array:
        """``Sigma_i + mu_i mu_i^T`` in the natural shape (spherical: the mean over axes)."""
        raise NotImplementedError

    def from_second(self, second: jax.Array, mu: jax.Array) -> jax.Array:
        """The covariance about ``mu`` (d,) from one component's second moment."""
        raise NotImplementedError

    def merge_floor(self, cov: jax.Array, floor: jax.Array) -> jax.Array:
        """The floor applied to moment-matched merges."""
        return self.floored(cov, floor)

    def merged_params(self, params, cov: jax.Array, floor: jax.Array):
        """``cov_params`` of moment-matched merges with covariances ``cov`` (one per pair)."""
        return self.to_params(self.merge_floor(cov, floor))

    def log_det(self, cov: jax.Array, d: int) -> jax.Array:
        """``log |Sigma|`` of covariances in the natural shape (leading axes batched)."""
        raise NotImplementedError

    def component_log_dets(self, params, means: jax.Array) -> jax.Array:
        """``log |Sigma_i|`` of every component, shape (n,)."""
        return self.log_det(self.natural(params, means), means.shape[-1])


class _Axes(Covariance):
    """Spherical and diag: the Mahalanobis term is one GEMM on the features ``F = [x^2, x]``
    (..., 2d), ``F @ [prec, -2 mu prec]^T + sum mu^2 prec`` (clamped at 0 against
    cancellation), and the E-step reads both moments from ``F`` with a second GEMM."""

    def log_variances(self, params, means: jax.Array) -> jax.Array:
        """``log s`` per component and axis, shape (n, d)."""
        raise NotImplementedError

    def logits(self, x, means, lw, params):
        d = means.shape[-1]
        log_var = self.log_variances(params, means)
        prec = jnp.exp(-log_var)  # (n, d)
        feats = jnp.concatenate([x * x, x], axis=-1)
        weights = jnp.concatenate([prec, -2.0 * means * prec], axis=-1)
        quad = feats @ weights.T + jnp.sum(means**2 * prec, axis=-1)
        logdet = jnp.sum(log_var, axis=-1)
        return Logits(lw - 0.5 * (d * LOG_2PI + logdet + jnp.maximum(quad, 0.0)), None, feats)

    def estep_moments(self, wr, x, feats):
        d = x.shape[-1]
        mom = wr.T @ feats  # (n, 2d): second and first moments in one GEMM
        return mom[:, d:], mom[:, :d]

    def logits_observed(self, x0, o, means, lw, params):
        # the same GEMM over the observed entries only: F = [o x^2, o x, o]
        log_var = self.log_variances(params, means)
        prec = jnp.exp(-log_var)  # (n, d)
        feats = jnp.concatenate([x0 * x0, x0, o], axis=-1)
        weights = jnp.concatenate([prec, -2.0 * means * prec, means**2 * prec], axis=-1)
        quad = feats @ weights.T
        logdet = o @ log_var.T
        seen = jnp.sum(o, axis=-1, keepdims=True)
        return Logits(lw - 0.5 * (seen * LOG_2PI + logdet + jnp.maximum(quad, 0.0)), None, feats)

    def estep_moments_observed(self, wr, x0, o, logits, means, params):
        d = x0.shape[-1]
        mom = wr.T @ logits.feats  # (n, 3d): sums of wr o x^2, wr o x, wr o
        gaps = jnp.sum(wr, axis=0)[:, None] - mom[:, 2 * d :]  # sum of wr (1 - o)
        # a gap's conditional moments are the component's own: mu and mu^2 + s
        s1 = mom[:, d : 2 * d] + means * gaps
        s2 = mom[:, :d] + (means**2 + self.variances(params, means)) * gaps
        return s1, s2


class _Cholesky(Covariance):
    """Full and tied: parameters are precision Cholesky factors (module docstring)."""

    def to_params(self, cov):
        return precision_params(cov)

    def precision_factor(self, params):
        return precision_cholesky(params)

    def in_units(self, cov, scale):
        return cov * scale[:, None] * scale[None, :]

    def precisions_in_units(self, cov_units, u, scale):
        # Sigma_X = S Sigma S, so Sigma_X^{-1} = (S^{-1} U)(S^{-1} U)^T with S^{-1} U upper triangular
        return u / scale[:, None]

    def _inverse(self, params, d):
        u = precision_cholesky(params)
        eye = jnp.broadcast_to(jnp.eye(d, dtype=u.dtype), u.shape)
        uinv = jax.scipy.linalg.solve_triangular(u, eye, lower=False)  # U^{-1}
        return jnp.swapaxes(uinv, -1, -2) @ uinv  # U^{-T} U^{-1} = (U U^T)^{-1}

    def _check_matrix(self, cov, what):
        if not np.allclose(cov, np.swapaxes(cov, -1, -2), rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(cov).max()))):
            raise ValueError(f"{self.name} covariances must be symmetric matrices")
        try:
            np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError(f"{self.name} covariance of {what} is not positive definite") from None

    def floored(self, cov, floor):
        return cov + jnp.diag(floor)

    def relaxed(self, cov, target, f, floor):
        # the convex combination is PD; the floor is added only once the EM target is reached
        return (1.0 - f) * cov + f * target + f * jnp.diag(floor)

    def blend_identity(self, cov, a, b):
        return a * cov + b * jnp.eye(cov.shape[-1])

    def log_det(self, cov, d):
        return jnp.linalg.slogdet(cov)[1]

    def second_moments(self, cov, mu):
        return cov + mu[:, :, None] * mu[:, None, :]

    def block_width_observed(self, n, d):
        return n * d * d  # the observed block's precision per row and component

    def _plain_inverse(self, params, d: int) -> jax.Array:
        """:meth:`_inverse` (the covariances from the precision factors) by plain
        triangular solves: no LAPACK custom call in the missing-value programs (see
        :func:`cholesky`; two batched ``trsm`` calls run at once by XLA's CPU runtime were
        seen to deadlock its 2-thread pool, each waiting for work the other held)."""
        lower = jnp.swapaxes(precision_cholesky(params), -1, -2)  # U^T
        inv_u = jnp.swapaxes(inverse_lower(lower), -1, -2)  # U^{-1} = ((U^T)^{-1})^T
        return jnp.swapaxes(inv_u, -1, -2) @ inv_u  # U^{-T} U^{-1} = (U U^T)^{-1}

    def _own_matrices(self, params, means: jax.Array) -> jax.Array:
        """The covariance matrices of the M-step's conditional moments: (n, d, d) one per
        component, or (1, d, d) when all components share one (tied: one observed-block
        precision per row)."""
        return self._plain_inverse(params, means.shape[-1])

    def logits_observed(self, x0, o, means, lw, params):
        # per row (and component, unless shared), the precision of the observed marginal by
        # one Schur complement per gap (observed_precision): its quadratic form, and the
        # log-determinant as the full one's plus the pivots'
        d = means.shape[-1]
        u = precision_cholesky(params).reshape((-1, d, d))  # (n or 1, d, d)
        p_o, corr = observed_precision(u @ jnp.swapaxes(u, -1, -2), o)  # (b, n or 1, d, d)
        seen = jnp.sum(o, axis=-1, keepdims=True)
        logdet = corr - 2.0 * jnp.sum(jnp.log(jnp.diagonal(u, axis1=-2, axis2=-1)), axis=-1)  # log det Sigma_oo
        logdet = jnp.where(seen > 0, logdet, 0.0)  # nothing observed: exactly 0, not the rounding
        r = (x0[..., None, :] - means) * o[..., None, :]  # (b, n, d), 0 in the gaps
        alpha = apply_observed(p_o, r)  # Sigma_oo^{-1} (x - mu), 0 in the gaps
        quad = jnp.sum(r * alpha, axis=-1)
        return Logits(lw - 0.5 * (seen * LOG_2PI + logdet + quad), None, (p_o, r, alpha, logdet))

    def _moments_observed(self, wr, o, logits, means, params):
        """``(s1, S2)``: per component ``sum wr xhat`` (n, d) and ``sum wr (xhat xhat^T + C)``
        (n, d, d), ``xhat = mu + Sigma A (x - mu)`` and ``C = Sigma - Sigma A Sigma`` with
        ``A`` the observed block's precision, 0 in the gaps."""
        n, d = means.shape
        p_o, _, alpha, _ = logits.feats
        sigma = jnp.broadcast_to(self._own_matrices(params, means), (n, d, d))
        xhat = means + jnp.einsum("nde,bne->bnd", sigma, alpha)
        if p_o.shape[1] == 1:  # one precision per row, shared by the components
            w_a = jnp.einsum("bn,bde->nde", wr, p_o[:, 0])
        else:
            w_a = jnp.einsum("bn,bnde->nde", wr, p_o)
        s1 = jnp.einsum("bn,bnd->nd", wr, xhat)
        mass = jnp.sum(wr, axis=0)
        s2 = jnp.einsum("bn,bnd,bne->nde", wr, xhat, xhat) + mass[:, None, None] * sigma - sigma @ w_a @ sigma
        return s1, s2

    def from_second(self, second, mu):
        cov = second - mu[:, None] * mu[None, :]
        return 0.5 * (cov + cov.T)

    def merge_floor(self, cov, floor):
        # each merged component's covariance already holds the floor its M-step added, and
        # moment matching keeps it (adding it again inflated merge costs: a split cluster in
        # d = 10 cost 5e-3 nats/sample to merge, above the BIC price, and stayed split)
        return cov
