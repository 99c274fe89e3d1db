"""The result store of a sweep: one Parquet file per run, named by the run's content
hash, written to a temporary name and renamed into place (so a file is either whole or
absent); failures as JSON records; the combined tables for analysis.

    DIR/study.toml             the study as run (copied)
    DIR/runs/<run_id>.parquet  the run's history (one row per record) and, in the file's
                               metadata, its resolved config, axis values and final state
    DIR/failures/<run_id>.json a run that raised: config, error, traceback
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def runs_dir(out: Path) -> Path:
    return Path(out) / "runs"


def failures_dir(out: Path) -> Path:
    return Path(out) / "failures"


def _atomic_write_bytes(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def run_frame(run: dict, result: dict) -> pd.DataFrame:
    """One run's records as a table: a column per measure (vector measures split into
    ``name_j``), the run id, its axis values and its status."""
    cols = {}
    for name, arr in result["columns"].items():
        arr = np.asarray(arr)
        if arr.ndim == 1:
            cols[name] = arr
        else:
            for j in range(arr.shape[1]):
                cols[f"{name}_{j}"] = arr[:, j]
    df = pd.DataFrame(cols)
    df.insert(0, "run_id", run["run_id"])
    for k, v in run["axes"].items():
        df[k] = json.dumps(v) if isinstance(v, list | dict) else v
    df["status"] = result["status"]
    return df


def write_run(out: Path, run: dict, result: dict) -> Path:
    """Store one finished run atomically; remove a failure record it supersedes."""
    table = pa.Table.from_pandas(run_frame(run, result), preserve_index=False)
    meta = {
        b"overgmm.config": json.dumps(run["config"]).encode(),
        b"overgmm.axes": json.dumps(run["axes"]).encode(),
        b"overgmm.final": json.dumps(
            {**result["final"], "status": result["status"], "failed_at": result["failed_at"]}
        ).encode(),
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    path = runs_dir(out) / f"{run['run_id']}.parquet"
    _atomic_write_bytes(path, lambda tmp: pq.write_table(table, tmp))
    (failures_dir(out) / f"{run['run_id']}.json").unlink(missing_ok=True)
    return path


def write_failure(out: Path, run: dict, error: str, tb: str) -> Path:
    path = failures_dir(out) / f"{run['run_id']}.json"
    record = {"run_id": run["run_id"], "axes": run["axes"], "config": run["config"], "error": error, "traceback": tb}
    _atomic_write_bytes(path, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
    return path


def done_ids(out: Path) -> set[str]:
    return {p.stem for p in runs_dir(out).glob("*.parquet")}


def failed_ids(out: Path) -> set[str]:
    return {p.stem for p in failures_dir(out).glob("*.json")}


def load_history(out: Path) -> pd.DataFrame:
    """Every stored run's history, one row per record (the Parquet dataset ``DIR/runs``)."""
    files = sorted(runs_dir(out).glob("*.parquet"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def load_finals(out: Path) -> pd.DataFrame:
    """One row per stored run: its axis values, last record, final means and weights."""
    rows = []
    for f in sorted(runs_dir(out).glob("*.parquet")):
        t = pq.read_table(f)
        meta = t.schema.metadata
        last = t.slice(t.num_rows - 1).to_pandas().iloc[0].to_dict()
        final = json.loads(meta[b"overgmm.final"])
        rows.append(
            {
                **last,
                "final_means": final["means"],
                "final_weights": final["weights"],
                "config": json.loads(meta[b"overgmm.config"]),
            }
        )
    return pd.DataFrame(rows)


def load_failures(out: Path) -> pd.DataFrame:
    """The failures table: run id, axis values, error and traceback."""
    recs = [json.loads(p.read_text()) for p in sorted(failures_dir(out).glob("*.json"))]
    return pd.DataFrame(
        [{"run_id": r["run_id"], **r["axes"], "error": r["error"], "traceback": r["traceback"]} for r in recs]
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_temporaries(out: Path) -> int:
    """Remove temporary files that killed sweeps left behind (those of live processes
    stay); returns how many."""
    n = 0
    for d in (runs_dir(out), failures_dir(out)):
        for p in d.glob(".*.tmp"):
            try:
                pid = int(p.name.rsplit(".", 2)[-2])
            except ValueError:
                pid = -1
            if pid > 0 and _alive(pid):
                continue
            p.unlink(missing_ok=True)
            n += 1
    return n
