"""Zhang, Xu, Zhou, Fazel, Du: over-parameterized score matching for a single Gaussian
(SPEC section 6, ``papers/002_*``).

* S1 (Fig. 1): n = 5, d = 3, mu* = 0, mu_i = (M, 0, 0) + 1e-7 z_i, gradient descent on the
  score-matching loss at t = 0 (Section 3 sets t = 0), learning rate 0.01, 20000 iterations:
  M = 4 all means converge, M = 6 one converges and the others diverge.
* S2 (Theorem 3.1): mu_1 = s e_1, mu_2 = -s e_1, the rest 0: a stationary point with nonzero
  loss (a local maximum along s), and what it is in the full parameter space (Hessian).
* S3 (Theorem 2.1): large noise t > log n + log M + 2: gradient descent converges at
  O(1/sqrt tau), like gradient EM.

Numerics. The S1 means stay on the e_1 axis up to the 1e-7 perturbation (measured, and
recorded in the tables), so the integrand varies on the scale 1/|mu_i - mu_j| only along
that axis: S1 uses ``Quadrature(rank=1)`` with a 401-node trapezoid rule on [-10, 10]
(spacing 0.05, fine enough for means up to about 10 apart). The 3-D default rule
(41 nodes per axis, spacing 0.4) is 2% off in the loss and 6% in the gradient at the late
M = 6 state, and Gauss-Hermite (24 nodes per axis) 14%; the run writes that comparison
(``quadrature_check``) together with the Stein-form gradient of Lemma B.1, which agrees
with autodiff only when the rule is accurate. S3's means are below 0.03 in the t-scaled
coordinates, where the integrand is nearly polynomial: Gauss-Hermite with 8 nodes per
axis agrees with the fine trapezoid rule to 1e-13 (also written to the tables).
"""

from __future__ import annotations

from overgmm.experiments.zhang2024.s1 import S1, _lemma_b1_stein
from overgmm.experiments.zhang2024.s2_s3 import S2, S3

EXPERIMENTS = [S1, S2, S3]

__all__ = ["EXPERIMENTS", "S1", "S2", "S3", "_lemma_b1_stein"]
