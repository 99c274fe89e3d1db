"""The mclust family as peers of ``benchmarks/real_data_cv.py``: CRAN mclust (``Rscript``),
PyPI ``pymclustR`` and ``pymclust-native``, each its BIC over its covariance models x k =
1..10, with a time limit per fit. Each ``fit_*`` returns ``{method: dict(ll=held-out
log-densities, k, cov, pred, seconds)}``; a missing package or ``Rscript`` raises (the
benchmark records the failure).

Benchmark-only installs (never runtime dependencies of overgmm)::

    .venv/bin/pip install pymclustR==0.2.1 pymclust-native==0.0.1
    apt-get install --no-install-recommends r-cran-mclust      # optional: mclust (R)
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import tempfile
import time

import numpy as np
from scipy.special import logsumexp

K_MAX = 10

# ----------------------------------------------------------------------------- time limit


class PeerTimeout(BaseException):
    """Raised by the alarm; a BaseException so that peers' ``except Exception`` (pymclustR
    records a failed model as NaN and goes on) cannot swallow it."""


def _alarm(signum, frame):
    raise PeerTimeout


def with_time_limit(fn, seconds):
    if not seconds:
        return fn()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _mixture_log_density(Xte, weights, means, covs):
    """Log-density of a Gaussian mixture with full covariances (G, d, d), and the labels."""
    logp = np.empty((len(Xte), len(weights)))
    for g, (w, mu, S) in enumerate(zip(weights, means, covs, strict=True)):
        L = np.linalg.cholesky(S)
        z = np.linalg.solve(L, (Xte - mu).T)
        logp[:, g] = np.log(w) - 0.5 * (len(mu) * math.log(2 * math.pi) + np.sum(z * z, 0)) - np.sum(np.log(np.diag(L)))
    return logsumexp(logp, axis=1), np.argmax(logp, axis=1)


def fit_pymclustr(Xtr, Xte, timeout):
    from mclust_py import Mclust

    t0 = time.perf_counter()
    r = with_time_limit(lambda: Mclust(Xtr, G=range(1, K_MAX + 1)), timeout)
    secs = time.perf_counter() - t0
    # mean (d, G), sigma (d, d, G), pro (G,)
    ll, pred = _mixture_log_density(
        Xte, np.asarray(r.pro), np.asarray(r.mean).T, np.moveaxis(np.asarray(r.sigma), 2, 0)
    )
    return {"pymclustR": dict(ll=ll, k=int(r.G), cov=str(r.model_name), pred=pred, seconds=secs)}


def _native_covariances(res, d):
    """Full covariances (G, d, d) from pymclust-native's per-model representation (as its
    ``GMMResult.predict_proba`` builds them)."""
    from pymclust_native.models import ModelName as M

    m, c, G = res.model_name, res.covariances, len(res.weights)
    if m in (M.VVV,):
        return np.asarray(c)
    if m == M.EEE:
        return np.repeat(np.asarray(c)[None], G, 0)
    if m == M.EII:
        lam = float(np.ravel(c)[0])
        return np.repeat((lam * np.eye(d))[None], G, 0)
    if m == M.VII:
        return np.stack([float(v) * np.eye(d) for v in np.ravel(c)])
    if m == M.VVI:
        return np.stack([np.diag(v) for v in np.asarray(c)])
    if m == M.EEI:
        lam, A = c
        return np.repeat(np.diag(float(np.ravel(lam)[0]) * np.asarray(A))[None], G, 0)
    if m == M.VEI:
        lam, A = c
        return np.stack([np.diag(float(v) * np.asarray(A)) for v in np.ravel(lam)])
    if m == M.EVI:
        lam, Ag = c
        return np.stack([np.diag(float(np.ravel(lam)[0]) * a) for a in np.asarray(Ag)])
    if m in (M.VEE, M.EVE, M.VVE):
        if m == M.VEE:
            lam_g, A, D = c
            diag_all = np.asarray(lam_g)[:, None] * np.asarray(A)[None, :]
        elif m == M.EVE:
            lam, A_g, D = c
            diag_all = float(np.ravel(lam)[0]) * np.asarray(A_g)
        else:
            lam_g, A_g, D = c
            diag_all = np.asarray(lam_g)[:, None] * np.asarray(A_g)
        return np.stack([D @ np.diag(a) @ D.T for a in diag_all])
    if m == M.EVV:
        lam, A_g, D_g = c
        return np.stack([float(np.ravel(lam)[0]) * (D_g[g] @ np.diag(A_g[g]) @ D_g[g].T) for g in range(G)])
    if m == M.EEV:
        lam, A, D_g = c
        return np.stack([float(np.ravel(lam)[0]) * (D_g[g] @ np.diag(A) @ D_g[g].T) for g in range(G)])
    if m == M.VEV:
        lam_g, A, D_g = c
        return np.stack([lam_g[g] * (D_g[g] @ np.diag(A) @ D_g[g].T) for g in range(G)])
    raise ValueError(f"unknown model {m}")


def fit_pymclust_native(Xtr, Xte, timeout):
    from pymclust_native.api import fit_mclust
    from pymclust_native.models import ModelName

    d = Xtr.shape[1]
    # in 1-D the 14 models reduce to equal (E) and variable (V) variance
    models = [ModelName.EII, ModelName.VII] if d == 1 else list(ModelName)
    t0 = time.perf_counter()
    r = with_time_limit(lambda: fit_mclust(Xtr, G_list=range(1, K_MAX + 1), models=models, random_state=0), timeout)
    secs = time.perf_counter() - t0
    covs = _native_covariances(r, d)
    ll, pred = _mixture_log_density(Xte, np.asarray(r.weights), np.asarray(r.means), covs)
    name = r.model_name.value if hasattr(r.model_name, "value") else str(r.model_name)
    if d == 1:
        name = {"EII": "E", "VII": "V"}.get(name, name)
    return {"pymclust-native": dict(ll=ll, k=int(len(r.weights)), cov=name, pred=pred, seconds=secs)}


R_SCRIPT = r"""
args <- commandArgs(trailingOnly = TRUE)
suppressPackageStartupMessages(library(mclust))
tr <- as.matrix(read.csv(args[1], header = FALSE))
te <- as.matrix(read.csv(args[2], header = FALSE))
t0 <- proc.time()[["elapsed"]]
fit <- Mclust(tr, G = 1:10, verbose = FALSE)
secs <- proc.time()[["elapsed"]] - t0
if (is.null(fit)) stop("Mclust returned NULL: no model could be fitted")
ld <- dens(data = te, modelName = fit$modelName, parameters = fit$parameters, logarithm = TRUE)
cl <- predict(fit, newdata = te)$classification
writeLines(c(paste(fit$G, fit$modelName, secs, as.character(packageVersion("mclust")), sep = ","),
             paste(sprintf("%.17g", ld), cl, sep = ",")), args[3])
"""


def fit_mclust_r(Xtr, Xte, timeout):
    rscript = shutil.which("Rscript")
    if rscript is None:
        raise RuntimeError("Rscript not found (apt-get install --no-install-recommends r-cran-mclust)")
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, f) for f in ("fit.R", "train.csv", "test.csv", "out.csv")]
        with open(paths[0], "w") as fh:
            fh.write(R_SCRIPT)
        np.savetxt(paths[1], Xtr, delimiter=",", fmt="%.17g")
        np.savetxt(paths[2], Xte, delimiter=",", fmt="%.17g")
        try:
            proc = subprocess.run(
                [rscript, "--vanilla", *paths], capture_output=True, text=True, timeout=timeout or None
            )
        except subprocess.TimeoutExpired:
            raise PeerTimeout from None
        if proc.returncode != 0:
            raise RuntimeError("Rscript: " + " ".join(proc.stderr.strip().splitlines()[-3:]))
        with open(paths[3]) as fh:
            lines = fh.read().split()
    G, model, secs, _version = lines[0].split(",")
    body = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:]])
    return {"mclust (R)": dict(ll=body[:, 0], k=int(G), cov=model, pred=body[:, 1].astype(int), seconds=float(secs))}
