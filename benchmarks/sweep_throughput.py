"""Sweep throughput: batched vmap against one trial per task, and 1 vs 2 local Dask
workers (single-threaded). Run by hand on a quiet machine:

    .venv/bin/python benchmarks/sweep_throughput.py [--quick]

Prints trials per second and ratios measured in the same run. "cold" includes JAX
compilation (a fresh process per measurement); "warm" is a second sweep in the same
process, where the compiled batch functions are reused (compilation is paid once per
shape and worker, not per task).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

STUDY = """
[study]
name = "{name}"
[base]
steps = {steps}
stride = {steps}
[base.teacher]
d = {d}
m = 3
scale = 2.1213203435596424
weights = [0.2, 0.3, 0.5]
seed = 1
[base.student]
n = {n}
init = "perturbed"
weights = "split"
[base.algorithm]
name = "polyak"
step_size = 1.0
n_short = 10
[base.backend]
kind = "quadrature"
defensive = false
nodes = {nodes}
half_width = {hw}
[axes]
seed = {{ start = 0, stop = {seeds} }}
"""

CHILD = """
import json, sys, time
from overgmm import sweep
study, out, batch, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t0 = time.perf_counter()
sweep.sweep(study, out + "/cold", batch=batch, workers=workers, progress=False)
t1 = time.perf_counter()
warm = None
if workers == 1:
    sweep.sweep(study, out + "/warm", batch=batch, workers=workers, progress=False)
    warm = time.perf_counter() - t1
print(json.dumps({"cold": t1 - t0, "warm": warm}))
"""


NAIVE = """
import json, sys, time, tomllib
import jax
import overgmm as og
from overgmm.sweep.build import backend_of, student_of, teacher_of
from overgmm.sweep.study import expand, load
runs = expand(load(sys.argv[1]))
t0 = time.perf_counter()
for r in runs:  # the throwaway loop: one og.run per trial, each compiling its own loop
    cfg = r["config"]
    teacher = teacher_of(cfg)
    problem = og.Problem.population(teacher, backend=backend_of(cfg, teacher))
    alg = og.polyak(problem, 1.0, 10)
    og.run(alg, student_of(cfg, teacher, cfg["seed"]), cfg["steps"], stride=cfg["steps"])
print(json.dumps({"cold": time.perf_counter() - t0}))
"""


def naive(study: Path) -> float:
    res = subprocess.run([sys.executable, "-c", NAIVE, str(study)], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])["cold"]


def measure(study: Path, tmp: Path, batch: int, workers: int, env: dict | None = None) -> dict:
    out = tempfile.mkdtemp(dir=tmp)
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(study), out, str(batch), str(workers)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer steps and trials (a smoke run)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    steps = 200 if args.quick else 2000
    cases = {
        "small (d=2, n=9, 373 nodes)": dict(d=2, n=9, nodes=21, hw=6.0, seeds=16),
        "W6-size (d=5, n=20, 16875 nodes)": dict(d=5, n=20, nodes=11, hw=6.0, seeds=2 if args.quick else 4),
    }
    print(f"{steps} iterations per trial; trials per second (higher is better)")
    for label, c in cases.items():
        path = tmp / f"{c['d']}.toml"
        path.write_text(STUDY.format(name=label, steps=steps, **c))
        per_task = measure(path, tmp, batch=1, workers=1)
        batched = measure(path, tmp, batch=c["seeds"], workers=1)
        n = c["seeds"]
        loop = naive(path)
        print(
            f"{label:34s} a loop of og.run (compiling per trial) {n / loop:.3f}/s; the batched sweep (cold) is "
            f"{loop / batched['cold']:.2f}x faster"
        )
        line = {k: {"one per task": n / per_task[k], "batched": n / batched[k]} for k in ("cold", "warm")}
        for k, v in line.items():
            print(
                f"{label:34s} {k}: one trial per task {v['one per task']:.3f}/s, batched vmap {v['batched']:.3f}/s, "
                f"ratio {v['batched'] / v['one per task']:.2f}x"
            )
    # Scaling: 1 vs 2 single-threaded (pinned) local Dask workers, 8 chunks of the small problem.
    c = dict(d=2, n=9, nodes=21, hw=6.0, seeds=64)
    path = tmp / "scaling.toml"
    path.write_text(STUDY.format(name="scaling", steps=steps * 3, **c))
    one = measure(path, tmp, batch=8, workers=1)  # in-process reference (JAX may use both cores)
    d1 = _dask(path, tmp, 1)
    d2 = _dask(path, tmp, 2)
    print(
        f"scaling (32 trials in 4 chunks, {steps * 2} iterations): in-process {one['cold']:.1f} s "
        f"(warm {one['warm']:.1f} s), Dask 1 worker {d1:.1f} s, 2 workers {d2:.1f} s, speed-up {d1 / d2:.2f}x"
    )


def _dask(path: Path, tmp: Path, workers: int) -> float:
    code = f"""
import time
from distributed import Client, LocalCluster
from overgmm.sweep.execute import ONE_THREAD_ENV
from overgmm import sweep
cluster = LocalCluster(n_workers={workers}, threads_per_worker=1, processes=True, dashboard_address=None,
                       env=ONE_THREAD_ENV, silence_logs=40)
client = Client(cluster)
t0 = time.perf_counter()
sweep.sweep({str(path)!r}, {tempfile.mkdtemp(dir=tmp)!r}, scheduler=cluster.scheduler_address, batch=8, progress=False)
print(time.perf_counter() - t0)
client.close(); cluster.close()
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(res.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
