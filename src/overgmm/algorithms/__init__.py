"""Algorithms: each a static config (a :class:`Method`) with pure ``init(problem, student, key)``
and ``step(problem, state)``; the factories bind one to its problem (an :class:`Algorithm`)."""

from overgmm.algorithms.base import Algorithm, Method, State, bind
from overgmm.algorithms.em import EM, em, stepwise_em
from overgmm.algorithms.gradient_descent import GradientDescent, OptaxMethod, gradient_descent, optax_method
from overgmm.algorithms.gradient_em import GradientEM, gradient_em
from overgmm.algorithms.polyak import Polyak, polyak
from overgmm.algorithms.pruned import Pruned, with_pruning

__all__ = [
    "EM",
    "Algorithm",
    "GradientDescent",
    "GradientEM",
    "Method",
    "OptaxMethod",
    "Polyak",
    "Pruned",
    "State",
    "bind",
    "em",
    "gradient_descent",
    "gradient_em",
    "optax_method",
    "polyak",
    "stepwise_em",
    "with_pruning",
]
