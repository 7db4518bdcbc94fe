"""CSV decoding and parsing (no storage involved: bytes in, rows of text out)."""

from __future__ import annotations

import pytest

from include.painting_simulator.blob_source import decode, is_csv, parse_csv

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


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.csv", True), ("dir/B.CSV", True), ("a.csv.bak", False), ("notes.txt", False)],
)
def test_only_csv_blobs_count(name: str, expected: bool) -> None:
    assert is_csv(name) is expected
