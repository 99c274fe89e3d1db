"""Data in chunks of rows (overgmm.chunks): sizes, sources, errors that name the file,
the row and the column."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from overgmm import chunks as C


def test_chunk_rows_are_powers_of_two_within_bounds():
    assert C.chunk_rows_for(10, 2**30) == 1 << 17
    assert C.chunk_rows_for(10, 1.0) == C.MIN_CHUNK_ROWS
    assert C.chunk_rows_for(1, 1e15) == C.MAX_CHUNK_ROWS
    for d in (1, 3, 64):
        rows = C.chunk_rows_for(d, 5e8)
        assert rows & (rows - 1) == 0


def test_array_chunks_map_in_order_with_weights():
    X = np.arange(20.0).reshape(10, 2)
    src = C.ArrayChunks(X, np.arange(10.0), chunk_rows=4)
    assert src.bounds == [(0, 4), (4, 8), (8, 10)] and src.path is None
    parts = src.map(lambda x, w, start: (start, x.shape[0], float(w.sum())))
    assert parts == [(0, 4, 6.0), (4, 4, 22.0), (8, 2, 17.0)]
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        C.ArrayChunks(X, np.ones(3))
    with pytest.raises(ValueError, match="must be 2-D"):
        C.ArrayChunks(np.ones(3))


def test_parquet_folder_locates_rows_and_names_null_cells(tmp_path):
    (tmp_path / "d").mkdir()
    pq.write_table(pa.table({"a": np.arange(5.0), "b": np.ones(5)}), tmp_path / "d" / "1.parquet", row_group_size=2)
    pq.write_table(pa.table({"a": np.arange(4.0), "b": np.ones(4)}), tmp_path / "d" / "2.parquet", row_group_size=3)
    src, names = C.read(tmp_path / "d")
    assert names == ["a", "b"] and src.n_rows == 9
    assert src.locate(0) == (tmp_path / "d" / "1.parquet", 0)
    assert src.locate(4) == (tmp_path / "d" / "1.parquet", 4)
    assert src.locate(6) == (tmp_path / "d" / "2.parquet", 1)
    with pytest.raises(IndexError):
        src.locate(9)
    pq.write_table(pa.table({"a": pa.array([1.0, 2.0, 3.0, None]), "b": np.ones(4)}), tmp_path / "n.parquet", 2)
    with pytest.raises(ValueError, match=r"n\.parquet: row 4, column 1 \('a'\) is missing \(null"):
        C.read_row_group(str(tmp_path / "n.parquet"), 1, ["a", "b"])
    got = C.read_row_group(str(tmp_path / "n.parquet"), 1, ["a", "b"], missing=True)  # nulls: NaN
    np.testing.assert_array_equal(got, [[3.0, 1.0], [np.nan, 1.0]])
    # integer and boolean columns with nulls too
    table = pa.table({"i": pa.array([1, None, 3], pa.int64()), "b": pa.array([True, None, False])})
    pq.write_table(table, tmp_path / "ib.parquet")
    got = C.read_row_group(str(tmp_path / "ib.parquet"), 0, ["i", "b"], missing=True)
    np.testing.assert_array_equal(got, [[1.0, 1.0], [np.nan, np.nan], [3.0, 0.0]])
    src, _ = C.read(tmp_path / "n.parquet", missing=True)
    assert src.missing and np.isnan(src.map(lambda X, w, a: X)[1][1, 0])


def test_read_chooses_the_source_by_file(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((6, 3)))
    src, names = C.read(tmp_path / "x.npy")
    assert isinstance(src.X, np.memmap) and src.path == tmp_path / "x.npy" and names == ["x0", "x1", "x2"]
    with pytest.raises(ValueError, match=r"x\.npy: a \.npy file has no column names"):
        C.read(tmp_path / "x.npy", columns=["x0"])
    (tmp_path / "t.csv").write_text("p,q\n1,2\n3,4\n")
    src, names = C.read(tmp_path / "t.csv", columns=["q"])
    assert names == ["q"] and src.X.tolist() == [[2.0], [4.0]]
    with pytest.raises(FileNotFoundError, match="nope.csv: no such file"):
        C.read(tmp_path / "nope.csv")


def _col_sums(X, w, start, scale):
    return (scale * (w @ X), np.array([float(w.sum())]))


def test_map_sum_on_dask_sums_in_a_tree_of_fanin_groups(monkeypatch):
    """A Dask source sums the chunks' results in groups of TREE_FANIN, level by level (on
    the workers when there is a cluster): 20 chunks -> groups of 8, 8, 4, then 3. The total
    equals the sum over the chunks in order; other sources sum in chunk order."""
    import dask.array as da

    X = np.random.default_rng(0).normal(size=(2000, 3))
    groups = []
    real = C.add

    def counting(*parts):
        if isinstance(parts[0], tuple):  # a whole result, not one of its fields
            groups.append(len(parts))
        return real(*parts)

    monkeypatch.setattr(C, "add", counting)
    src = C.DaskChunks(da.from_array(X, chunks=100))
    total, count = C.map_sum(src, _col_sums, 2.0)
    assert sorted(groups) == [3, 4, 8, 8]
    np.testing.assert_allclose(total, 2.0 * X.sum(0), rtol=1e-13)
    assert count[0] == 2000.0
    groups.clear()
    total_a, _ = C.map_sum(C.ArrayChunks(X, chunk_rows=4096), _col_sums, 2.0)
    assert groups == [1] and np.allclose(total_a, total, rtol=1e-13)
    assert C.add(None, None) is None


def test_a_parquet_column_chosen_twice_or_no_rows_is_named(tmp_path):
    pq.write_table(pa.table({"a": np.arange(4.0), "b": np.ones(4)}), tmp_path / "t.parquet")
    with pytest.raises(ValueError, match=r"t\.parquet: column 'a' is chosen twice"):
        C.ParquetChunks(tmp_path / "t.parquet", columns=["a", "b", "a"])
    pq.write_table(pa.table({"a": np.zeros(0)}), tmp_path / "e.parquet")
    with pytest.raises(ValueError, match=r"e\.parquet: the Parquet data holds no rows"):
        C.ParquetChunks(tmp_path / "e.parquet")


def test_dask_chunks_run_their_programs_one_at_a_time():
    """Dask's threaded scheduler runs several chunk tasks at once, and XLA:CPU runs each
    program on a pool of as many threads as cores, where a larger program waits for tasks of
    the same pool: chunks at once filled the pool with waiting threads and a full fit in
    d = 10 hung. Chunk functions now run one at a time in a process (the data still loads
    in parallel); the fit itself: tests/test_estimator_start.py, d = 30 on a dask array."""
    import threading
    import time

    import dask.array as da

    lock, now, most = threading.Lock(), [0], [0]

    def busy(X, w, start):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.02)
        with lock:
            now[0] -= 1
        return (w @ X,)

    X = np.random.default_rng(0).normal(size=(800, 3))
    (total,) = C.map_sum(C.DaskChunks(da.from_array(X, chunks=50)), busy)
    np.testing.assert_allclose(total, X.sum(0), rtol=1e-13)
    assert most[0] == 1
