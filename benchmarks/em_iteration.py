"""One EM iteration: overgmm against scikit-learn's internals and gmmx, and a floor.

Each (implementation, covariance type, N, d, n) runs in its own process, with one BLAS /
XLA thread, the implementations interleaved cell by cell; the time is the median over
repeats of a warm (compiled) iteration, and the memory the process's peak RSS above its
RSS once the data and the model exist. The floor is the irreducible work of that shape,
in JAX float64: the N x n exponentials and the GEMMs (diag: X @ A, X^2 @ B, R^T X, R^T X^2;
full: the per-component N x d x d products for the Mahalanobis terms and the scatter).

* overgmm: ``og.solve(og.em(Problem.from_data(X)), student, max_steps=K, tol=0)`` / K
  (the driver's compiled loop, statistics in row blocks), float64;
* scikit-learn: ``GaussianMixture._e_step`` + ``_m_step`` on the same parameters, float64;
* gmmx 0.7 (``pip install gmmx``; benchmark-only): ``EMFitter(max_iter=K, tol=0).fit`` / K,
  float32 (its released version has no float64).

Usage::

    python benchmarks/em_iteration.py            # the targets' two cells
    python benchmarks/em_iteration.py --grid     # N in {1e4,1e5,1e6} x d in {5,32} x n in {20,100}
    python benchmarks/em_iteration.py --out results/em_iteration.csv

Cells whose scikit-learn/gmmx cost (N n d^2 for full) would exceed about 30 s per iteration
are skipped for those peers and say so.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time

THREADS = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}
IMPLS = ("floor", "overgmm", "sklearn", "gmmx")
PEER_BUDGET = 2e10  # N n d^2 (full) or N n d (diag) above which the peers are skipped


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _data(N, d, n, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n, d)) * 3.0
    X = centres[rng.integers(0, n, N)] + rng.normal(size=(N, d))
    means = X[rng.choice(N, n, replace=False)]
    return X, means


def _time(fn, min_total=1.0, max_rep=7):
    fn()  # warm
    times = []
    start = time.perf_counter()
    while len(times) < max_rep and (len(times) < 3 or time.perf_counter() - start < min_total):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def worker(impl, cov, N, d, n):
    import numpy as np

    X, means = _data(N, d, n)
    var = np.ones((n, d))
    if impl == "sklearn":
        from sklearn.mixture import GaussianMixture
        from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

        gm = GaussianMixture(n, covariance_type=cov)
        gm.weights_ = np.full(n, 1.0 / n)
        gm.means_ = means.copy()
        gm.covariances_ = var if cov == "diag" else np.stack([np.eye(d)] * n)
        gm.precisions_cholesky_ = _compute_precision_cholesky(gm.covariances_, cov)
        base = _rss_mb()

        def it():
            _, log_resp = gm._e_step(X)
            gm._m_step(X, log_resp)

        sec = _time(it)
    elif impl == "gmmx":
        import jax
        import jax.numpy as jnp
        from gmmx import EMFitter, GaussianMixtureModelJax

        x = jnp.asarray(X, jnp.float32)
        gmm = GaussianMixtureModelJax.from_squeezed(
            means=means.astype(np.float32),
            covariances=(var if cov == "diag" else np.stack([np.eye(d)] * n)).astype(np.float32),
            weights=np.full(n, 1.0 / n, np.float32),
            covariance_type=cov,
        )
        base = _rss_mb()
        k = 5
        fitter = EMFitter(max_iter=k, tol=0.0)
        sec = _time(lambda: jax.block_until_ready(fitter.fit(x, gmm).gmm.means)) / k
    elif impl == "overgmm":
        import jax
        import jax.numpy as jnp

        import overgmm as og

        Xj = jnp.asarray(X)
        cov_arg = var if cov == "diag" else np.stack([np.eye(d)] * n)
        s0 = og.Mixture(means, covariances=cov_arg, covariance_type=cov)
        alg = og.em(og.Problem.from_data(Xj))
        base = _rss_mb()
        k = 5
        sec = _time(lambda: jax.block_until_ready(og.solve(alg, s0, max_steps=k, tol=0.0).final.student.means)) / k
    else:  # floor
        import jax
        import jax.numpy as jnp

        import overgmm  # noqa: F401  (float64)

        Xj = jnp.asarray(X)
        A = jnp.asarray(np.random.default_rng(1).normal(size=(d, n)) * 0.01)
        if cov == "diag":

            @jax.jit
            def floor(X, A):
                logits = X @ A + (X * X) @ A
                r = jnp.exp(logits)
                return r.T @ X, r.T @ (X * X)

            args = (Xj, A)
        else:
            U = jnp.asarray(np.stack([np.eye(d)] * n))

            @jax.jit
            def floor(X, U):
                y = jnp.einsum("kd,nde->kne", X, U)
                r = jnp.exp(-0.5 * jnp.sum(y * y, axis=-1) * 1e-3)
                return r.T @ X, jnp.einsum("kn,kd,ke->nde", r, X, X)

            args = (Xj, U)
        base = _rss_mb()
        sec = _time(lambda: jax.block_until_ready(floor(*args)))
    print(json.dumps({"seconds": sec, "peak_mb": _rss_mb(), "extra_mb": _rss_mb() - base}))


def run_cell(impl, cov, N, d, n, timeout=900):
    env = {**os.environ, **THREADS}
    cmd = [sys.executable, __file__, "--worker", impl, cov, str(N), str(d), str(n)]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {timeout}s"}
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", action="store_true", help="the whole grid (default: the two target cells)")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--out", default=None, help="CSV file for the table")
    ap.add_argument("--worker", nargs=5, metavar=("IMPL", "COV", "N", "D", "N_COMP"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        impl, cov, N, d, n = args.worker
        worker(impl, cov, int(N), int(d), int(n))
        return
    impls = args.impls.split(",")
    if args.grid:
        grid = itertools.product(("diag", "full"), (10**4, 10**5, 10**6), (5, 32), (20, 100))
        cells = [(c, N, d, n) for c, N, d, n in grid]
    else:
        cells = [("diag", 10**6, 5, 20), ("full", 10**5, 5, 20)]
    rows = []
    hdr = f"{'cov':5} {'N':>8} {'d':>3} {'n':>4} " + " ".join(f"{i + ' s':>12}" for i in impls)
    hdr += "  sk/og  gmmx/og  og/floor  og MB  sk MB"
    print(hdr, flush=True)
    for cov, N, d, n in cells:
        work = N * n * (d * d if cov == "full" else d)
        res = {}
        for impl in impls:
            if impl in ("sklearn", "gmmx") and work > PEER_BUDGET:
                res[impl] = {"error": "skipped (estimated > 30 s per iteration)"}
                continue
            res[impl] = run_cell(impl, cov, N, d, n)
        row = {"cov": cov, "N": N, "d": d, "n": n}
        for impl in impls:
            row[f"{impl}_s"] = res[impl].get("seconds")
            row[f"{impl}_extra_mb"] = res[impl].get("extra_mb")
            row[f"{impl}_note"] = res[impl].get("error", "")
        og_s = row.get("overgmm_s")

        def ratio(a, b):
            return f"{a / b:7.1f}" if a and b else "      -"

        print(
            f"{cov:5} {N:>8} {d:>3} {n:>4} "
            + " ".join(f"{row[f'{i}_s']:12.4g}" if row[f"{i}_s"] else f"{'-':>12}" for i in impls)
            + f"  {ratio(row.get('sklearn_s'), og_s)}  {ratio(row.get('gmmx_s'), og_s)}"
            + f"  {ratio(og_s, row.get('floor_s'))}"
            + f"  {row.get('overgmm_extra_mb') or 0:5.0f}  {row.get('sklearn_extra_mb') or 0:5.0f}",
            flush=True,
        )
        for impl in impls:
            if row[f"{impl}_note"]:
                print(f"    {impl}: {row[f'{impl}_note']}")
        rows.append(row)
    if args.out:
        import csv

        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        tmp = args.out + ".tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
