"""Exact references in r dimensions from products of 1-D unit-variance mixtures.

A product of 1-D mixtures ``prod_k p_k(x_k)`` is an isotropic Gaussian mixture in
``r`` dimensions (means on a grid, weights multiplied). The KL between two products
is the sum of the 1-D KLs, and the gradient factorises: for the product component
``I = (a_1, ..., a_r)``, ``psi_I(x) = prod_k psi^(k)_{a_k}(x_k)``, so
``E_{p*}[psi_I (x_l - mu_{I,l})] = E_l[psi_{a_l} (x_l - m_{a_l})] prod_{k != l} E_k[psi_{a_k}]``,
all 1-D integrals (scipy's adaptive rule, split at the means).
"""

import functools
import itertools

import numpy as np
from scipy.integrate import quad

from helpers import kl_1d_reference, log_mix_1d


def _moments_1d(tm, tw, sm, sw):
    """``E_{p*}[psi_a]`` and ``E_{p*}[psi_a (x - m_a)]`` for each 1-D student component a."""
    sm, sw = np.asarray(sm, float), np.asarray(sw, float)
    pts = sorted(set(np.round(list(tm) + list(sm), 12)))
    edges = [-np.inf, *pts, np.inf]

    def integral(f):
        return sum(quad(f, a, b, epsabs=1e-16, epsrel=1e-13, limit=400)[0] for a, b in itertools.pairwise(edges))

    mass, mom = [], []
    for a in range(len(sm)):

        def psi(x, a=a):
            return np.exp(np.log(sw[a]) - 0.5 * (x - sm[a]) ** 2 - 0.5 * np.log(2 * np.pi) - log_mix_1d(x, sm, sw))

        def pt(x):
            return np.exp(log_mix_1d(x, tm, tw))

        mass.append(integral(lambda x, psi=psi: pt(x) * psi(x)))
        mom.append(integral(lambda x, psi=psi, a=a: pt(x) * psi(x) * (x - sm[a])))
    return np.array(mass), np.array(mom)


def _factor_key(t, s):
    """A 1-D teacher/student factor pair as a hashable key (its values as floats)."""
    return tuple(tuple(float(v) for v in a) for a in (*t, *s))


@functools.lru_cache
def _factor_reference(tm, tw, sm, sw):
    """KL and moments of one 1-D factor pair, computed once per process (the cases share
    factors across ranks, rules and rotations)."""
    return kl_1d_reference(tm, tw, sm, sw), _moments_1d(tm, tw, sm, sw)


def product_mixture(factors):
    """Means (N, r) and weights (N,) of the product of 1-D mixtures ``[(means, weights), ...]``."""
    idx = list(itertools.product(*[range(len(m)) for m, _ in factors]))
    means = np.array([[factors[k][0][i] for k, i in enumerate(ix)] for ix in idx], float)
    weights = np.array([np.prod([factors[k][1][i] for k, i in enumerate(ix)]) for ix in idx])
    return means, weights, idx


def product_reference(teacher_factors, student_factors):
    """KL, gradient with respect to the student means (N, r) and to its log-weights (N,)
    along the simplex, for product teacher and student (lists of 1-D ``(means, weights)``)."""
    r = len(teacher_factors)
    pairs = [_factor_key(t, s) for t, s in zip(teacher_factors, student_factors, strict=True)]
    kl = sum(_factor_reference(*key)[0] for key in pairs)
    stats = [_factor_reference(*key)[1] for key in pairs]
    _, weights, idx = product_mixture(student_factors)
    g_means = np.zeros((len(idx), r))
    mass = np.ones(len(idx))
    for n_, ix in enumerate(idx):
        for k, a in enumerate(ix):
            mass[n_] *= stats[k][0][a]
        for k, a in enumerate(ix):
            others = np.prod([stats[j][0][b] for j, b in enumerate(ix) if j != k])
            g_means[n_, k] = -stats[k][1][a] * others
    return kl, g_means, weights - mass


def product_case(r: int, away: bool, seed: int = 0):
    """Teacher +-3 (6 apart) on the first two axes (one for r = 6), N(0, 1) on the rest;
    student: perturbed copies (0.03 near, loss < 1e-3; 0.6 away), a split pair on the
    middle axes, an offset on the last one (so the span has rank r)."""
    rng = np.random.default_rng(seed)
    nt = 2 if r <= 5 else 1
    tf, sf = [], []
    pert = 0.6 if away else 0.03
    for k in range(r):
        tf.append(([-3.0, 3.0], [0.4, 0.6] if k == 0 else [0.5, 0.5]) if k < nt else ([0.0], [1.0]))
        if k == r - 1:
            sf.append(([0.5 if away else 0.02], [1.0]))
        elif k < nt:
            sf.append((list(np.array([-3.0, 3.0]) + pert * rng.normal(size=2)), tf[k][1]))
        else:
            s = 0.6 if away else 0.1
            sf.append(([-s + 0.1 * pert * rng.normal(), s], [0.5, 0.5]))
    return tf, sf
