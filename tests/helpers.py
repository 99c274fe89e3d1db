"""Shared test helpers: finite differences with a principled step, reference integrals."""

import itertools

import numpy as np
from scipy.integrate import quad
from scipy.special import logsumexp

EPS = np.finfo(np.float64).eps


def central_fd(f, x, scale=1.0):
    """Central finite differences of scalar f at array x, step ~ eps^(1/3) * scale."""
    x = np.asarray(x, dtype=np.float64)
    h = EPS ** (1 / 3) * max(scale, 1.0)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (float(f(xp)) - float(f(xm))) / (2 * h)
    return g


def log_mix_1d(x, means, weights):
    means = np.asarray(means, float)
    return logsumexp(-0.5 * (x - means) ** 2 + np.log(weights)) - 0.5 * np.log(2 * np.pi)


def kl_1d_reference(tm, tw, sm, sw):
    """KL(teacher || student) in 1-D by adaptive quadrature split at the means."""

    def f(x):
        lt = log_mix_1d(x, tm, tw)
        return np.exp(lt) * (lt - log_mix_1d(x, sm, sw))

    pts = sorted(set(np.round(list(tm) + list(sm), 12)))
    edges = [-np.inf, *pts, np.inf]
    return sum(quad(f, a, b, epsabs=1e-15, epsrel=1e-13, limit=400)[0] for a, b in itertools.pairwise(edges))
