"""Planning and running a sweep: what is missing, how runs are batched, where they run.

Batch-size rule: the R runs of a group (runs that differ only in their seed), sorted by
seed, are cut into ``k = ceil(R / batch)`` chunks of equal size ``ceil(R / k)`` (``batch``
defaults to 32; 50 seeds make two chunks of 25); the last chunk is padded to that size
with repeats of its last run, whose results are dropped. Each chunk is one compiled
``vmap`` call, and every chunk of a group has the same size, so a worker compiles a
group once. Chunks are the tasks. The chunks do not depend on what is already stored: a
chunk with any run missing is run whole and only its missing runs are stored, so a
resumed sweep computes every run in the same batch as an uninterrupted one and gives
the same numbers bit for bit.

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

from overgmm._running import LOCK
from overgmm.cluster import ONE_THREAD_ENV, connect, pin_to_one_core
from overgmm.config import ConfigError as StudyError
from overgmm.studies import check_study_runs as check_runs
from overgmm.studies import expand
from overgmm.studies import load_study as load
from overgmm.studies import study_path as study_path_of
from overgmm.sweep import store


def plan(study: dict, out: Path, batch: int = 32) -> tuple[list[dict], list[tuple[list[dict], int]]]:
    """All runs of the study, and the chunks ``(runs, size)`` of those not yet stored."""
    runs = expand(study)
    done = store.done_ids(out)
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        groups[r["group"]].append({**r, "missing": r["run_id"] not in done})
    chunks = []
    for members in groups.values():
        members.sort(key=lambda r: r["config"]["seed"])
        k = -(-len(members) // batch)
        size = -(-len(members) // k)
        for i in range(0, len(members), size):
            chunk = members[i : i + size]
            if any(r["missing"] for r in chunk):
                chunks.append((chunk, size))
    return runs, chunks


def run_chunk(chunk: list[dict], size: int) -> list[dict]:
    """Compute one chunk (in whatever process runs it). Returns, per run, either
    ``{"run": run, "result": ...}`` or ``{"run": run, "error": str, "traceback": str}``."""
    pin_to_one_core()
    from overgmm.sweep.build import run_group

    configs = [r["config"] for r in chunk]
    padded = configs + [configs[-1]] * (size - len(configs))
    try:
        with LOCK:  # a Dask worker with several threads: one chunk's runs at a time (overgmm._running)
            results = run_group(padded, chunk[0]["group"])
    except Exception as err:  # one bad setting fails its chunk; the sweep goes on
        if len(chunk) > 1:  # find which runs fail: one at a time
            return [item for r in chunk for item in run_chunk([r], 1)]
        tb = traceback.format_exc()
        return [{"run": r, "error": f"{type(err).__name__}: {err}", "traceback": tb} for r in chunk]
    return [{"run": r, "result": res} for r, res in zip(chunk, results, strict=False)]


def _record(out: Path, item: dict) -> bool | None:
    """Store one item of a chunk; None for a run that was stored before."""
    if not item["run"].get("missing", True):
        return None
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
    """Run every missing run of a study (a file, or a config name such as ``"W6"``) into
    ``out``; returns counts
    ``{"total", "skipped", "done", "failed"}``."""
    from tqdm import tqdm

    study_path = study_path_of(study_path)
    study = load(study_path)
    check_runs(study)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    copy = out / "study.toml"
    same_file = copy.exists() and Path(study_path).resolve() == copy.resolve()
    if copy.exists() and not same_file:
        old = {r["run_id"] for r in expand(load(copy))}
        if old != {r["run_id"] for r in expand(study)}:
            raise StudyError(f"{out} holds the results of a different study ({copy}); choose another --out")
    if not same_file:
        shutil.copyfile(study_path, copy)
    store.clean_temporaries(out)
    runs, chunks = plan(study, out, batch)
    todo = sum(r["missing"] for c, _ in chunks for r in c)
    counts = {"total": len(runs), "skipped": len(runs) - todo, "done": 0, "failed": 0}
    bar = tqdm(total=todo, desc=study["study"]["name"], unit="run", disable=not progress, dynamic_ncols=True)

    def take(items):
        new = 0
        for item in items:
            ok = _record(out, item)
            if ok is not None:
                counts["done" if ok else "failed"] += 1
                new += 1
        bar.update(new)
        bar.set_postfix(failed=counts["failed"])

    if scheduler is None and workers <= 1:
        for chunk, size in chunks:
            take(run_chunk(chunk, size))
    else:
        _run_dask(chunks, take, workers=workers, scheduler=scheduler)
    bar.close()
    return counts


def _run_dask(chunks, take, *, workers: int, scheduler: str | None) -> None:
    from distributed import as_completed

    with connect(scheduler, workers) as client:
        futures = {client.submit(run_chunk, chunk, size, pure=False): chunk for chunk, size in chunks}
        for fut in as_completed(futures):
            try:
                items = fut.result()
            except Exception as err:  # a lost worker or a result that cannot travel
                tb = traceback.format_exc()
                items = [{"run": r, "error": f"{type(err).__name__}: {err}", "traceback": tb} for r in futures[fut]]
            take(items)


def status(out: str | Path) -> dict:
    """Done / failed / missing counts of the study stored in ``out``."""
    out = Path(out)
    study = load(out / "study.toml")
    ids = {r["run_id"] for r in expand(study)}
    done = store.done_ids(out) & ids
    failed = store.failed_ids(out) & ids - done
    return {"total": len(ids), "done": len(done), "failed": len(failed), "missing": len(ids - done - failed)}


__all__ = ["ONE_THREAD_ENV", "plan", "run_chunk", "status", "sweep"]
