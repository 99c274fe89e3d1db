"""Data files for the subcommands: reading (CSV, ``.npy``, Parquet), the checks a file
needs before a fit, and per-row outputs. Every problem is a :class:`CommandError` whose
one line names the file and, for a bad value, its row and column, both counted from 1
(data rows: a CSV header line is not one)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from overgmm._errors import BadValue

DEFAULT_NAMES = "x{}"


class CommandError(Exception):
    """An error the command line reports in one line, with exit status 2."""


def command(name: str, run):
    """``run(args)`` as a subcommand's ``func``: a :class:`CommandError` becomes one line
    ``overgmm NAME: error: ...`` on stderr and exit status 2."""

    def func(args) -> int:
        try:
            return run(args)
        except CommandError as err:
            print(f"overgmm {name}: error: {err}", file=sys.stderr)
            return 2

    return func


def add_header_options(parser) -> None:
    """``--header`` / ``--no-header`` (CSV), into ``args.header`` (None: detected)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--header", dest="header", action="store_true", default=None, help="CSV: the first row is names")
    group.add_argument("--no-header", dest="header", action="store_false", help="CSV: the first row is data")


def default_names(n: int) -> list[str]:
    return [DEFAULT_NAMES.format(j) for j in range(n)]


def read(path: str, *, columns: list[str] | None, header: bool | None, memory_budget: float, missing: bool = False):
    """``(source, names)`` of :func:`overgmm.chunks.read`, errors as :class:`CommandError`
    (``missing``: a CSV's empty cells are read as NaN)."""
    from overgmm import chunks as C

    try:
        return C.read(Path(path), columns=columns, memory_budget=memory_budget, header=header, missing=missing)
    except (OSError, ValueError) as err:
        raise CommandError(str(err)) from err  # a BadValue stays the cause: predict gives its own advice


def in_memory(source, memory_budget: float):
    """The data as one float64 array when it is small enough to fit in memory (a CSV
    always is), else None (the fit streams it)."""
    from overgmm import chunks as C

    if not isinstance(source, C.ArrayChunks):
        return None
    if not isinstance(source.X, np.memmap) or 32 * source.X.size <= memory_budget:
        return np.asarray(source.X, dtype=np.float64)
    return None


def where(source, path: str, row: int, column: int, names: list[str]) -> str:
    """``file: row r, column c ('name')`` for a row and column of the whole data counted
    from 0 (a Parquet folder: the file holding the row, and the row within it)."""
    from overgmm import chunks as C

    if isinstance(source, C.ParquetChunks):
        f, r = source.locate(row)
        return f"{f}: row {r + 1}, column {column + 1} ({names[column]!r})"
    return f"{path}: row {row + 1}, column {column + 1} ({names[column]!r})"


def check_finite(X: np.ndarray, source, path: str, names: list[str], *, missing: bool = False, start: int = 0) -> None:
    """The first non-finite value of ``X`` as a :class:`CommandError` (``missing``: NaN is
    a missing value, not an error; ``start``: the data row of ``X``'s first row, from 0)."""
    bad = np.isinf(X) if missing else ~np.isfinite(X)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        bad_value = BadValue(f"{where(source, path, start + r, c, names)} is {X[r, c]}, not finite")
        raise CommandError(str(bad_value)) from bad_value


def check_out(out: Path) -> None:
    """Create the output folder, or say why it cannot be used, before any work."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CommandError(f"--out {out}: a file of that name (or above it) is in the way; choose a folder") from None
    except NotADirectoryError:
        raise CommandError(f"--out {out}: a part of the path is a file, not a folder; choose a folder") from None
    except OSError as err:
        raise CommandError(f"--out {out}: cannot create the folder ({err.strerror})") from None
    if not out.is_dir():
        raise CommandError(f"--out {out}: not a folder")
    if not os.access(out, os.W_OK | os.X_OK):
        raise CommandError(f"--out {out}: the folder is not writable")


def write_rows(est, source, X, path: Path, check: Callable | None = None) -> None:
    """``path``: per data row, its ``row`` (from 1), ``label`` (the most probable
    component, from 0, as ``predict``), ``log_density`` (``score_samples``, units of the
    data) and ``p_0 .. p_{k-1}`` (``predict_proba``), written a chunk at a time;
    ``check(x, start)`` first on each chunk (rows ``start, ...`` of the data, from 0)."""
    k = int(est.n_components_)
    head = ",".join(["row", "label", "log_density"] + [f"p_{i}" for i in range(k)])

    def chunk(x, w, start, fh):
        if check is not None:
            check(x, start)
        ll, resp = est._evaluate(x)
        rows = np.arange(start + 1, start + 1 + x.shape[0])
        table = np.column_stack([rows, np.argmax(resp, axis=1), ll, resp])
        np.savetxt(fh, table, fmt=["%d", "%d", "%.10g"] + ["%.6g"] * k, delimiter=",")

    with open(path, "w") as fh:
        fh.write(head + "\n")
        if X is not None:
            from overgmm.chunks import ArrayChunks

            source = ArrayChunks(X)
        source.map(chunk, fh)


def write_together(files: dict[Path, Callable[[Path], object]]) -> None:
    """Each ``write(tmp)`` to a temporary name beside its path; only when every one has
    succeeded are they renamed over their paths, so a failure leaves every earlier file
    as it was and no new one."""
    tmps = {path: path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}") for path in files}
    try:
        for path, write in files.items():
            write(tmps[path])
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            if tmp.exists():
                tmp.unlink()
