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


def test_a_scheduler_out_of_reach_is_one_line_on_every_face(tmp_path, capsys):
    """`overgmm sweep --scheduler` to a closed port printed distributed's traceback."""
    import socket

    import dask
    import pytest

    from overgmm.cli import main

    with socket.socket() as s:  # a free port that nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(ConnectionError, match=f"cannot reach the Dask scheduler at {address}"):
            with cluster.connect(address):
                pass
        assert main(["sweep", "X4", "--out", str(tmp_path / "s"), "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert f"overgmm: cannot reach the Dask scheduler at {address}" in err and "Traceback" not in err
