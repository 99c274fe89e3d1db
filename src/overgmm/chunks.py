"""Data in chunks of rows: in memory, memory-mapped, in Parquet files, or a Dask array.

A chunked source maps a function over its chunks, in chunk order, and returns the
results: ``chunks.map(fn, *args)`` calls ``fn(X, w, start, *args)`` with ``X`` the chunk's
rows ``(b, d)`` as float64, ``w`` its sample weights ``(b,)`` and ``start`` the index of
its first row in the whole data. Only ``fn``'s results travel: with a Dask array on a
``distributed`` cluster the chunks stay persisted on the workers and ``fn`` runs there.
:func:`map_sum` sums the results (the statistics of an EM step): a Dask source sums them
on its workers, in a tree of fan-in :data:`TREE_FANIN`, and only the total reaches the
client; every other source sums them in chunk order on the caller.

* :class:`ArrayChunks`: a NumPy array or ``np.memmap`` (``.npy`` files via
  :func:`read`), sliced into ``chunk_rows`` rows.
* :class:`ParquetChunks`: a Parquet file or a folder of them (a dataset), one row group a
  chunk, numeric columns only, read with ``pyarrow`` one row group at a time.
* :class:`DaskChunks`: a ``dask.array.Array`` (rows in chunks, columns whole), on the
  cluster of the current ``distributed.Client`` or on local threads when there is none.

Errors name what is wrong: a missing or unreadable file or row group, a non-numeric
column (with its name), the shapes. Non-finite values are found by the first pass over the
data (:func:`overgmm.streaming.scan`), which names the chunk and row.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from overgmm._errors import FIT_ADVICE, BadValue
from overgmm._running import LOCK
from overgmm.csvfile import repeated

DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes: 1 GiB
MIN_CHUNK_ROWS = 4096
MAX_CHUNK_ROWS = 1 << 20
# A chunk's float64 copies alive at once (read, cast, standardized, padded, kernel input)
# take at most a 1/CHUNK_SHARE share of the budget: the rest is for the process itself
# (JAX and its compiled code: about 0.5 GB) and a file's row group being read.
CHUNK_SHARE = 64
# results summed per task of the reduction tree on a Dask cluster: with at most this many
# chunks the sum is one left fold in chunk order, as on every other source
TREE_FANIN = 8


def add(*parts):
    """The sum of results of one structure: arrays, or (named) tuples of them (None kept),
    a left fold in the order given."""
    first = parts[0]
    if first is None:
        return None
    if isinstance(first, tuple):
        summed = [add(*items) for items in zip(*parts, strict=True)]
        return type(first)(*summed) if hasattr(first, "_fields") else tuple(summed)
    total = np.array(first, dtype=np.result_type(first), copy=True)
    for part in parts[1:]:
        total += part
    return total


def map_sum(chunks, fn, *args):
    """The sum (:func:`add`) of ``fn``'s results over every chunk of ``chunks``: its own
    ``map_sum`` where it has one (a Dask source: a tree on the workers), else the results
    of ``chunks.map`` summed in chunk order."""
    if hasattr(chunks, "map_sum"):
        return chunks.map_sum(fn, *args)
    return add(*chunks.map(fn, *args))


def chunk_rows_for(n_features: int, memory_budget: float = DEFAULT_MEMORY_BUDGET) -> int:
    """Rows per chunk: ``memory_budget / (64 x 8 bytes x n_features)`` (2^17 rows for
    10 features and 1 GiB), a power of two between :data:`MIN_CHUNK_ROWS` and
    :data:`MAX_CHUNK_ROWS` (the E-step kernel itself works in blocks of about 2 MiB
    whatever the chunk)."""
    rows = memory_budget / (CHUNK_SHARE * 8 * max(n_features, 1))
    rows = 1 << max(0, int(math.floor(math.log2(max(rows, 1)))))
    return int(min(MAX_CHUNK_ROWS, max(MIN_CHUNK_ROWS, rows)))


def _check_weights(w, n_rows: int):
    if w is None:
        return None
    w = np.asarray(w, dtype=np.float64)
    if w.shape != (n_rows,):
        raise ValueError(f"sample_weight must have shape ({n_rows},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    return w


class ArrayChunks:
    """A NumPy array or ``np.memmap`` of shape ``(n_rows, n_features)`` in chunks of
    ``chunk_rows`` rows (only one chunk is converted to float64 at a time)."""

    def __init__(self, X, sample_weight=None, *, chunk_rows: int | None = None, name: str = "X"):
        if not hasattr(X, "shape") or len(X.shape) != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {getattr(X, 'shape', None)}")
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool) or np.issubdtype(X.dtype, np.complexfloating):
            raise ValueError(f"{name} must hold real numbers, got dtype {X.dtype}")
        self.X, self.name = X, name
        self.path: Path | None = None  # the .npy file, when the array is one memory-mapped
        self.n_rows, self.n_features = int(X.shape[0]), int(X.shape[1])
        self.w = _check_weights(sample_weight, self.n_rows)
        self.chunk_rows = int(chunk_rows or chunk_rows_for(self.n_features))
        self.bounds = [(a, min(a + self.chunk_rows, self.n_rows)) for a in range(0, self.n_rows, self.chunk_rows)]

    def describe(self, i: int) -> str:
        a, b = self.bounds[i]
        return f"chunk {i} (rows {a}..{b - 1})"

    def map(self, fn, *args) -> list:
        out = []
        for a, b in self.bounds:
            x = np.asarray(self.X[a:b], dtype=np.float64)
            w = np.ones(b - a) if self.w is None else self.w[a:b]
            out.append(fn(x, w, a, *args))
        return out


def _parquet_files(path: Path) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".parquet", ".parq", ".pq"))
        if not files:
            raise ValueError(f"{path}: the folder holds no Parquet files (*.parquet)")
        return files
    return [path]


class ParquetChunks:
    """A Parquet file, or a folder of Parquet files (read in sorted path order), a row
    group at a time, in chunks of at most ``chunk_rows`` rows (default
    :func:`chunk_rows_for`). ``columns``: the columns to use (default: all; every one must
    be numeric, else the error names it). ``missing``: null cells are read as NaN (for
    ``OverparamGMM(allow_missing=True)``); else a null cell is an error that names it."""

    def __init__(
        self,
        path,
        *,
        columns: list[str] | None = None,
        chunk_rows: int | None = None,
        memory_budget: float = DEFAULT_MEMORY_BUDGET,
        missing: bool = False,
    ):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.missing = bool(missing)
        self.files = _parquet_files(self.path)
        self.groups: list[tuple[Path, int, int]] = []  # (file, row group, rows)
        names = None
        for f in self.files:
            try:
                meta = pq.ParquetFile(f)
            except Exception as err:
                raise ValueError(f"{f}: not a readable Parquet file ({err})") from None
            schema = meta.schema_arrow
            cols = list(columns) if columns is not None else list(schema.names)
            twice = repeated(cols)
            if twice is not None:
                raise ValueError(f"{f}: column {twice!r} is chosen twice")
            absent = [c for c in cols if c not in schema.names]
            if absent:
                raise ValueError(f"{f}: no column named {absent[0]!r}; it has {schema.names}")
            for c in cols:
                t = schema.field(c).type
                if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
                    raise ValueError(f"{f}: column {c!r} is not numeric (type {t}); choose numeric columns")
            if names is None:
                names = cols
            elif cols != names:
                raise ValueError(f"{f}: columns {cols} differ from those of {self.files[0]} ({names})")
            for g in range(meta.num_row_groups):
                self.groups.append((f, g, meta.metadata.row_group(g).num_rows))
        self.columns: list[str] = list(names or [])
        self.n_features = len(self.columns)
        if self.n_features == 0:
            raise ValueError(f"{self.path}: no columns to fit")
        self.n_rows = sum(r for _, _, r in self.groups)
        if self.n_rows == 0:  # else an error about weights the user never gave
            raise ValueError(f"{self.path}: the Parquet data holds no rows")
        self.chunk_rows = int(chunk_rows or chunk_rows_for(self.n_features, memory_budget))
        self.bounds, self._pieces = [], []  # chunk i: rows bounds[i] of row group _pieces[i] = (group, offset)
        start = 0
        for gi, (_, _, rows) in enumerate(self.groups):
            for off in range(0, rows, self.chunk_rows):
                b = min(rows, off + self.chunk_rows)
                self.bounds.append((start + off, start + b))
                self._pieces.append((gi, off))
            start += rows
        self.w = None

    def locate(self, row: int) -> tuple[Path, int]:
        """The file holding ``row`` (from 0, of the whole data) and the row's index in it."""
        start, past = 0, {}  # type: tuple[int, dict[Path, int]]
        for f, _, rows in self.groups:
            first = past.setdefault(f, start)
            if row < start + rows:
                return f, row - first
            start += rows
        raise IndexError(f"row {row} is past the end ({self.n_rows} rows)")

    def describe(self, i: int) -> str:
        gi, _ = self._pieces[i]
        f, g, _ = self.groups[gi]
        a, b = self.bounds[i]
        return f"{f} row group {g} (rows {a}..{b - 1})"

    def map(self, fn, *args) -> list:
        import pyarrow.parquet as pq

        out, i = [], 0
        opened: tuple[Path | None, object] = (None, None)
        for f, g, rows in self.groups:
            if rows == 0:
                continue
            if opened[0] != f:
                opened = (f, pq.ParquetFile(f))
            X = read_row_group(str(f), g, self.columns, opened[1], self.missing)  # one row group at a time
            for off in range(0, rows, self.chunk_rows):
                a, b = self.bounds[i]
                out.append(fn(np.ascontiguousarray(X[off : off + self.chunk_rows]), np.ones(b - a), a, *args))
                i += 1
            del X
        return out


