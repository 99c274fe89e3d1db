"""Input checks that give clear errors and stay silent under JAX tracing.

Shape checks always run (shapes are static even under ``jit``); value checks
(finiteness, the simplex) run only when the value is concrete, so that
``jax.grad(lambda m: kl(teacher, Mixture(m)))`` keeps working.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from overgmm._errors import FIT_ADVICE, BadValue

SIMPLEX_TOL = 1e-6


class NonFiniteValue(BadValue):
    """A non-finite value in data: ``row`` and ``column`` index the whole data (from 0)."""

    def __init__(self, where: str, row: int, column: int, value: float, advice: str = FIT_ADVICE):
        super().__init__(where, advice)
        self.row, self.column, self.value = row, column, value

    def __reduce__(self):  # raised on Dask workers: it must survive pickling
        return type(self), (self.where, self.row, self.column, self.value, self.advice)


def is_concrete(x) -> bool:
    """True when ``x`` holds values (not a JAX tracer)."""
    return not isinstance(x, jax.core.Tracer)


def as_float_array(x, name: str) -> jax.Array:
    """Convert ``x`` to a float64 JAX array, or raise a ``TypeError`` naming it."""
    if isinstance(x, jax.core.Tracer):
        return x.astype(jnp.float64) if x.dtype != jnp.float64 else x
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of real numbers, got {type(x).__name__}") from err
    return jnp.asarray(arr, dtype=jnp.float64)


def check_ndim(x: jax.Array, ndim: int, name: str, shape_doc: str) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_doc}, got shape {tuple(x.shape)}")


def check_finite(x: jax.Array, name: str, *, allow_nan: bool = False) -> None:
    """Raise when concrete ``x`` has non-finite values (``allow_nan``: NaN marks a missing
    value and is allowed; infinities are not)."""
    if not is_concrete(x):
        return
    arr = np.asarray(x)
    if allow_nan:
        bad = int(np.sum(np.isinf(arr)))
        if bad:
            raise ValueError(f"{name} contains {bad} infinite value(s); only NaN marks a missing value")
        return
    if not bool(np.all(np.isfinite(arr))):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")


def check_simplex(w: jax.Array, name: str = "weights") -> None:
    if not is_concrete(w):
        return
    arr = np.asarray(w)
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative, got min {arr.min():.3g}")
    total = float(arr.sum())
    if abs(total - 1.0) > SIMPLEX_TOL:
        raise ValueError(f"{name} must sum to 1 (lie on the simplex), got sum {total:.12g}")


def check_choice(value, choices, name: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(choices)}")


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_sample_weight(sample_weight, n_samples: int) -> jax.Array:
    """A float64 array of shape (n_samples,), finite, non-negative, positive sum."""
    sw = as_float_array(sample_weight, "sample_weight")
    if sw.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {tuple(sw.shape)}")
    check_finite(sw, "sample_weight")
    if is_concrete(sw) and (bool(np.any(np.asarray(sw) < 0)) or float(np.sum(np.asarray(sw))) <= 0):
        raise ValueError("sample_weight must be non-negative with a positive sum")
    return sw


def check_key(key, name: str = "key"):
    """``key`` unless it is a plain integer (a seed passed where a PRNG key belongs, which
    JAX reports from deep inside ``jax.random``)."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        raise TypeError(f"{name} must be a PRNG key such as jax.random.key({key}), got the integer {key}")
    return key
