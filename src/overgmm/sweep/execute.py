"""Planning and running a sweep: what is missing, how runs are batched, where they run.

Batch-size rule: runs that differ only in their seed (one *group*) are cut into chunks
of ``size = min(batch, runs missing in the group)`` runs (``batch`` defaults to 32); the
last chunk is padded to ``size`` with repeats of its last run, whose results are
dropped. Each chunk is one compiled ``vmap`` call, and every chunk of a group has the
same size, so a worker compiles a group once. Chunks are the tasks.

Where: in this process (default, ``workers=1``); on a local Dask cluster of ``workers``
single-threaded processes; or on an existing Dask cluster (``scheduler``). Results come
back to this process, which alone writes the store, so a killed sweep leaves whole files
only and a rerun computes exactly what is missing.
"""

from __future__ import annotations

import shutil
import traceback
from collections import defaultdict
from pathlib import Path

from overgmm.sweep import store
from overgmm.sweep.study import expand, load

# Environment for single-threaded workers (JAX/XLA and BLAS pinned to one thread).
ONE_THREAD_ENV = {
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def plan(study: dict, out: Path, batch: int = 32) -> tuple[list[dict], list[tuple[list[dict], int]]]:
    """All runs of the study, and the chunks ``(runs, size)`` of those not yet stored."""
    runs = expand(study)
    done = store.done_ids(out)
    missing = [r for r in runs if r["run_id"] not in done]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in missing:
        groups[r["group"]].append(r)
    chunks = []
    for members in groups.values():
        size = min(batch, len(members))
        for i in range(0, len(members), size):
            chunks.append((members[i : i + size], size))
    return runs, chunks


def run_chunk(chunk: list[dict], size: int) -> list[dict]:
    """Compute one chunk (in whatever process runs it). Returns, per run, either
    ``{"run": run, "result": ...}`` or ``{"run": run, "error": str, "traceback": str}``."""
    from overgmm.sweep.build import run_batch

    configs = [r["config"] for r in chunk]
    padded = configs + [configs[-1]] * (size - len(configs))
    try:
        results = run_batch(padded, chunk[0]["group"])
    except Exception as err:  # one bad setting fails its chunk; the sweep goes on
        tb = traceback.format_exc()
        return [{"run": r, "error": f"{type(err).__name__}: {err}", "traceback": tb} for r in chunk]
    return [{"run": r, "result": res} for r, res in zip(chunk, results, strict=False)]


def _record(out: Path, item: dict) -> bool:
    if "error" in item:
        store.write_failure(out, item["run"], item["error"], item["traceback"])
        return False
    store.write_run(out, item["run"], item["result"])
    return True


def sweep(
    study_path: str | Path,
    out: str | Path,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    batch: int = 32,
    progress: bool = True,
) -> dict:
    """Run every missing run of a study into ``out``; returns counts
    ``{"total", "skipped", "done", "failed"}``."""
    from tqdm import tqdm

    study = load(study_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(study_path, out / "study.toml") if Path(study_path).resolve() != (
        out / "study.toml"
    ).resolve() else None
    store.clean_temporaries(out)
    runs, chunks = plan(study, out, batch)
    todo = sum(len(c) for c, _ in chunks)
    counts = {"total": len(runs), "skipped": len(runs) - todo, "done": 0, "failed": 0}
    bar = tqdm(total=todo, desc=study["study"]["name"], unit="run", disable=not progress, dynamic_ncols=True)

    def take(items):
        for item in items:
            ok = _record(out, item)
            counts["done" if ok else "failed"] += 1
        bar.update(len(items))
        bar.set_postfix(failed=counts["failed"])

    if scheduler is None and workers <= 1:
        for chunk, size in chunks:
            take(run_chunk(chunk, size))
    else:
        _run_dask(chunks, take, workers=workers, scheduler=scheduler)
    bar.close()
    return counts


def _run_dask(chunks, take, *, workers: int, scheduler: str | None) -> None:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env=ONE_THREAD_ENV,
            silence_logs=40,
        )
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = [client.submit(run_chunk, chunk, size, pure=False) for chunk, size in chunks]
        for fut in as_completed(futures):
            take(fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def status(out: str | Path) -> dict:
    """Done / failed / missing counts of the study stored in ``out``."""
    out = Path(out)
    study = load(out / "study.toml")
    ids = {r["run_id"] for r in expand(study)}
    done = store.done_ids(out) & ids
    failed = store.failed_ids(out) & ids - done
    return {"total": len(ids), "done": len(done), "failed": len(failed), "missing": len(ids - done - failed)}


__all__ = ["ONE_THREAD_ENV", "plan", "run_chunk", "status", "sweep"]
