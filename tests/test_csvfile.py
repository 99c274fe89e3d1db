"""``overgmm.csvfile.read_csv``: header detection, column choice, and errors that name
the file, the data row and the column (from 1)."""

import numpy as np
import pytest

from overgmm.csvfile import BadCell, read_csv


def test_header_detected_or_absent(tmp_path):
    (tmp_path / "h.csv").write_text("width, height\n1,2\n3,4.5\n")
    X, names = read_csv(tmp_path / "h.csv")
    assert names == ["width", "height"] and X.tolist() == [[1, 2], [3, 4.5]]
    (tmp_path / "n.csv").write_text("1,2\n\n3,-4e3\n")  # blank lines are skipped
    X, names = read_csv(tmp_path / "n.csv")
    assert names == ["x0", "x1"] and X.tolist() == [[1, 2], [3, -4000]]


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    """Spreadsheets write "CSV UTF-8" with a byte-order mark: it was read into the first
    column's name ('\ufeffwidth'), so predict on the same columns found no 'width'."""
    (tmp_path / "b.csv").write_bytes(b"\xef\xbb\xbfwidth,height\r\n1,2\r\n3,4\r\n")
    X, names = read_csv(tmp_path / "b.csv")
    assert names == ["width", "height"] and X.tolist() == [[1, 2], [3, 4]]
    (tmp_path / "c.csv").write_bytes(b"\xef\xbb\xbf1,2\n3,4\n")  # and not part of the first number
    assert read_csv(tmp_path / "c.csv")[0].tolist() == [[1, 2], [3, 4]]


def test_a_header_that_names_two_columns_alike_is_an_error(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,a\n1,2,3\n")
    with pytest.raises(ValueError, match=r"d\.csv: the header names two columns 'a' \(columns 1 and 3\)"):
        read_csv(tmp_path / "d.csv")


def test_a_column_chosen_twice_is_an_error(tmp_path):
    """It fitted a copy of the column beside itself."""
    (tmp_path / "e.csv").write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(ValueError, match=r"e\.csv: column 'a' is chosen twice"):
        read_csv(tmp_path / "e.csv", columns=["a", "b", "a"])


def test_a_first_row_of_numbers_and_text_must_be_declared(tmp_path):
    (tmp_path / "a.csv").write_text("-0.521742,abc\n1,2\n3,4\n")
    with pytest.raises(ValueError, match=r"a\.csv: the first row mixes numbers .* --header or --no-header"):
        read_csv(tmp_path / "a.csv")
    X, names = read_csv(tmp_path / "a.csv", header=True)
    assert names == ["-0.521742", "abc"] and X.shape == (2, 2)
    with pytest.raises(BadCell, match=r"row 1 \(line 1\), column 2 \('x1'\) is not a number: 'abc'") as err:
        read_csv(tmp_path / "a.csv", header=False)
    assert (err.value.row, err.value.column) == (1, 2)


@pytest.mark.parametrize(
    "cell, message",
    [("nan", r"is 'nan', not finite"), ("-inf", r"is '-inf', not finite"), (" ", r"is empty \(a missing value\)")],
)
def test_bad_cells_name_data_row_and_column(tmp_path, cell, message):
    (tmp_path / "d.csv").write_text(f"a,b,c\n1,2,3\n4,5,6\n7,{cell},9\n")
    with pytest.raises(BadCell, match=r"d\.csv: row 3 \(line 4\), column 2 \('b'\) " + message) as err:
        read_csv(tmp_path / "d.csv")
    assert (err.value.row, err.value.column) == (3, 2)


def test_columns_by_name_and_ragged_rows(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    X, names = read_csv(tmp_path / "d.csv", columns=["c", "a"])
    assert names == ["c", "a"] and X.tolist() == [[3, 1], [6, 4]]
    with pytest.raises(ValueError, match=r"no column named 'z'; it has \['a', 'b', 'c'\]"):
        read_csv(tmp_path / "d.csv", columns=["z"])
    (tmp_path / "r.csv").write_text("1,2\n3\n")
    with pytest.raises(ValueError, match=r"row 2 \(line 2\) has 1 fields, expected 2"):
        read_csv(tmp_path / "r.csv")


def test_binary_and_empty_files_are_named(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((3, 2)))
    (tmp_path / "x.csv").write_bytes((tmp_path / "x.npy").read_bytes())
    with pytest.raises(ValueError, match=r"x\.csv: not a CSV text file"):
        read_csv(tmp_path / "x.csv")
    (tmp_path / "png.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(ValueError, match=r"png\.csv: not a CSV text file \(byte 0x89 at offset 0"):
        read_csv(tmp_path / "png.csv")
    (tmp_path / "e.csv").write_text("\n\n")
    with pytest.raises(ValueError, match=r"e\.csv: the file holds no data"):
        read_csv(tmp_path / "e.csv")
    (tmp_path / "h.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"h\.csv: the file holds a header and no data rows"):
        read_csv(tmp_path / "h.csv")


def test_missing_cells_read_as_nan_when_asked(tmp_path):
    (tmp_path / "m.csv").write_text("a,b,c\n1,,3\nNA,5,nan\n7,8,9\n")
    X, names = read_csv(tmp_path / "m.csv", missing=True)
    assert names == ["a", "b", "c"]
    np.testing.assert_array_equal(np.isnan(X), [[False, True, False], [True, False, True], [False, False, False]])
    with pytest.raises(BadCell, match=r"row 1 \(line 2\), column 2 \('b'\) is empty .*--allow-missing"):
        read_csv(tmp_path / "m.csv")
    (tmp_path / "i.csv").write_text("a,b\n1,inf\n")
    with pytest.raises(BadCell, match=r"is 'inf', not finite"):
        read_csv(tmp_path / "i.csv", missing=True)
