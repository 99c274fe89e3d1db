"""A :class:`Problem` binds an objective to its inputs (teacher or data, backend, t).

It is what algorithms optimise: ``problem.loss(student, key)`` and
``problem.value_and_grad(student, key)``. The gradient is a :class:`Mixture`-shaped
pytree: ``grads.means`` (n, d) and ``grads.log_weights`` (n,), the latter the
derivative along the simplex (softmax parametrisation), so that for ``kl`` and
``nll`` the EM statistics follow from it exactly:

    E[psi_i]               = pi_i - dL/da_i
    E[psi_i (x - mu_i)]    = -dL/dmu_i

(with the control-variate KL these are the control-variate estimates). For learned
covariances (data problems only) :meth:`Problem.statistics` computes the E-step directly,
in row blocks (:mod:`overgmm.statistics`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from overgmm import _validation as v
from overgmm.expectations import Backend, MonteCarlo, Quadrature, span_rank
from overgmm.mixture import Mixture
from overgmm.objectives import KL_FORMS, denoising_score_matching, kl, kl_em_statistics, nll, score_matching
from overgmm.statistics import Stats, data_statistics, from_gradient, gradient_from

OBJECTIVES = ("kl", "nll", "score_matching", "denoising_score_matching")


class Evaluation(NamedTuple):
    """What :meth:`Problem.measure` evaluated at a student: the loss, and the gradient
    (a :class:`Mixture`-shaped pytree) or the KL's EM statistics, whichever a step reads."""

    loss: jax.Array
    grads: Mixture | None
    stats: Stats | None


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Problem:
    """An objective with its inputs.

    Build with :meth:`population` (KL to a teacher), :meth:`from_data` (NLL of a
    sample), :meth:`score` (population score matching at noise level ``t``) or
    :meth:`denoising` (score matching on data, DDPM form).
    """

    objective: str
    teacher: Mixture | None = None
    data: jax.Array | None = None
    sample_weight: jax.Array | None = None
    t: float = 0.0
    backend: Backend | None = None
    form: str = "control-variate"
    n_noise: int = 1
    var_floor: jax.Array | None = None
    stats: Stats | None = None
    missing: bool = False
    # (student, Evaluation) made at that very student object (remember()); not a pytree
    # child: a flattened problem forgets it and evaluates again
    _memo: tuple | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self):
        v.check_choice(self.objective, OBJECTIVES, "objective")

    def tree_flatten(self):
        return (self.teacher, self.data, self.sample_weight, self.t, self.var_floor, self.stats), (
            self.objective,
            self.backend,
            self.form,
            self.n_noise,
            self.missing,
        )

    @classmethod
    def tree_unflatten(cls, aux, children):
        teacher, data, sw, t, floor, stats = children
        objective, backend, form, n_noise, missing = aux
        return cls(objective, teacher, data, sw, t, backend, form, n_noise, floor, stats, missing)

    # -- constructors -------------------------------------------------------
    @classmethod
    def population(cls, teacher: Mixture, *, backend: Backend | None = None, form: str = "control-variate") -> Problem:
        """``KL(teacher || student)`` with the given expectation backend."""
        if not isinstance(teacher, Mixture):
            raise TypeError(f"teacher must be overgmm.Mixture, got {type(teacher).__name__}")
        v.check_choice(form, KL_FORMS, "KL form")
        return cls("kl", teacher=teacher, backend=backend or Quadrature(), form=form)

    @classmethod
    def from_data(cls, X, *, sample_weight=None, var_floor=0.0, missing: bool = False) -> Problem:
        """Mean negative log-likelihood of ``X`` (N, d).

        Args:
          X: data, shape ``(N, d)``.
          sample_weight: non-negative weights ``(N,)`` (a weighted mean); default all ones.
          var_floor: the smallest variance a learned covariance may take, in the units of
            ``X``: a number or one per feature ``(d,)``. EM and the relaxed steps clamp
            spherical and diagonal variances at it and add it to the diagonal of a full
            covariance (scikit-learn's ``reg_covar``). Identity students ignore it.
          missing: NaN entries of ``X`` are missing at random: the loss is the observed
            data's NLL (each row's marginal over its observed features) and the E-step
            statistics those of exact EM on the observed data
            (:func:`~overgmm.statistics.data_statistics`). Infinities are still errors.
        """
        X = v.as_float_array(X, "X")
        v.check_ndim(X, 2, "X", "(n_samples, n_features)")
        if X.shape[0] < 1:
            raise ValueError("X has no samples")
        v.check_finite(X, "X", allow_nan=bool(missing))
        sw = None if sample_weight is None else v.check_sample_weight(sample_weight, X.shape[0])
        floor = v.as_float_array(var_floor, "var_floor")
        if floor.ndim == 0:
            concrete = v.is_concrete(floor)
            floor = jnp.asarray(np.full(X.shape[1:], float(floor))) if concrete else jnp.full(X.shape[1:], floor)
        if floor.shape != (X.shape[1],):
            raise ValueError(f"var_floor must be a number or have shape ({X.shape[1]},), got {tuple(floor.shape)}")
        v.check_finite(floor, "var_floor")
        if v.is_concrete(floor) and bool(np.any(np.asarray(floor) < 0)):
            raise ValueError("var_floor must be >= 0")
        return cls("nll", data=X, sample_weight=sw, var_floor=floor, missing=bool(missing))

    @classmethod
    def from_statistics(cls, stats: Stats, *, var_floor) -> Problem:
        """The NLL of data seen only through its E-step statistics at one student: what a
        streamed fit (:mod:`overgmm.streaming`) hands an algorithm for one step, the sums
        over the data's chunks already reduced.

        ``problem.statistics(s)`` returns ``stats`` whatever ``s`` is, so only methods that
        read the statistics once per step, at the state's student, may run on it
        (``Method.streamable``: EM, gradient EM with ``weights="fixed"|"em"``, and those
        wrapped by :func:`~overgmm.with_pruning`). ``var_floor``: ``(d,)`` as in
        :meth:`from_data`."""
        if not isinstance(stats, Stats):
            raise TypeError(f"stats must be overgmm.statistics.Stats, got {type(stats).__name__}")
        floor = jnp.asarray(var_floor, jnp.float64)
        if floor.ndim != 1:
            raise ValueError(f"var_floor must have shape (d,), got {tuple(floor.shape)}")
        return cls("nll", var_floor=floor, stats=stats)

    @classmethod
    def score(cls, teacher: Mixture, t: float = 0.0, *, backend: Backend | None = None) -> Problem:
        """Population score matching at noise level ``t`` against ``teacher``."""
        if not isinstance(teacher, Mixture):
            raise TypeError(f"teacher must be overgmm.Mixture, got {type(teacher).__name__}")
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t >= 0):
            raise ValueError(f"noise level t must be a finite number >= 0, got {t!r}")
        return cls("score_matching", teacher=teacher, t=float(t), backend=backend or Quadrature())

    @classmethod
    def denoising(cls, X0, t: float, *, n_noise: int = 1) -> Problem:
        """Denoising score matching on data ``X0`` (N, d) at noise level ``t > 0``, with
        ``n_noise`` fresh noise draws per row at each evaluation (from the run's key)."""
        X0 = v.as_float_array(X0, "X0")
        v.check_ndim(X0, 2, "X0", "(n_samples, n_features)")
        v.check_finite(X0, "X0")
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            raise ValueError(f"denoising score matching needs a noise level t > 0, got {t!r}")
        v.check_positive_int(n_noise, "n_noise")
        return cls("denoising_score_matching", data=X0, t=float(t), n_noise=n_noise)

    # -- evaluation ---------------------------------------------------------
    @property
    def deterministic(self) -> bool:
        """Whether an evaluation ignores its PRNG key (quadrature, common random numbers,
        data): then a value evaluated once at a student is the value at every later call."""
        if self.objective == "denoising_score_matching":
            return False
        return not (isinstance(self.backend, MonteCarlo) and self.backend.fresh)

    def measure(self, student: Mixture, key: jax.Array | None = None) -> tuple[jax.Array, jax.Array, Evaluation]:
        """``(L, dL/dmu (n, d), evaluation)`` at ``student``: what the driver records, and
        the evaluation a step that starts from ``student`` would repeat (pass it to
        :meth:`remember`). With the KL's tail nodes active the step reads the KL's own EM
        statistics, so they are what is evaluated: ``L`` is their loss and the gradient
        minus their shift, the tail-node gradient of :func:`~overgmm.kl` (the same
        numbers, to rounding). So too on data with identity covariances, whose statistics
        are one pass over the rows (``dL/dmu = -shift`` exactly there). Otherwise
        :meth:`value_and_grad`. With identity covariances the statistics also give the
        whole gradient (``dL/da_i = pi_i - E[psi_i]``), which :meth:`value_and_grad` returns
        at the remembered student."""
        if self._direct_statistics(student):
            st = self.statistics(student, key)
            return st.loss, -st.shift, Evaluation(st.loss, None, st)
        loss, g = self.value_and_grad(student, key)
        return loss, g.means, Evaluation(loss, g, None)

    def remember(self, student: Mixture, evaluation: Evaluation) -> Problem:
        """This problem with :meth:`measure`'s ``evaluation`` at ``student`` already known,
        for that very ``student`` object (compared by identity, at trace time): its
        :meth:`value_and_grad`, :meth:`loss` or :meth:`statistics` there return it instead
        of evaluating again. Any other student is evaluated as usual. A problem whose
        evaluations draw from the key (:attr:`deterministic` False) is returned unchanged."""
        return dataclasses.replace(self, _memo=(student, evaluation)) if self.deterministic else self

    def _remembered(self, student: Mixture) -> Evaluation | None:
        memo = self._memo
        return memo[1] if memo is not None and memo[0] is student else None

    def _direct_statistics(self, student: Mixture) -> bool:
        """Whether the EM statistics at ``student`` are evaluated as such, not from the
        loss gradient: on the KL's tail nodes, and on data with identity covariances (one
        blocked pass and one exponential per entry, and every mass to relative accuracy,
        where ``pi - dL/da`` cancels to zero for a component far from every row)."""
        data_identity = self.objective == "nll" and self.stats is None and not student.cov_type.learned
        return data_identity or self._tails(student)

    def _tails(self, student: Mixture) -> bool:
        """Whether :meth:`statistics` takes the KL's tail-node path at this student."""
        return (
            self.objective == "kl"
            and not student.cov_type.learned
            and self.form == "control-variate"
            and isinstance(self.backend, Quadrature)
            and self.backend.tails_active(student.n_components, student.dim)
        )

    @property
    def dim(self) -> int:
        if self.teacher is not None:
            return self.teacher.dim
        if self.data is not None:
            return self.data.shape[1]
        if self.var_floor is None:
            raise ValueError("the problem has neither a teacher nor data")
        return self.var_floor.shape[-1]

    @property
    def has_em_statistics(self) -> bool:
        """Whether E[psi] and E[psi (x - mu)] follow from the gradient (kl, nll)."""
        return self.objective in ("kl", "nll")

    def describe(self, student: Mixture | None = None) -> str:
        """Which objective and expectation backend produce the numbers."""
        if self.stats is not None:
            return "nll(streamed statistics)"
        if self.objective in ("nll", "denoising_score_matching"):
            n = self._data.shape[0]
            if self.objective == "nll":
                return f"nll(data, N={n})"
            return f"denoising_score_matching(data, N={n}, t={self.t}, n_noise={self.n_noise})"
        if isinstance(self.backend, MonteCarlo):
            return f"{self.objective}: {self.backend.describe()}"
        assert self.backend is not None and self.teacher is not None
        r = span_rank(self.teacher, student, self.backend)
        defensive = self.objective == "kl" and self.form == "control-variate"
        sizes = (self.teacher.n_components, student.n_components if student is not None else 0)
        return f"{self.objective}: {self.backend.describe(r, defensive, sizes)}"

    @property
    def _data(self) -> jax.Array:
        if self.data is None:
            raise ValueError(f"the {self.objective} problem holds no data")
        return self.data

    @property
    def _teacher(self) -> Mixture:
        if self.teacher is None:
            raise ValueError(f"the {self.objective} problem has no teacher")
        return self.teacher

    def loss(self, student: Mixture, key: jax.Array | None = None) -> jax.Array:
        """The objective at ``student``, a float64 scalar."""
        if self.stats is not None:
            return self.stats.loss
        if (known := self._remembered(student)) is not None:
            return known.loss
        if self.objective == "kl":
            return kl(self._teacher, student, backend=self.backend, key=key, form=self.form)
        if self.objective == "nll":
            return nll(student, self._data, sample_weight=self.sample_weight, missing=self.missing)
        if self.objective == "denoising_score_matching":
            if key is None:
                raise ValueError("denoising score matching draws noise: pass a PRNG key")
            return denoising_score_matching(student, self._data, self.t, key=key, n_noise=self.n_noise)
        return score_matching(self._teacher, student, self.t, backend=self.backend, key=key)

    def value_and_grad(self, student: Mixture, key: jax.Array | None = None) -> tuple[jax.Array, Mixture]:
        """``(L, dL/dstudent)``; the gradient is a :class:`Mixture`-shaped pytree."""
        if self.stats is not None:
            raise ValueError("a problem from streamed statistics has no gradient; use a streamable method (EM)")
        if (known := self._remembered(student)) is not None:
            if known.grads is not None:
                return known.loss, known.grads
            if known.stats is not None and not student.cov_type.learned:
                return known.loss, gradient_from(student, known.stats)
        return jax.value_and_grad(lambda s: self.loss(s, key))(student)

    def statistics(self, student: Mixture, key: jax.Array | None = None) -> Stats:
        """E-step statistics (:class:`~overgmm.statistics.Stats`) at ``student``.

        The KL (identity covariances): from the loss gradient, exactly; with tail nodes
        active (:mod:`overgmm.tails`) components of exponentially small mass get theirs
        from their own nodes (:func:`~overgmm.objectives.kl_em_statistics`), to relative
        accuracy. Data (nll, every covariance type): computed directly over row blocks,
        every mass to relative accuracy.
        """
        if not self.has_em_statistics:
            raise ValueError(f"EM statistics are available for the kl and nll objectives, not {self.objective!r}")
        if self.stats is not None:
            return self.stats
        if (known := self._remembered(student)) is not None and known.stats is not None:
            return known.stats
        if self._tails(student):
            # exponentially small masses to relative accuracy (pi - dL/da cancels for them)
            loss, mass, moment = kl_em_statistics(self._teacher, student, backend=self.backend, key=key)
            return Stats(loss, mass, moment, None)
        if self.objective == "kl" and not student.cov_type.learned:
            loss, g = self.value_and_grad(student, key)
            return from_gradient(student, loss, g)
        data = self._data
        w = jnp.ones(data.shape[:1], data.dtype) if self.sample_weight is None else self.sample_weight
        return data_statistics(student, data, w, missing=self.missing)

    @property
    def floor(self) -> jax.Array:
        """The variance floor ``(d,)`` (zeros when none was given)."""
        return jnp.zeros((self.dim,)) if self.var_floor is None else self.var_floor

    def check_student(self, student: Mixture) -> None:
        if not isinstance(student, Mixture):
            raise TypeError(f"student must be overgmm.Mixture, got {type(student).__name__}")
        if student.dim != self.dim:
            raise ValueError(f"student has dimension {student.dim} but the problem has dimension {self.dim}")
        if student.cov_type.learned and self.teacher is not None:
            raise ValueError(
                f"the population objective {self.objective!r} (quadrature on the span of the means) supports "
                f"identity-covariance students only, got covariance_type={student.covariance_type!r}; "
                "learned covariances need data: Problem.from_data(X) or Problem.denoising(X0, t)"
            )
