"""Numeric CSV files: a table of shape (n_rows, n_columns) and its column names.

Every error is a ``ValueError`` that names the file and, for a bad cell, its data row and
column (both counted from 1; the header line, when there is one, is not a data row; the
file's line number is given as well):

* a file that is not UTF-8 text (a binary file, a Parquet or ``.npy`` file named ``.csv``);
* a cell that is not a number, is empty (a missing value), or is not finite (``nan``,
  ``inf``): :class:`BadCell`; with ``missing=True`` an empty cell, ``NA`` or ``nan`` is
  read as NaN (a missing value) instead, and only infinities and text are errors;
* a row with the wrong number of fields;
* a header that names two columns alike (columns are chosen and matched by name);
* a first row that is neither all numbers nor all names, when ``header`` is not given:
  the file must say, with ``header=True`` or ``header=False`` (``--header`` /
  ``--no-header`` on the command line).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from overgmm._errors import FIT_ADVICE, BadValue


class BadCell(BadValue):
    """A cell that is not a finite number. ``row``, ``column``: counted from 1 (data rows)."""

    def __init__(self, where: str, row: int, column: int, advice: str = FIT_ADVICE):
        super().__init__(where, advice)
        self.row, self.column = row, column

    def __reduce__(self):
        return type(self), (self.where, self.row, self.column, self.advice)


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of the non-blank rows."""
    try:
        # utf-8-sig: a leading byte-order mark (spreadsheets' "CSV UTF-8") is not part of the first name
        with open(path, newline="", encoding="utf-8-sig") as fh:
            head = fh.read(4096)
            if "\x00" in head:
                raise ValueError(
                    f"{path}: not a CSV text file (it holds NUL bytes: a binary file?); overgmm reads CSV, "
                    ".npy and Parquet (.parquet) files"
                )
            fh.seek(0)
            reader = csv.reader(fh)
            return [(reader.line_num, r) for r in reader if r and any(c.strip() for c in r)]
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}: not a CSV text file (byte {err.object[err.start]:#04x} at offset {err.start} is not UTF-8 "
            "text: a binary file?); overgmm reads CSV, .npy and Parquet (.parquet) files"
        ) from None
    except csv.Error as err:
        raise ValueError(f"{path}: not a readable CSV file ({err})") from None


def _has_header(path: Path, first: list[str]) -> bool:
    numeric = [_number(c) is not None for c in first]
    if all(numeric):
        return False
    if not any(numeric):
        return True
    text = next(c for c, ok in zip(first, numeric, strict=True) if not ok)
    num = next(c for c, ok in zip(first, numeric, strict=True) if ok)
    raise ValueError(
        f"{path}: the first row mixes numbers ({num.strip()!r}) and text ({text.strip()!r}), so it is not clear "
        "whether it is a header; say so with --header or --no-header (header=True/False)"
    )


def repeated(names: list[str]) -> str | None:
    """The first name that ``names`` holds twice (None: each once): columns are chosen and
    matched by name (the CSV and Parquet readers and ``overgmm predict``)."""
    return next((c for j, c in enumerate(names) if c in names[:j]), None)


MISSING_CELLS = ("", "na", "nan")  # with missing=True, read as NaN (case-insensitive)


def read_csv(
    path, *, header: bool | None = None, columns: list[str] | None = None, missing: bool = False
) -> tuple[np.ndarray, list[str]]:
    """Read a numeric CSV file.

    Args:
      path: the file.
      header: whether the first row holds column names; None: detected (a first row of
        names is a header, one of numbers is data, a mix is an error).
      columns: the columns to keep, by name (the header's, or ``x0, x1, ...`` without
        one), in the order given; None: all.
      missing: read an empty cell, ``NA`` or ``nan`` as NaN (a missing value) rather than
        raise.

    Returns:
      ``(X, names)``: float64 array of shape (n_rows, n_columns) and the column names
      (``x0, x1, ...`` without a header).
    """
    path = Path(path)
    rows = _rows(path)
    if not rows:
        raise ValueError(f"{path}: the file holds no data")
    if header is None:
        header = _has_header(path, rows[0][1])
    names = [c.strip() for c in rows[0][1]] if header else [f"x{j}" for j in range(len(rows[0][1]))]
    if header:
        twice = repeated(names)
        if twice is not None:
            first, second = [j + 1 for j, c in enumerate(names) if c == twice][:2]
            raise ValueError(
                f"{path}: the header names two columns {twice!r} (columns {first} and {second}); "
                "column names must be unique, since columns are chosen and matched by name"
            )
        rows = rows[1:]
        if not rows:
            raise ValueError(f"{path}: the file holds a header and no data rows")
    width = len(names)
    keep = list(range(width))
    if columns is not None:
        twice = repeated(columns)
        if twice is not None:
            raise ValueError(f"{path}: column {twice!r} is chosen twice")
        absent = [c for c in columns if c not in names]
        if absent:
            raise ValueError(f"{path}: no column named {absent[0]!r}; it has {names}")
        keep = [names.index(c) for c in columns]
    data = np.empty((len(rows), len(keep)))
    for i, (line, row) in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"{path}: row {i + 1} (line {line}) has {len(row)} fields, expected {width}")
        for out, j in enumerate(keep):
            cell = row[j]
            if missing and cell.strip().lower() in MISSING_CELLS:
                data[i, out] = np.nan
                continue
            value = _number(cell)
            where = f"{path}: row {i + 1} (line {line}), column {j + 1} ({names[j]!r})"
            if value is None:
                what = "is empty (a missing value)" if not cell.strip() else f"is not a number: {cell.strip()!r}"
                hint = "" if missing else " (or pass --allow-missing / allow_missing=True)"
                raise BadCell(f"{where} {what}", i + 1, j + 1, FIT_ADVICE + hint)
            if not math.isfinite(value):
                raise BadCell(f"{where} is {cell.strip()!r}, not finite", i + 1, j + 1)
            data[i, out] = value
    return data, [names[j] for j in keep]
