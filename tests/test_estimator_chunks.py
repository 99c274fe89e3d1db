"""OverparamGMM on data in chunks: memmaps, dask arrays (local threads and a 2-worker
cluster, including a worker killed mid-fit), Parquet; the same fit as in memory."""

import os
import signal

import dask.array as da
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from overgmm import chunks as C
from overgmm import streaming
from overgmm.estimator import OverparamGMM


def data(n=3000, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(n // 2, d)), rng.normal(size=(n - n // 2, d)) * 0.6 + 4])
    return X[rng.permutation(n)]


def same_fit(a, b, rtol=1e-8):
    assert a.n_components_ == b.n_components_ and a.covariance_type_ == b.covariance_type_
    assert a.n_iter_ == b.n_iter_ and a.n_merges_ == b.n_merges_
    assert abs(a.lower_bound_ - b.lower_bound_) <= rtol * abs(a.lower_bound_)
    order_a, order_b = np.lexsort(a.means_.T), np.lexsort(b.means_.T)
    np.testing.assert_allclose(b.means_[order_b], a.means_[order_a], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(b.weights_[order_b], a.weights_[order_a], rtol=rtol)
    if a.covariance_type_ == "tied":  # one shared covariance
        np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=rtol)
    else:
        np.testing.assert_allclose(b.covariances_[order_b], a.covariances_[order_a], rtol=rtol)


@pytest.fixture(scope="module")
def X():
    return data()


@pytest.fixture(scope="module")
def in_memory(X):
    return {kind: OverparamGMM(covariance_type=kind, random_state=0).fit(X) for kind in ("diag", "full", "tied")}


@pytest.mark.parametrize("kind", ["diag", "full", "tied"])
def test_memmap_over_the_budget_and_dask_on_threads_equal_the_in_memory_fit(tmp_path, X, in_memory, kind):
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    small_budget = OverparamGMM(covariance_type=kind, random_state=0, memory_budget=X.nbytes)
    assert streaming.__name__ and C.chunk_rows_for(3, X.nbytes) == 4096
    same_fit(in_memory[kind], small_budget.fit(mm))
    same_fit(in_memory[kind], OverparamGMM(covariance_type=kind, random_state=0).fit(da.from_array(X, chunks=700)))


def test_auto_with_weights_on_a_subsample_of_large_data_is_the_same_on_chunks(X, monkeypatch):
    """The "auto" type with sample weights on chunks equals the in-memory fit. Beyond AUTO_ROWS
    training rows "auto" fits its candidates on AUTO_ROWS of them chosen by value: exactly
    that many in memory, the same rows on chunks (threshold from every chunk's smallest
    hashes). On chunks of a NumPy array: a dask array, tested above, goes through the same
    map at about twice the time here. The polishes between merges stop coarse on both faces
    (COARSE_POLISH_ROWS lowered so that every fit here is "large")."""
    from overgmm import streaming
    from overgmm.estimator import _fit as F

    monkeypatch.setattr(F, "AUTO_ROWS", 700)
    monkeypatch.setattr(F, "COARSE_POLISH_ROWS", 300)
    h = streaming.sample_hash(X)
    fit_rows = ~streaming.holdout_mask(X)
    assert int(np.sum(fit_rows & (h <= np.uint64(streaming.kth_smallest(h[fit_rows], 700))))) == 700
    w = np.random.default_rng(3).integers(0, 3, size=X.shape[0]).astype(float)
    a = OverparamGMM(random_state=1).fit(X, sample_weight=w)
    sampled = []  # chunks read to find the candidates' rows: one gather, not every step
    real = streaming.View.weights
    monkeypatch.setattr(streaming.View, "weights", lambda v, x, w: sampled.append(v.below) or real(v, x, w))
    b = OverparamGMM(random_state=1).fit(C.ArrayChunks(X, w, chunk_rows=1000))
    assert sum(below is not None for below in sampled) == 3  # 3 chunks
    same_fit(a, b)
    types = {"spherical", "diag", "tied", "full", "rotated"}
    assert a.validation_scores_.keys() == b.validation_scores_.keys() == types
    for k in a.validation_scores_:
        assert b.validation_scores_[k] == pytest.approx(a.validation_scores_[k], rel=1e-9)


def test_dead_slots_dropped_on_chunks_give_the_in_memory_fit(monkeypatch, X):
    """A fit that drops its dead component slots between merge rounds (COMPACT_ROWS lowered
    so that this fit is "large") is the same on chunks as in memory, and both ran narrower."""
    from overgmm.estimator import _slots

    monkeypatch.setattr(_slots, "COMPACT_ROWS", 0)
    widths = []
    real = _slots.Slots.narrow
    monkeypatch.setattr(_slots.Slots, "narrow", lambda s, *a: widths.append(a[-1]) or real(s, *a))
    a = OverparamGMM(covariance_type="full", random_state=0).fit(X)
    b = OverparamGMM(covariance_type="full", random_state=0).fit(C.ArrayChunks(X, chunk_rows=1000))
    assert widths[: len(widths) // 2] == widths[len(widths) // 2 :] and min(widths) == 8
    same_fit(a, b)


def test_inference_on_a_dask_array_is_lazy_block_by_block_and_the_same(X, in_memory):
    """score_samples / predict_proba / predict of a dask array give dask arrays over its row
    chunks (nothing computed until asked), equal to the NumPy results; score computes the
    mean; a wrong shape is an error at once; an empty block gives an empty block."""
    est = in_memory["full"]
    Xd = da.from_array(X, chunks=(700, 1))  # columns split too: rechunked to whole rows
    ll, proba, labels = est.score_samples(Xd), est.predict_proba(Xd), est.predict(Xd)
    assert all(isinstance(a, da.Array) for a in (ll, proba, labels))
    assert ll.chunks[0] == proba.chunks[0] == Xd.chunks[0] and proba.shape == (X.shape[0], est.n_components_)
    np.testing.assert_allclose(ll.compute(), est.score_samples(X), rtol=1e-12)
    np.testing.assert_allclose(proba.compute(), est.predict_proba(X), rtol=1e-10, atol=1e-15)
    np.testing.assert_array_equal(labels.compute(), est.predict(X))
    assert est.score(Xd) == pytest.approx(est.score(X), rel=1e-12)
    assert est.score_samples(da.from_array(X[:0], chunks=700)).compute().shape == (0,)
    with pytest.raises(ValueError, match=r"shape \(3000, 2\).*fitted on 3 features"):
        est.score_samples(da.from_array(X[:, :2], chunks=700))


def test_parquet_dataset_folder_equals_the_in_memory_fit(tmp_path, X):
    (tmp_path / "ds").mkdir()
    for i, part in enumerate(np.array_split(X, 3)):
        pq.write_table(pa.table({f"c{j}": part[:, j] for j in range(3)}), tmp_path / "ds" / f"p{i}.parquet", 400)
    src = C.ParquetChunks(tmp_path / "ds")
    assert src.n_rows == 3000 and src.columns == ["c0", "c1", "c2"] and len(src.bounds) == 9
    same_fit(
        OverparamGMM(covariance_type="diag", random_state=0).fit(X),
        OverparamGMM(covariance_type="diag", random_state=0).fit(src),
    )


@pytest.fixture(scope="module")
def X_gaps(X):
    Xm = X[:600].copy()
    Xm[np.random.default_rng(7).random(Xm.shape) < 0.1] = np.nan
    Xm[np.isnan(Xm).all(axis=1), 0] = 0.5  # every row keeps an observed value
    return Xm


@pytest.mark.parametrize("kind", ["diag", "full", "auto"])
def test_chunked_data_with_gaps_equals_the_in_memory_fit(X_gaps, kind):
    """allow_missing=True on chunks: exact EM on each row's observed features, chunk by
    chunk (a dask array for diag, chunks of a NumPy array for the others, and a NumPy array
    over the memory budget), the same fit as in
    memory: components, steps, merges, likelihood (with the observed features' Jacobian),
    "auto"'s validation scores."""
    est = lambda **kw: OverparamGMM(covariance_type=kind, allow_missing=True, random_state=0, tol=1e-3, **kw)  # noqa: E731
    a = est().fit(X_gaps)
    b = est().fit(da.from_array(X_gaps, chunks=250) if kind == "diag" else C.ArrayChunks(X_gaps, chunk_rows=250))
    same_fit(a, b)
    for k in a.validation_scores_:
        assert b.validation_scores_[k] == pytest.approx(a.validation_scores_[k], rel=1e-9)
    np.testing.assert_allclose(b.score_samples(X_gaps[:50]), a.score_samples(X_gaps[:50]), rtol=1e-8)
    if kind == "diag":
        same_fit(a, est(memory_budget=X_gaps.nbytes).fit(X_gaps))


def test_chunked_gaps_errors_name_the_row_or_feature(X_gaps):
    bad = X_gaps.copy()
    bad[400] = np.nan
    with pytest.raises(ValueError, match="row 400 .*no observed value"):
        OverparamGMM(allow_missing=True).fit(da.from_array(bad, chunks=250))
    bad = X_gaps.copy()
    bad[:, 1] = np.nan
    bad[:, 0] = np.linspace(0, 1, len(bad))  # every row keeps an observed value
    with pytest.raises(ValueError, match="feature 1 has no observed value"):
        OverparamGMM(allow_missing=True).fit(da.from_array(bad, chunks=250))
    bad = X_gaps.copy()
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="row 3 .*column 2"):
        OverparamGMM(allow_missing=True).fit(da.from_array(bad, chunks=250))
    with pytest.raises(ValueError, match="non-finite value nan"):
        OverparamGMM().fit(da.from_array(X_gaps, chunks=500))


def test_bad_chunked_input_names_the_problem(tmp_path, X):
    bad = X.copy()
    bad[1234, 2] = np.nan
    with pytest.raises(ValueError, match="row 1234.*column 2"):
        OverparamGMM().fit(da.from_array(bad, chunks=1000))
    with pytest.raises(ValueError, match="polyak"):
        OverparamGMM(algorithm="polyak").fit(da.from_array(X, chunks=1000))
    pq.write_table(pa.table({"a": X[:, 0], "name": ["x"] * 3000}), tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="column 'name' is not numeric"):
        C.ParquetChunks(tmp_path / "t.parquet")
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        C.read(tmp_path / "nope.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="junk.parquet: not a readable Parquet file"):
        C.ParquetChunks(tmp_path / "junk.parquet")
    with pytest.raises(OSError, match="cannot read row group 5"):
        C.read_row_group(str(tmp_path / "t.parquet"), 5, ["a"])
    with pytest.raises(ValueError, match="must hold real numbers"):
        OverparamGMM().fit(da.from_array(np.array([["a", "b"]] * 4)))


@pytest.fixture(scope="module")
def cluster_client():
    from distributed import Client

    from overgmm.cluster import local_cluster

    cluster = local_cluster(2)
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_two_worker_cluster_survives_a_killed_worker_with_the_same_fit(cluster_client, X, in_memory, monkeypatch):
    """Only statistics travel; a worker killed after the third pass is replaced, Dask
    recomputes its chunks and tasks, and the fit equals the in-memory one."""
    seen = set()
    pids = cluster_client.run(os.getpid)
    assert len(pids) == 2
    real = streaming.statistics_sums
    calls = []

    def killing(chunks, view, students):
        calls.append(1)
        if len(calls) == 3:
            addr, pid = sorted(cluster_client.run(os.getpid).items())[0]
            os.kill(pid, signal.SIGKILL)
            seen.add(addr)
        return real(chunks, view, students)

    monkeypatch.setattr(streaming, "statistics_sums", killing)
    b = OverparamGMM(covariance_type="full", random_state=0).fit(da.from_array(X, chunks=500))
    assert len(calls) > 5 and seen
    same_fit(in_memory["full"], b)
    cluster_client.wait_for_workers(2, timeout=60)


def _weighted_sum(x, w, start):
    return (w @ x,)


def test_sums_are_reduced_on_the_workers(cluster_client, X):
    """On a cluster the chunks' sums are added on the workers (a tree of TREE_FANIN): the
    client's result is the one task at the root, and equals the sum over all rows."""
    from distributed import get_task_stream

    src = C.DaskChunks(da.from_array(X, chunks=100))  # 30 chunks: 4 groups, then 1
    with get_task_stream(client=cluster_client) as stream:
        (total,) = C.map_sum(src, _weighted_sum)
    np.testing.assert_allclose(total, X.sum(0), rtol=1e-12)
    adds = [t for t in stream.data if str(t["key"]).startswith("add-")]
    assert len(adds) == 5 and all(t["worker"] in cluster_client.scheduler_info()["workers"] for t in adds)


def test_verbose_shows_a_progress_bar_and_columns_select(tmp_path, X, capsys, monkeypatch):
    from overgmm.estimator import _progress

    monkeypatch.setattr(_progress, "DELAY", 0.0)  # the bar shows from the start
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2]}), tmp_path / "t.parquet", 1000)
    src = C.ParquetChunks(tmp_path / "t.parquet", columns=["a", "c"])
    assert src.n_features == 2 and src.columns == ["a", "c"]
    OverparamGMM(covariance_type="diag", random_state=0, verbose=1, max_iter=5).fit(src)
    err = capsys.readouterr().err
    assert "fit (diag)" in err and "log-likelihood/sample" in err
    with pytest.raises(ValueError, match="no column named 'z'"):
        C.ParquetChunks(tmp_path / "t.parquet", columns=["a", "z"])
