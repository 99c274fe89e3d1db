"""One EM iteration: overgmm against scikit-learn's internals and gmmx, and a floor.

Each (implementation, covariance type, N, d, n) runs in its own process, pinned to one
core (XLA's CPU runtime keeps its own thread pool whatever the thread flags say) with one
BLAS / XLA thread, the implementations interleaved cell by cell; the time is the median
over repeats of a warm (compiled) iteration, and the memory the process's peak RSS above
its RSS once the data and the model exist (a worker above ``MEM_CAP_MB`` is stopped and
reported). The floor is the irreducible work of that shape, in JAX float64: the N x n
exponentials and the GEMMs (diag: X @ A, X^2 @ B, R^T X, R^T X^2; full: the per-component
N x d x d products for the Mahalanobis terms and the scatter), timed as one compiled
program in two layouts, whole arrays and row blocks, keeping the faster.

* overgmm: ``og.solve(og.em(Problem.from_data(X)), student, max_steps=K, tol=0)`` / K
  (the driver's compiled loop, statistics in row blocks), float64;
* scikit-learn: ``GaussianMixture._e_step`` + ``_m_step`` on the same parameters, float64;
* gmmx 0.7 (``pip install gmmx``; benchmark-only): ``EMFitter(max_iter=K, tol=0).fit`` / K,
  float32 (its released version has no float64).

Usage::

    python benchmarks/em_iteration.py            # the targets' two cells
    python benchmarks/em_iteration.py --grid     # N in {1e4,1e5,1e6} x d in {5,32} x n in {20,100}
    python benchmarks/em_iteration.py --wide     # issue 18's wide cell: N = 1e6, d = 64, n = 64, diag and full
    python benchmarks/em_iteration.py --out results/em_iteration.csv

Cells whose scikit-learn/gmmx cost (N n d^2 for full) would exceed about 30 s per iteration
are skipped for those peers and say so, except in ``--wide``, whose cells the issue asks to
compare with both peers (scikit-learn full there takes minutes per cell).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
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


FLOOR_BLOCK = 1 << 13  # rows per block of the floor kernel


def _blocks(X):
    """``X`` (N, d) as (K, B, d) row blocks, zero rows appended (they add nothing to the
    floor's sums: each is multiplied by a row of X). Done once, outside the timing."""
    import numpy as np

    b = min(FLOOR_BLOCK, X.shape[0])
    k = -(-X.shape[0] // b)
    return np.concatenate([X, np.zeros((k * b - X.shape[0], X.shape[1]))]).reshape(k, b, X.shape[1])


def worker(impl, cov, N, d, n):
    import numpy as np

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core: XLA's own pool ignores the thread flags

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

        A = jnp.asarray(np.random.default_rng(1).normal(size=(d, n)) * 0.01)
        U = jnp.asarray(np.stack([np.eye(d)] * n))

        def diag_pass(xb):
            r = jnp.exp(xb @ A + (xb * xb) @ A)
            return r.T @ xb, r.T @ (xb * xb)

        def full_pass(xb):
            y = jnp.einsum("kd,nde->kne", xb, U)
            r = jnp.exp(-0.5 * jnp.sum(y * y, axis=-1) * 1e-3)
            return r.T @ xb, jnp.einsum("kn,kd,ke->nde", r, xb, xb)

        one = diag_pass if cov == "diag" else full_pass

        @jax.jit
        def whole(X):
            return one(X)

        @jax.jit
        def blocked(Xb):  # row blocks, as overgmm's pass: intermediates stay in cache
            def block(acc, xb):
                return jax.tree_util.tree_map(jnp.add, acc, one(xb)), None

            zero = jax.tree_util.tree_map(jnp.zeros_like, jax.eval_shape(one, Xb[0]))
            return jax.lax.scan(block, zero, Xb)[0]

        # the floor is the faster of the two layouts of the same minimal work (whole arrays
        # only where the full type's N x n x d intermediate fits in 4 GB)
        Xj, Xb = jnp.asarray(X), jnp.asarray(_blocks(X))
        base = _rss_mb()
        sec = _time(lambda: jax.block_until_ready(blocked(Xb)))
        if cov == "diag" or N * n * d * 8 <= 4e9:
            sec = min(sec, _time(lambda: jax.block_until_ready(whole(Xj))))
    print(json.dumps({"seconds": sec, "peak_mb": _rss_mb(), "extra_mb": _rss_mb() - base}))


MEM_CAP_MB = 16_000  # a worker above this resident size is stopped and reported (24 GB machine)


def _rss_of(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def run_cell(impl, cov, N, d, n, timeout=1200):
    env = {**os.environ, **THREADS}
    cmd = [sys.executable, __file__, "--worker", impl, cov, str(N), str(d), str(n)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start, peak = time.monotonic(), 0.0
    while proc.poll() is None:
        peak = max(peak, _rss_of(proc.pid))
        if peak > MEM_CAP_MB or time.monotonic() - start > timeout:
            proc.kill()
            proc.communicate()
            why = f"over {MEM_CAP_MB / 1000:.0f} GB resident" if peak > MEM_CAP_MB else f"timeout {timeout}s"
            return {"error": f"stopped: {why}"}
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        return {"error": err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}"}
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", action="store_true", help="the whole grid (default: the two target cells)")
    ap.add_argument("--wide", action="store_true", help="N = 1e6, d = 64, n = 64, diag and full, every peer")
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
    elif args.wide:
        cells = [("diag", 10**6, 64, 64), ("full", 10**6, 64, 64)]
    else:
        cells = [("diag", 10**6, 5, 20), ("full", 10**5, 5, 20)]
    budget = math.inf if args.wide else PEER_BUDGET
    rows = []
    hdr = f"{'cov':5} {'N':>8} {'d':>3} {'n':>4} " + " ".join(f"{i + ' s':>12}" for i in impls)
    hdr += "  sk/og  gmmx/og  og/floor  og MB  sk MB"
    print(hdr, flush=True)
    for cov, N, d, n in cells:
        work = N * n * (d * d if cov == "full" else d)
        res = {}
        for impl in impls:
            if impl in ("sklearn", "gmmx") and work > budget:
                res[impl] = {"error": "skipped (estimated > 30 s per iteration)"}
                continue
            res[impl] = run_cell(impl, cov, N, d, n)
        row = {"cov": cov, "N": N, "d": d, "n": n}
        for impl in impls:
            row[f"{impl}_s"] = res[impl].get("seconds")
            row[f"{impl}_extra_mb"] = res[impl].get("extra_mb")
            row[f"{impl}_peak_mb"] = res[impl].get("peak_mb")
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
