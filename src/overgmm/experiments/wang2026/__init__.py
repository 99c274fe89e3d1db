"""Experiments of Wang, Fazel, Charisopoulos 2026 (alternating Polyak method; we have
only a summary of the paper, SPEC section 6, W1-W6).

Choices where the summary is silent, the same across W1-W6 so they tell one story
(also in docs/reproductions.md):

- teacher: d = 5, m = 3, means drawn N(0, (9/2) I_d) with ``teacher_seed`` 1 (pairwise
  distances 4.2-4.8), weights (0.2, 0.3, 0.5);
- student: n = 20, component i assigned to teacher component ``i mod 3``, mean = that
  teacher mean + 0.5 N(0, I_d) (the run's ``seed``), weights split so that each
  cluster's mass equals its teacher weight (Delta_pi = 0) unless a run says otherwise;
- expectations: trapezoid rule on the 5-D span, teacher-centred nodes (the students
  stay in the teacher's mass), 11 nodes per axis over +-6. Its zero set is exact (the
  control-variate integrand vanishes where p_theta = p*), so the rates are those of the
  true KL; its relative error away from the optimum is about 1e-2, which the table
  ``final_check`` measures against the 15-node rule at the end of each run;
- methods: scaled alternating Polyak (eta = 1, K = 10, P = diag(1/pi)), the
  paper-literal scheme (Euclidean, same eta and K), gradient EM (eta = 1), EM, gradient
  EM with EM weight steps, Adam (learning rate 0.02).
"""

from __future__ import annotations

from overgmm.experiments.wang2026.w1 import W1
from overgmm.experiments.wang2026.w2_w3 import W2, W3
from overgmm.experiments.wang2026.w4_w6 import W4, W5, W6

EXPERIMENTS = [W1, W2, W3, W4, W5, W6]
