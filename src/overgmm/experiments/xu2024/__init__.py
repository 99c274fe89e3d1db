"""Experiments of Xu, Fazel, Du 2024 (``papers/001_*``; SPEC section 6): gradient EM on
an over-parameterized mixture learning a single Gaussian ``N(0, I_d)``.

* X1 (Fig. 1 left/middle): loss and parametric distance decay sublinearly, n = 2, 5, 10.
* X2 (Fig. 1 right): more even (fixed) mixing weights converge faster, n = 3.
* X3 (Fig. 2 left, Theorem 7): the gradient at the bad initial point falls exponentially
  in d, for the paper's plotted c = 2 and its theorem's c = 12; gradient EM stays trapped.
* X4 (Fig. 2 right): sample-based gradient EM, error after convergence ~ N^(-1/4).

Each experiment is a config (data), a ``run`` that writes tidy tables, ``claims`` read
from the tables and the config only, and a ``figure`` that reads only the tables.
"""

from __future__ import annotations

from overgmm.experiments.xu2024.x1_x2 import X1, X2
from overgmm.experiments.xu2024.x3_x4 import X3, X4, log_grad_norm_line, theorem7_positions, x4_flat

EXPERIMENTS: list = [X1, X2, X3, X4]

__all__ = ["EXPERIMENTS", "X1", "X2", "X3", "X4", "log_grad_norm_line", "theorem7_positions", "x4_flat"]
