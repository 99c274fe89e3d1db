"""Large data: EM throughput in memory / streamed / from Parquet, peak RSS of ``overgmm fit``
on a 2 GB Parquet file, 1 vs 2 Dask workers, and a side-by-side at N = 1e7.

Every part runs in its own process with one BLAS / XLA thread pinned to one core (the
scaling part: each Dask worker pinned to its own core), prints its ratios and writes
``benchmarks/results/large_data_<part>.json``. Times are medians over repeats of a warm
(compiled) iteration.

* ``throughput``: rows per second of one EM iteration (d = 10, n = 20, diag and full) with
  the data in memory (``og.solve`` on ``Problem.from_data``: the compiled loop), streamed
  from memory in chunks (``overgmm.streaming.solve`` over ``ArrayChunks``) and out of core
  from a Parquet file (``ParquetChunks``), with the bare read speed of that file
  (pyarrow row groups to float64 NumPy, nothing else).
* ``rss``: writes a 2.5e7 x 10 float64 Parquet file (2 GB) and runs ``overgmm fit`` on it
  under ``/usr/bin/time -v``; reports the peak resident set size.
* ``scaling``: 1 vs 2 local Dask workers (one pinned thread each), 1.05e7 rows generated and
  persisted on the workers: seconds per streamed E-step pass and per EM step.
* ``side``: N = 1e7, d = 10, n = 20 full covariances (the only type Spark MLlib has): one
  EM iteration of overgmm in memory, overgmm on 2 Dask workers, scikit-learn
  (``_e_step`` + ``_m_step``) and Spark MLlib's ``GaussianMixture`` in local mode
  (``local[2]``; per iteration = (time of maxIter=3 - time of maxIter=1) / 2).

Usage::

    python benchmarks/large_data.py throughput [--rows 4194304]
    python benchmarks/large_data.py rss [--rows 25000000]
    python benchmarks/large_data.py scaling [--rows 10485760]
    python benchmarks/large_data.py side [--rows 10000000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ONE = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}
OUT = Path(__file__).resolve().parent / "results"
D, N_COMP = 10, 20
TMP = Path(os.environ.get("OVERGMM_BENCH_TMP", tempfile.gettempdir()))


def _pin_self():
    for k, v in ONE.items():
        os.environ.setdefault(k, v)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})


def _data(N, d=D, n=N_COMP, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n, d)) * 3.0
    X = centres[rng.integers(0, n, N)] + rng.normal(size=(N, d))
    return X


def _write_parquet(path: Path, N: int, group: int, seed=0):
    """N x D float64 rows in row groups of ``group`` rows, generated a group at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_COMP, D)) * 3.0
    schema = pa.schema([(f"x{j}", pa.float64()) for j in range(D)])
    with pq.ParquetWriter(path, schema, compression="none") as w:
        for a in range(0, N, group):
            b = min(N, a + group)
            X = centres[rng.integers(0, N_COMP, b - a)] + rng.normal(size=(b - a, D))
            w.write_table(pa.table({f"x{j}": X[:, j] for j in range(D)}, schema=schema), row_group_size=group)


