"""Algorithms: each a named pair of pure functions ``init(student, key)`` and ``step(state)``."""

from overgmm.algorithms.base import Algorithm, State
from overgmm.algorithms.em import em
from overgmm.algorithms.gradient_descent import gradient_descent, optax_method
from overgmm.algorithms.gradient_em import gradient_em
from overgmm.algorithms.polyak import polyak

__all__ = ["Algorithm", "State", "em", "gradient_descent", "gradient_em", "optax_method", "polyak"]