def read_row_group(path: str, group: int, columns: list[str], parquet_file=None, missing: bool = False) -> np.ndarray:
    """One row group of a Parquet file as float64 ``(rows, len(columns))``, read a column
    at a time (Arrow's buffers stay one column large); the error names the file and the
    row group. A null cell is an error naming it, or NaN with ``missing``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = parquet_file or pq.ParquetFile(path)
        rows = pf.metadata.row_group(group).num_rows
        out = np.empty((rows, len(columns)))
        for j, c in enumerate(columns):
            col = pf.read_row_group(group, columns=[c], use_threads=False).column(0)
            if col.null_count and missing:
                out[:, j] = col.cast(pa.float64()).to_numpy(zero_copy_only=False)  # nulls: NaN
                del col
                continue
            if col.null_count:
                first = int(np.flatnonzero(np.asarray(col.is_null()))[0])
                row = sum(pf.metadata.row_group(i).num_rows for i in range(group)) + first
                raise BadValue(
                    f"{path}: row {row + 1}, column {j + 1} ({c!r}) is missing (null; rows and columns counted from 1)",
                    FIT_ADVICE + ", or fit with allow_missing=True (--allow-missing)",
                )
            out[:, j] = col.to_numpy()
            del col
    except ValueError:
        raise
    except Exception as err:
        raise OSError(f"{path}: cannot read row group {group} ({err})") from None
    pa.default_memory_pool().release_unused()
    return out


class DaskChunks:
    """A ``dask.array.Array`` ``(n_rows, n_features)``: its row chunks (columns are
    rechunked whole). With a ``distributed.Client`` the array is persisted on the workers
    once and every pass runs ``fn`` there; without one, on local threads."""

    def __init__(self, X, sample_weight=None):
        import dask.array as da

        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
        if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
            raise ValueError(f"X must hold real numbers, got dtype {X.dtype}")
        if any(math.isnan(c) for c in X.chunks[0]):
            raise ValueError("X has unknown chunk sizes; call X.compute_chunk_sizes() first")
        X = X.rechunk({1: -1})
        self.client = _client()
        w = None
        if sample_weight is not None:
            w = sample_weight if isinstance(sample_weight, da.Array) else da.from_array(np.asarray(sample_weight))
            if w.shape != (X.shape[0],):
                raise ValueError(f"sample_weight must have shape ({X.shape[0]},), got {w.shape}")
            w = w.astype(np.float64).rechunk((X.chunks[0],))
        if self.client is not None:
            X = self.client.persist(X)
            w = None if w is None else self.client.persist(w)
        self.X, self.w = X, w
        self.n_rows, self.n_features = int(X.shape[0]), int(X.shape[1])
        starts = np.cumsum((0,) + X.chunks[0])
        self.bounds = [(int(starts[i]), int(starts[i + 1])) for i in range(len(X.chunks[0]))]
        self.chunk_rows = max(X.chunks[0])

    def describe(self, i: int) -> str:
        a, b = self.bounds[i]
        return f"chunk {i} (rows {a}..{b - 1})"

    def _tasks(self, fn, args) -> list:
        import dask

        xs = self.X.to_delayed().ravel()
        ws = [None] * len(xs) if self.w is None else self.w.to_delayed().ravel()
        return [dask.delayed(_on_block)(fn, x, w, a, *args) for x, w, (a, _) in zip(xs, ws, self.bounds, strict=True)]

    def _compute(self, tasks) -> list:
        import dask

        if self.client is not None:
            return list(self.client.compute(tasks, sync=True))
        return list(dask.compute(*tasks, scheduler="threads"))

    def map(self, fn, *args) -> list:
        return self._compute(self._tasks(fn, args))

    def map_sum(self, fn, *args):
        """:func:`map_sum`: the chunks' results summed where they were computed, in groups
        of :data:`TREE_FANIN` (chunk order within a group), level by level, so the client
        receives one total instead of one result per chunk."""
        import dask

        level = self._tasks(fn, args)
        while len(level) > 1:
            level = [dask.delayed(add)(*level[i : i + TREE_FANIN]) for i in range(0, len(level), TREE_FANIN)]
        return self._compute(level)[0]


def _on_block(fn, x, w, start, *args):
    from overgmm.cluster import pin_to_one_core

    pin_to_one_core()
    x = np.asarray(x, dtype=np.float64)
    w = np.ones(x.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    with LOCK:  # one chunk's compiled work at a time (overgmm._running: XLA:CPU's pool)
        return fn(x, w, start, *args)


def _npy_rows(path: str, a: int, b: int) -> np.ndarray:
    return np.asarray(np.load(path, mmap_mode="r")[a:b], dtype=np.float64)


def to_dask(source):
    """A ``dask.array.Array`` over a file source (Parquet row groups, ``.npy`` slices read
    where the task runs, so workers read the file themselves: it must be reachable from
    every worker) or an in-memory array."""
    import dask
    import dask.array as da

    if isinstance(source, DaskChunks):
        return source.X
    if isinstance(source, ParquetChunks):
        parts = [
            da.from_delayed(
                dask.delayed(read_row_group)(str(f), g, source.columns), shape=(r, source.n_features), dtype=np.float64
            )
            for f, g, r in source.groups
            if r
        ]
    elif getattr(source, "path", None) is not None:
        parts = [
            da.from_delayed(
                dask.delayed(_npy_rows)(str(source.path), a, b), shape=(b - a, source.n_features), dtype=np.float64
            )
            for a, b in source.bounds
        ]
    else:
        return da.from_array(np.asarray(source.X, dtype=np.float64), chunks=(source.chunk_rows, -1))
    return da.concatenate(parts, axis=0)


def _client():
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def read(
    path,
    *,
    columns: list[str] | None = None,
    memory_budget: float = DEFAULT_MEMORY_BUDGET,
    header: bool | None = None,
    missing: bool = False,
):
    """A chunked source for a file: ``.npy`` (memory-mapped), Parquet (a file or a folder
    of them), or CSV (read into memory by :func:`overgmm.csvfile.read_csv`: numeric
    columns, a header row detected unless ``header`` says; ``missing``: empty cells read
    as NaN), in chunks of :func:`chunk_rows_for` rows for ``memory_budget``. ``columns``:
    the columns to use, by name (CSV and Parquet). Returns ``(chunks, column names)``; the
    source's ``path`` is the file."""
    from overgmm.csvfile import read_csv

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir() or path.suffix in (".parquet", ".parq", ".pq"):
        src = ParquetChunks(path, columns=columns, memory_budget=memory_budget, missing=missing)
        return src, src.columns
    if path.suffix == ".npy":
        if columns is not None:
            raise ValueError(f"{path}: a .npy file has no column names; select columns in CSV or Parquet files")
        with open(path, "rb") as fh:  # numpy reads a file without the magic as a pickle, and says so
            if fh.read(6) != b"\x93NUMPY":
                raise ValueError(f"{path}: not a readable .npy file (it does not start with the .npy magic bytes)")
        try:
            X = np.load(path, mmap_mode="r")
        except Exception as err:
            raise ValueError(f"{path}: not a readable .npy file ({err})") from None
        if X.ndim == 2 and X.shape[0] == 0:
            raise ValueError(f"{path}: the file holds no data rows")
        arr = ArrayChunks(X, chunk_rows=chunk_rows_for(X.shape[1] if X.ndim == 2 else 1, memory_budget), name=str(path))
        arr.path = path
        return arr, [f"x{j}" for j in range(arr.n_features)]
    X, names = read_csv(path, header=header, columns=columns, missing=missing)
    arr = ArrayChunks(X, chunk_rows=chunk_rows_for(X.shape[1], memory_budget), name=str(path))
    return arr, names  # in memory (path None): Dask workers get the array, not the file
