"""CSV decoding and parsing (no storage involved: bytes in, rows of text out)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from include.painting_simulator.csv_format import (
    VECTORISED,
    Indexed,
    decode,
    index_csv,
    parse_csv,
    row_error,
)

HEADER = "machineId,timeStamp,Thick,PT_jo_V_1,PT_jo_A_Main_1,PT_jo_TP"


def test_values_are_kept_as_the_text_in_the_file() -> None:
    rows = parse_csv(f"{HEADER}\n007,2025-07-23T08:00:00,19.90,260,70.0,34\n".encode())
    assert rows == [
        {
            "machineId": "007",
            "timeStamp": "2025-07-23T08:00:00",
            "Thick": "19.90",
            "PT_jo_V_1": "260",
            "PT_jo_A_Main_1": "70.0",
            "PT_jo_TP": "34",
        }
    ]


def test_empty_cells_and_nan_text_stay_text_for_the_mapping_to_judge() -> None:
    rows = parse_csv(f"{HEADER}\n1,2025-07-23T08:00:00,,NaN,NA,34\n".encode())
    assert (rows[0]["Thick"], rows[0]["PT_jo_V_1"], rows[0]["PT_jo_A_Main_1"]) == ("", "NaN", "NA")


def test_a_utf8_byte_order_mark_is_dropped_from_the_first_column_name() -> None:
    rows = parse_csv(("\ufeff" + HEADER + "\n1,t,1,2,3,4\n").encode("utf-8"))
    assert "machineId" in rows[0]


def test_cp949_bytes_from_korean_windows_exports_are_decoded() -> None:
    data = f"{HEADER}\n도장1호기,t,1,2,3,4\n".encode("cp949")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert parse_csv(data)[0]["machineId"] == "도장1호기"
    assert decode("도장".encode()) == "도장"


def test_crlf_line_endings_and_blank_lines() -> None:
    rows = parse_csv(f"{HEADER}\r\n1,t,1,2,3,4\r\n\r\n2,t,1,2,3,4\r\n".encode())
    assert [row["machineId"] for row in rows] == ["1", "2"]
    assert rows[1]["PT_jo_TP"] == "4"


@pytest.mark.parametrize("data", [b"", b"\n\n", f"{HEADER}\n".encode()])
def test_an_empty_file_or_a_header_alone_has_no_rows(data: bytes) -> None:
    assert parse_csv(data) == []


# --- bad input: rows and files that cannot be read become error entries, never exceptions ----


def _errors(rows: list[dict]) -> list[tuple[str, bool] | None]:
    return [row_error(row) for row in rows]


def test_a_missing_required_column_makes_the_whole_file_one_error_entry() -> None:
    data = b"machineId,timeStamp,Thick,PT_jo_V_1,PT_jo_TP\n1,t,1,2,4\n2,t,1,2,4\n"
    (entry,) = parse_csv(data)
    reason, whole_file = row_error(entry)
    assert whole_file
    assert "'PT_jo_A_Main_1' missing from the header" in reason
    assert "2 data row(s) are not sent" in reason
    assert json.loads(json.dumps(entry)) == entry  # cached as JSON lines by the blob cache


def test_a_line_that_is_not_a_header_is_an_error_even_without_data_rows() -> None:
    (entry,) = parse_csv(b"x" * 1_000_000)
    reason, whole_file = row_error(entry)
    assert whole_file
    assert "missing from the header 'xxxx" in reason
    assert len(reason) < 500  # the 1 MB line is not copied into the message


def test_a_required_column_named_twice_is_ambiguous_and_the_file_is_not_read() -> None:
    data = f"{HEADER},Thick\n1,t,1,2,3,4,5\n".encode()
    ((reason, whole_file),) = _errors(parse_csv(data))
    assert whole_file
    assert "'Thick' (2 times) repeated in the header" in reason


def test_an_optional_column_named_twice_keeps_both_values() -> None:
    rows = parse_csv(f"{HEADER},Operator,Operator, \n1,t,1,2,3,4,A,B,C\n".encode())
    assert (rows[0]["Operator"], rows[0]["Operator.1"], rows[0]["Unnamed: 8"]) == ("A", "B", "C")
    assert row_error(rows[0]) is None


def test_extra_and_reordered_columns_are_read_by_name() -> None:
    data = (
        b"PT_jo_TP,Line,Thick,machineId,PT_jo_A_Main_1,timeStamp,PT_jo_V_1\n34,L2,20,7,70,t,260\n"
    )
    (row,) = parse_csv(data)
    assert (row["machineId"], row["Thick"], row["PT_jo_TP"], row["Line"]) == ("7", "20", "34", "L2")


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_a_semicolon_or_tab_separated_export_is_read(delimiter: str) -> None:
    data = (HEADER.replace(",", delimiter) + "\n" + delimiter.join("1t2345") + "\n").encode()
    (row,) = parse_csv(data)
    assert (row["machineId"], row["PT_jo_TP"]) == ("1", "5")


def test_quoted_values_may_hold_commas_quotes_and_line_breaks() -> None:
    data = f'{HEADER},Note\n1,t,"19.9",2,3,4,"Kim, J. said ""ok""\nnext line"\n2,t,1,2,3,4,\n'
    rows = parse_csv(data.encode())
    assert rows[0]["Note"] == 'Kim, J. said "ok"\nnext line'
    assert rows[0]["Thick"] == "19.9"
    assert [row["machineId"] for row in rows] == ["1", "2"]


def test_a_row_with_more_values_than_columns_is_an_error_entry_and_the_others_are_read() -> None:
    rows = parse_csv(f"{HEADER}\n1,t,19,9,2,3,4\n2,t,1,2,3,4\n3,t,1,2,3,4,,\n".encode())
    reason, whole_file = row_error(rows[0])
    assert not whole_file
    assert "7 values where the header has 6 columns" in reason
    assert rows[0]["machineId"] == "1"  # the raw values stay for the error record
    assert _errors(rows[1:]) == [None, None]  # trailing empty cells are not extra values


def test_a_short_row_has_empty_cells_at_its_end() -> None:
    (row,) = parse_csv(f"{HEADER}\n1,t,1,2\n".encode())
    assert (row["PT_jo_A_Main_1"], row["PT_jo_TP"]) == ("", "")
    assert row_error(row) is None  # row_mapping names the empty column


def test_rows_of_empty_cells_are_not_rows() -> None:
    rows = parse_csv(f"{HEADER}\n,,,,,\n1,t,1,2,3,4\n , ,,,,\n".encode())
    assert [row["machineId"] for row in rows] == ["1"]


def test_utf8_and_cp949_lines_may_be_mixed_in_one_file() -> None:
    data = (
        f"{HEADER}\n".encode()
        + "도장1호기,t,1,2,3,4\n".encode("cp949")
        + "도장2호기,t,1,2,3,4\n".encode()
    )
    assert [row["machineId"] for row in parse_csv(data)] == ["도장1호기", "도장2호기"]


def test_a_row_that_is_neither_utf8_nor_cp949_is_an_error_naming_its_column() -> None:
    data = f"{HEADER}\n".encode() + b"\xff\xfe,t,1,2,3,4\n" + b"2,t,1,2,3,4\n"
    rows = parse_csv(data)
    reason, whole_file = row_error(rows[0])
    assert (reason, whole_file) == ("column 'machineId': neither UTF-8 nor CP949 text", False)
    assert row_error(rows[1]) is None
    with pytest.raises(UnicodeDecodeError, match="line 2 is neither UTF-8 nor CP949"):
        decode(data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)), "contains NUL bytes"),
        ("machineId,타임".encode("utf-16"), "contains NUL bytes"),
        (b"\xff\xfe\xfd\xfc,t\n1,2\n", "the header line is neither UTF-8 nor CP949"),
    ],
)
def test_a_file_that_is_not_text_is_one_error_entry(data: bytes, expected: str) -> None:
    ((reason, whole_file),) = _errors(parse_csv(data))
    assert whole_file
    assert expected in reason


def test_a_one_megabyte_value_is_read_not_refused_by_the_csv_module() -> None:
    # The csv module's own field limit (128 KiB) would raise; the value is judged per row.
    huge = "9" * 1_048_576
    limit = csv.field_size_limit()
    rows = parse_csv(f"{HEADER}\n{huge},t,1,2,3,4\n2,t,1,2,3,4\n".encode())
    assert len(rows[0]["machineId"]) == len(huge)
    assert _errors(rows) == [None, None]
    assert csv.field_size_limit() == limit < len(huge)  # the process-wide limit is restored


def test_markup_in_a_value_is_kept_as_text() -> None:
    (row,) = parse_csv(f"{HEADER}\n<script>alert(1)</script>,t,1,2,3,4\n".encode())
    assert row["machineId"] == "<script>alert(1)</script>"


def test_excels_sep_line_names_the_delimiter() -> None:
    data = ("sep=;\r\n" + HEADER.replace(",", ";") + "\r\n1;t;19,9;2;3;4\r\n").encode()
    (row,) = parse_csv(data)
    assert (row["machineId"], row["Thick"]) == ("1", "19,9")  # a decimal comma stays text
    assert parse_csv(b"sep=;\n") == []


# --- the two paths: vectorised for clean files, line by line for the others ------------------

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad_csv"


def _both(data: bytes) -> tuple[Indexed, Indexed]:
    return index_csv(data), index_csv(data, vectorised=False)


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.csv")))
def test_every_corpus_file_reads_the_same_on_both_paths(name: str) -> None:
    fast, lines = _both((CORPUS / name).read_bytes())
    assert list(fast.entries()) == list(lines.entries())


@pytest.mark.parametrize(
    "data",
    [
        f"{HEADER}\n1,t,1,2,3,4\n2,t,1,2,3,4".encode(),  # no line end after the last row
        f"{HEADER}\r\n1,t,1,2,3,4\r\n\r\n,,,,,\r\n  \r\n2,t,1,2,3,4\r\n".encode(),
        f"\n\n{HEADER}\n1,t,1,2,3,4\n".encode(),  # blank lines before the header
        ("sep=;\n" + HEADER.replace(",", ";") + "\n1;t;1;2;3;4\n").encode(),
        f"{HEADER}\n1,t,19,9,2,3,4\n2,t,1,2\n3,t,1,2,3,4,,\n".encode(),  # long and short rows
        f"{HEADER}\n\u00a0,\u3000\n\x1c\n도장,t,1,2,3,4\n".encode(),  # blank in Unicode terms
        "\ufeff".encode() + f"{HEADER}\n1,t,1,2,3,4\n".encode(),
        f"{HEADER}\n".encode(),
    ],
)
def test_clean_files_take_the_vectorised_path_and_read_as_line_by_line(data: bytes) -> None:
    fast, lines = _both(data)
    assert fast.path == VECTORISED
    assert list(fast.entries()) == list(lines.entries())


@pytest.mark.parametrize(
    "data",
    [
        f'{HEADER},Note\n1,t,1,2,3,4,"a\nb"\n'.encode(),  # a quote: values may span lines
        f"{HEADER}\n1,t,1,2,3,4\r2,t,1,2,3,4\r".encode(),  # lone CR line ends
        f"{HEADER}\n".encode() + "도장,t,1,2,3,4\n".encode("cp949"),  # not UTF-8
        f"{HEADER}\n".encode() + b"\xff\xfe,t,1,2,3,4\n",  # not UTF-8 nor CP949
        b"machineId,timeStamp,Thick\n1,t,1\n",  # a file error counts the rows it names
        "\ufeff\ufeff".encode() + f"{HEADER}\n1,t,1\n".encode(),  # one BOM is dropped, not two
        b"\n" * 100 + f"{HEADER}\n1,t,1,2,3,4\n".encode(),  # header past the searched head
        ("sep=§\n" + HEADER.replace(",", "§") + "\n1§t§1§2§3§4\n").encode(),  # not ASCII
    ],
)
def test_files_the_vectorised_path_leaves_to_the_line_path(data: bytes) -> None:
    fast, lines = _both(data)
    assert fast.path == "lines"
    assert list(fast.entries()) == list(lines.entries()) == parse_csv(data)


def test_a_random_mix_of_awkward_lines_reads_the_same_on_both_paths() -> None:
    rng = random.Random(14)
    pieces = ["1,t,1,2,3,4", "", " ", ",,,,,", " , ,\t,,,", "1,t,1,2,3,4,x", "1,t,1,2,3,4,,",
              "1,t", "도장,t,1,2,3,4", "\u00a0", "\u3000,", "\x1c", "\x0b", "1;t;1;2;3;4",
              "a\tb", "<script>", "2_0.1,t,١٢,2,3,4"]  # fmt: skip
    for _ in range(300):
        ending = rng.choice(["\n", "\r\n"])
        body = ending.join(rng.choice(pieces) for _ in range(rng.randrange(0, 12)))
        data = (HEADER + ending + body + rng.choice(["", ending])).encode()
        fast, lines = _both(data)
        assert fast.path == VECTORISED
        assert list(fast.entries()) == list(lines.entries()), data


def test_entries_read_a_block_at_a_time_like_a_list() -> None:
    data = (HEADER + "\n" + "".join(f"{i},t,1,2,3,4\n" for i in range(1000))).encode()
    entries = index_csv(data).entries()
    expected = parse_csv(data)
    assert len(entries) == 1000
    assert entries[999] == expected[999]
    assert entries[-1] == expected[-1]
    assert entries[250:260] == expected[250:260]
    assert entries[::100] == expected[::100]
    with pytest.raises(IndexError):
        entries[1000]
