"""Where chunked work runs: this process, a local Dask cluster, or an existing one.

Used by the sweeps (:mod:`overgmm.sweep.execute`) and by fits on chunked data
(:mod:`overgmm.chunks`). :func:`connect` gives a ``distributed.Client`` for a scheduler
address, or for a local cluster of ``workers`` single-threaded processes, or None (this
process) when neither is asked for.

Local workers run with :data:`ONE_THREAD_ENV`. XLA's CPU client keeps a thread pool
whatever its flags say (measured: 1.75 cores busy with --xla_cpu_multi_thread_eigen=false),
so ``OVERGMM_PIN_CPU=1`` also pins each local worker process to one core (worker i to
core i mod cores) the first time it runs our code (:func:`pin_to_one_core`); the BLAS
variables cover NumPy. :data:`MALLOC_ENV` replaces the ``MALLOC_TRIM_THRESHOLD_`` that
Dask's nanny gives its workers, under which the full-covariance E-step ran 4-5x slower
(measured); on other clusters start workers without a nanny or with the same variables.
"""

from __future__ import annotations

import contextlib
import os

ONE_THREAD_ENV = {
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OVERGMM_PIN_CPU": "1",
    # workers share the persistent compilation cache: its entries are written whole by
    # rename and checked on read (overgmm._compilation_cache), so workers compiling the
    # same loop at once never read a torn entry
}
# Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (before the process starts,
# when glibc reads it), which also fixes glibc's mmap threshold at 128 KiB: every large
# temporary of a compiled kernel is then a fresh mmap. Measured: the full-covariance
# E-step ran 4-5x slower in a worker. These are glibc's own dynamic maxima.
MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": "67108864", "MALLOC_MMAP_THRESHOLD_": "33554432"}
_PINNED = False


def pin_to_one_core() -> None:
    """In a Dask worker started with OVERGMM_PIN_CPU=1: bind every thread of this process
    to one core (Linux), once, before JAX creates its thread pool."""
    global _PINNED
    if _PINNED or os.environ.get("OVERGMM_PIN_CPU") != "1" or not hasattr(os, "sched_setaffinity"):
        return
    _PINNED = True
    try:
        from distributed import get_worker

        index = int(str(get_worker().name).rsplit("-", 1)[-1])
    except Exception:
        index = os.getpid()
    cores = sorted(os.sched_getaffinity(0))
    core = {cores[index % len(cores)]}
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), core)
        except OSError:
            pass


def local_cluster(workers: int):
    """A local Dask cluster of ``workers`` single-threaded, pinned processes (no dashboard)."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ": MALLOC_ENV}):
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env=ONE_THREAD_ENV,
            silence_logs=40,
        )


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int = 1):
    """A ``distributed.Client`` on ``scheduler`` (an address such as ``tcp://host:8786``), or
    on a local cluster of ``workers`` processes when ``workers > 1``; None (run here) when
    neither. Closed (and the local cluster shut down) on exit."""
    if scheduler is None and workers <= 1:
        yield None
        return
    from distributed import Client

    cluster = local_cluster(workers) if scheduler is None else None
    try:
        client = Client(cluster if cluster is not None else scheduler)
    except OSError as err:  # distributed's own message, without its traceback through tornado
        if cluster is not None:
            cluster.close()
        where = f"the Dask scheduler at {scheduler}" if scheduler is not None else "the local Dask cluster"
        raise ConnectionError(f"cannot reach {where}: {err}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
