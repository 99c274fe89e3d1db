"""Where chunked work runs (overgmm.cluster): here by default, single-threaded workers."""

import os

from overgmm import cluster


def test_connect_runs_here_unless_asked():
    with cluster.connect(None, 1) as client:
        assert client is None
    with cluster.connect(None, 0) as client:
        assert client is None


def test_workers_are_single_threaded_and_share_the_cache():
    env = cluster.ONE_THREAD_ENV
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert "intra_op_parallelism_threads=1" in env["XLA_FLAGS"] and env["OVERGMM_PIN_CPU"] == "1"
    assert "OVERGMM_CACHE" not in env  # workers use the persistent compilation cache
    assert int(cluster.MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"]) >= 1 << 20


def test_pinning_is_a_no_op_outside_a_pinned_worker(monkeypatch):
    monkeypatch.delenv("OVERGMM_PIN_CPU", raising=False)
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cluster.pin_to_one_core()
    if before is not None:
        assert os.sched_getaffinity(0) == before
