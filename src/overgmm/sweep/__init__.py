"""Studies at scale: a TOML study file (a base experiment and axes to sweep), expanded
into runs named by content hash, batched by seed into compiled ``vmap`` calls, run in
this process or on a Dask cluster, stored one Parquet file per run, resumable.

    from overgmm import sweep
    sweep.sweep("W6", "results/w6")      # configs/W6.toml (or a path); runs what is missing
    sweep.status("results/w6")                          # done / failed / missing
    sweep.load_finals("results/w6")                     # one row per run (pandas)
"""

from overgmm.sweep.execute import ONE_THREAD_ENV, plan, run_chunk, status, sweep
from overgmm.sweep.store import load_failures, load_finals, load_history
from overgmm.sweep.study import StudyError, expand, load

__all__ = [
    "ONE_THREAD_ENV",
    "StudyError",
    "expand",
    "load",
    "load_failures",
    "load_finals",
    "load_history",
    "plan",
    "run_chunk",
    "status",
    "sweep",
]