def _student(X, kind, n=N_COMP):
    import jax

    import overgmm as og

    w = jax.numpy.ones(X.shape[0]) / X.shape[0]
    Xj = jax.numpy.asarray(X[:: max(1, X.shape[0] // 65536)])
    w = jax.numpy.ones(Xj.shape[0]) / Xj.shape[0]
    return og.init.from_data(jax.random.key(0), Xj, w, n, covariance_type=kind, floor=jax.numpy.full(D, 1e-3))


def _median_time(fn, repeats=3):
    fn()  # warm: compile
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _interleaved(fns, repeats=5):
    """Median time of each of ``fns``, run in turn ``repeats`` times after one warm-up each
    (interleaved, so that a change of load on the shared machine hits all alike)."""
    for fn in fns:
        fn()
    ts = [[] for _ in fns]
    for _ in range(repeats):
        for t, fn in zip(ts, fns, strict=True):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in ts]


# ----------------------------------------------------------------------------- throughput
def throughput(args):
    _pin_self()
    import jax
    import numpy as np

    import overgmm as og
    from overgmm import chunks as C
    from overgmm import streaming

    N, K = args.rows, 3
    X = _data(N)
    path = TMP / f"overgmm_bench_{N}.parquet"
    if not path.exists():
        _write_parquet(path, N, 1 << 18)
    pq_src = C.ParquetChunks(path)
    bare = _median_time(lambda: pq_src.map(lambda x, w, a: None))
    res = {"rows": N, "d": D, "n": N_COMP, "steps_per_timing": K, "bare_read_rows_per_s": N / bare, "cells": {}}
    print(f"bare Parquet read: {N / bare:,.0f} rows/s ({bare:.2f} s for {path.stat().st_size / 1e6:.0f} MB)")
    for kind in ("diag", "full"):
        s = _student(X, kind)
        prob = og.Problem.from_data(X, var_floor=np.full(D, 1e-3))
        alg = og.em(prob)
        batch = jax.tree_util.tree_map(lambda a: a[None], s)
        arr = C.ArrayChunks(X, chunk_rows=1 << 18)

        def mem(alg=alg, s=s):
            jax.block_until_ready(og.solve(alg, s, max_steps=K, tol=0.0).final.student.means)

        def stream(src, alg=alg, batch=batch, prob=prob):
            streaming.solve(alg.method, batch, src, floor=prob.floor, total=N, max_steps=K, tol=0.0)

        t_mem, t_str, t_pq = (
            t / K for t in _interleaved([mem, lambda arr=arr, stream=stream: stream(arr), lambda: stream(pq_src)])
        )
        cell = {
            "in_memory_rows_per_s": N / t_mem,
            "streamed_rows_per_s": N / t_str,
            "parquet_rows_per_s": N / t_pq,
            "streamed_over_in_memory_time": t_str / t_mem,
            "parquet_over_in_memory_time": t_pq / t_mem,
            "parquet_time_over_bare_read": t_pq / bare,
        }
        res["cells"][kind] = cell
        print(
            f"{kind}: in memory {N / t_mem:,.0f} rows/s, streamed {N / t_str:,.0f} ({t_str / t_mem:.2f}x time), "
            f"Parquet {N / t_pq:,.0f} ({t_pq / t_mem:.2f}x; {t_pq / bare:.2f}x the bare read)"
        )
    _save("throughput", res)


# ----------------------------------------------------------------------------- rss
def rss(args):
    path = TMP / f"overgmm_bench_{args.rows}.parquet"
    if not path.exists():
        print(f"writing {path} ...", flush=True)
        _write_parquet(path, args.rows, 1 << 20)
    size = path.stat().st_size
    out = TMP / "overgmm_bench_rss_fit"
    exe = str(Path(sys.executable).parent / "overgmm")
    cmd = ["/usr/bin/time", "-v", exe, "fit", str(path), "--out", str(out)]
    cmd += ["--covariance-type", "diag", "--max-iter", str(args.max_iter), "--quiet"]
    env = {**os.environ, **ONE}
    t = time.perf_counter()
    proc = subprocess.run(["taskset", "-c", "1", *cmd], env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    peak = int(m.group(1)) / 1024 if m else float("nan")
    res = {"rows": args.rows, "file_bytes": size, "peak_rss_mb": peak, "seconds": secs, "returncode": proc.returncode}
    res["stdout"] = proc.stdout.strip().splitlines()[-3:]
    print(proc.stdout[-600:], proc.stderr[-400:] if proc.returncode else "")
    print(f"file {size / 1e9:.2f} GB; peak RSS {peak:.0f} MB (target < 1024 MB); {secs:.0f} s")
    _save("rss", res)


# ----------------------------------------------------------------------------- scaling
def _block(seed, i, rows):
    """Rows of block ``i``, generated where the task runs (the same mixture as :func:`_data`)."""
    import numpy as np

    centres = np.random.default_rng(seed).normal(size=(N_COMP, D)) * 3.0
    rng = np.random.default_rng([seed, i])
    return centres[rng.integers(0, N_COMP, rows)] + rng.normal(size=(rows, D))


def _dask_data(N, chunk, seed=0):
    import dask
    import dask.array as da

    parts = [
        da.from_delayed(dask.delayed(_block)(seed, i, min(chunk, N - a)), shape=(min(chunk, N - a), D), dtype=float)
        for i, a in enumerate(range(0, N, chunk))
    ]
    return da.concatenate(parts, axis=0)


def _scaling_cell(workers, N, chunk, kind, repeats):
    from distributed import Client

    import overgmm as og
    from overgmm import chunks as C
    from overgmm import streaming
    from overgmm.cluster import local_cluster

    with local_cluster(workers) as cluster, Client(cluster) as client:
        X = _dask_data(N, chunk)
        src = C.DaskChunks(X)
        client.wait_for_workers(workers)
        import dask

        dask.compute(*[dask.delayed(len)(b) for b in src.X.to_delayed().ravel()])  # persisted
        s = _student(src.X[:65536].compute(), kind)
        batch = og.stack([s])
        floor = [1e-3] * D
        per_pass = _median_time(lambda: streaming.statistics_sums(src, streaming.ALL, batch), repeats)
        em = og.em(og.Problem.from_data(src.X[:10].compute()))
        per_step = (
            _median_time(lambda: streaming.solve(em.method, batch, src, floor=floor, total=N, max_steps=3, tol=0.0), 1)
            / 3
        )
    return per_pass, per_step


def scaling(args):
    res = {"rows": args.rows, "d": D, "n": N_COMP, "chunk_rows": args.chunk, "cells": {}}
    for kind in args.kinds:
        t1 = _scaling_cell(1, args.rows, args.chunk, kind, args.repeats)
        t2 = _scaling_cell(2, args.rows, args.chunk, kind, args.repeats)
        cell = {
            "one_worker_s_per_pass": t1[0],
            "two_workers_s_per_pass": t2[0],
            "speedup_per_pass": t1[0] / t2[0],
            "one_worker_s_per_step": t1[1],
            "two_workers_s_per_step": t2[1],
            "speedup_per_step": t1[1] / t2[1],
        }
        res["cells"][kind] = cell
        print(
            f"{kind}: pass {t1[0]:.2f} s -> {t2[0]:.2f} s ({t1[0] / t2[0]:.2f}x), "
            f"EM step {t1[1]:.2f} s -> {t2[1]:.2f} s ({t1[1] / t2[1]:.2f}x); target 1.8x",
            flush=True,
        )
    _save("scaling", res)


# ----------------------------------------------------------------------------- side by side
def _side_overgmm(N):
    _pin_self()
    import jax
    import numpy as np

    import overgmm as og

    X = _data(N)
    s = _student(X, "full")
    alg = og.em(og.Problem.from_data(X, var_floor=np.full(D, 1e-3)))
    t = _median_time(lambda: jax.block_until_ready(og.solve(alg, s, max_steps=2, tol=0.0).final.student.means), 1)
    return t / 2


def _side_sklearn(N):
    _pin_self()
    import numpy as np
    from sklearn.mixture import GaussianMixture

    X = _data(N)
    s = _student(X[:65536], "full")
    gm = GaussianMixture(N_COMP, covariance_type="full", max_iter=1, reg_covar=1e-3)
    gm.weights_ = np.asarray(s.weights)
    gm.means_ = np.asarray(s.means)
    gm.covariances_ = np.asarray(s.covariances)
    from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

    gm.precisions_cholesky_ = _compute_precision_cholesky(gm.covariances_, "full")

    def one():
        _, log_resp = gm._e_step(X)
        gm._m_step(X, log_resp)

    return _median_time(one, 1)


def _side_spark(N):
    import numpy as np
    from pyspark.ml.clustering import GaussianMixture
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import SparkSession

    path = TMP / f"overgmm_bench_{N}.parquet"
    if not path.exists():
        _write_parquet(path, N, 1 << 20)
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.memory", "10g")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    try:
        df = spark.read.parquet(str(path))
        vec = VectorAssembler(inputCols=[f"x{j}" for j in range(D)], outputCol="features").transform(df)
        vec = vec.select("features").cache()
        vec.count()
        times = {}
        for it in (1, 3):
            t = time.perf_counter()
            GaussianMixture(k=N_COMP, maxIter=it, tol=0.0, seed=0).fit(vec)
            times[it] = time.perf_counter() - t
        return (times[3] - times[1]) / 2, np.nan
    finally:
        spark.stop()


def side(args):
    N = args.rows
    res = {"rows": N, "d": D, "n": N_COMP, "covariance": "full"}
    code = "import sys, json; sys.path.insert(0, {p!r}); import large_data as L; print(json.dumps(L.{f}({n})))"
    for name in ("_side_overgmm", "_side_sklearn"):
        out = subprocess.run(
            [sys.executable, "-c", code.format(p=str(Path(__file__).parent), f=name, n=N)],
            capture_output=True,
            text=True,
            env={**os.environ, **ONE},
        )
        try:
            res[name[6:]] = float(out.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            res[name[6:]] = None
            res[name[6:] + "_error"] = out.stderr[-800:]
        print(f"{name[6:]}: {res[name[6:]]} s per iteration", flush=True)
    t1, t2 = _scaling_cell(2, N, 1 << 18, "full", 3)
    res["overgmm_dask_2_workers"] = t2
    print(f"overgmm on 2 Dask workers: {t2:.2f} s per EM step", flush=True)
    try:
        res["spark_local2"], _ = _side_spark(N)
        print(f"Spark MLlib local[2]: {res['spark_local2']:.2f} s per iteration", flush=True)
    except Exception as err:  # report, do not hide
        res["spark_local2"] = None
        res["spark_error"] = f"{type(err).__name__}: {err}"[:800]
        print(f"Spark failed: {res['spark_error']}")
    _save("side", res)


def _save(part, res):
    OUT.mkdir(exist_ok=True)
    (OUT / f"large_data_{part}.json").write_text(json.dumps(res, indent=2, default=float))
    print(f"wrote {OUT / f'large_data_{part}.json'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["throughput", "rss", "scaling", "side"])
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--kinds", nargs="+", default=["diag", "full"], help="scaling: covariance types")
    ap.add_argument("--chunk", type=int, default=1 << 18)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-iter", type=int, default=3)
    args = ap.parse_args()
    args.rows = (
        args.rows or {"throughput": 1 << 22, "rss": 25_000_000, "scaling": 40 << 18, "side": 10_000_000}[args.part]
    )
    {"throughput": throughput, "rss": rss, "scaling": scaling, "side": side}[args.part](args)


if __name__ == "__main__":
    main()
