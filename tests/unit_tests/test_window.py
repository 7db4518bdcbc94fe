"""Pulling a run's window: start position, re-runs, mapping (storage replaced by lists)."""

from __future__ import annotations

from typing import Any

import pytest

from include.painting_simulator.row_mapping import to_items
from include.painting_simulator.sequence import NoRowsError, Position, resume_from, stored_position
from include.painting_simulator.window import read_window


def row(machine: str = "1", **overrides: str) -> dict[str, str]:
    values = {
        "machineId": machine,
        "timeStamp": "2025-07-23T08:00:00",
        "Thick": "19.9",
        "PT_jo_V_1": "260",
        "PT_jo_A_Main_1": "70",
        "PT_jo_TP": "34",
    }
    return values | overrides


class ListReader:
    """Blobs as lists of rows, with the interface of BlobRows (the real one is exercised by
    the integration tests against Azurite)."""

    container = "simulator-data"
    versions: dict[str, dict[str, str]] = {}  # noqa: RUF012 (read only)

    def __init__(self, blobs: dict[str, list[dict[str, str]]]) -> None:
        self.blobs = blobs

    def list_csv(self, prefix: str) -> list[str]:
        names = sorted(name for name in self.blobs if name.startswith(prefix))
        if not names:
            raise NoRowsError("no .csv blob")
        return names

    def load(self, name: str) -> list[dict[str, str]] | None:
        return self.blobs.get(name)

    def version(self, name: str) -> dict[str, str] | None:
        return self.versions.get(name)


BLOBS = {"p/a.csv": [row("1"), row("2"), row("3")], "p/b.csv": [row("4"), row("5")]}


def sources(window: dict[str, Any]) -> list[tuple[str, int]]:
    return [(item["source"]["blob"], item["source"]["row"]) for item in window["items"]]


def test_the_first_window_starts_at_the_first_row_of_the_first_blob() -> None:
    window = read_window(ListReader(BLOBS), "p/", 2, start_row=None, stored=None, run_id="r1")
    assert sources(window) == [("p/a.csv", 0), ("p/a.csv", 1)]
    assert window["window_start"] is None
    assert window["next_position"] == {"blob": "p/a.csv", "row": 2}


def test_a_run_continues_from_the_stored_position_of_an_earlier_run() -> None:
    stored = {"blob": "p/a.csv", "row": 2, "run_id": "r1", "window_start": None}
    window = read_window(ListReader(BLOBS), "p/", 2, start_row=None, stored=stored, run_id="r2")
    assert sources(window) == [("p/a.csv", 2), ("p/b.csv", 0)]
    assert window["window_start"] == {"blob": "p/a.csv", "row": 2}


def test_a_run_that_already_advanced_the_position_resends_its_own_window() -> None:
    first = read_window(ListReader(BLOBS), "p/", 2, start_row=None, stored=None, run_id="r1")
    stored = stored_position(first, "r1")
    again = read_window(ListReader(BLOBS), "p/", 2, start_row=None, stored=stored, run_id="r1")
    assert sources(again) == sources(first)
    following = read_window(ListReader(BLOBS), "p/", 2, start_row=None, stored=stored, run_id="r2")
    assert sources(following) == [("p/a.csv", 2), ("p/b.csv", 0)]


def test_start_row_overrides_the_stored_position() -> None:
    stored = {"blob": "p/a.csv", "row": 1, "run_id": "r1", "window_start": None}
    window = read_window(ListReader(BLOBS), "p/", 3, start_row=4, stored=stored, run_id="r2")
    assert sources(window) == [("p/b.csv", 1), ("p/a.csv", 0), ("p/a.csv", 1)]
    assert window["window_start"] == {"blob": "p/b.csv", "row": 1}


def test_resume_from_ignores_a_position_advanced_by_another_run() -> None:
    stored = {"blob": "b", "row": 4, "run_id": "r1", "window_start": {"blob": "a", "row": 0}}
    assert resume_from(stored, "r2") == Position("b", 4)
    assert resume_from(stored, "r1") == Position("a", 0)
    assert resume_from(None, "r1") is None


def test_rows_are_mapped_and_unmappable_ones_name_blob_row_and_column() -> None:
    items = to_items([("p/a.csv", 0, row("7")), ("p/a.csv", 1, row("8", PT_jo_TP="hot"))])
    assert items[0]["body"]["machineId"] == "PAINT-7"
    assert "body" not in items[1]
    assert items[1]["raw"]["PT_jo_TP"] == "hot"
    assert items[1]["error"].startswith("blob 'p/a.csv' row 1: column 'PT_jo_TP'")


def test_no_blob_under_the_prefix_raises() -> None:
    with pytest.raises(NoRowsError):
        read_window(ListReader(BLOBS), "other/", 2, start_row=None, stored=None, run_id="r1")


def test_error_entries_of_the_parser_become_errors_naming_blob_row_and_cause() -> None:
    from include.painting_simulator.csv_format import file_error, parse_csv

    bad_row = parse_csv(
        b"machineId,timeStamp,Thick,PT_jo_V_1,PT_jo_A_Main_1,PT_jo_TP\n1,t,1,2,3,4,5\n"
    )
    items = to_items([("p/a.csv", 3, bad_row[0]), ("p/b.csv", 0, file_error("not text"))])
    assert items[0]["error"] == (
        "blob 'p/a.csv' row 3: 7 values where the header has 6 columns "
        "(an unquoted ',' in a value?)"
    )
    assert items[0]["raw"]["machineId"] == "1"
    assert "__error__" not in items[0]["raw"]
    assert items[1] == {
        "source": {"blob": "p/b.csv", "row": 0},
        "raw": None,
        "error": "blob 'p/b.csv' (whole file, not read): not text",
    }


def test_a_huge_value_is_refused_and_cut_short_in_the_error_record() -> None:
    (item,) = to_items([("p/a.csv", 0, row("7" * 1_000_000))])
    assert "column 'machineId': value is 1000000 characters long" in item["error"]
    assert item["raw"]["machineId"].endswith("… (1000000 characters)")
    assert len(item["raw"]["machineId"]) < 300


class VersionedReader(ListReader):
    """A ListReader whose blobs have ETags, as BlobRows records them on download."""

    def __init__(self, blobs: dict[str, list[dict[str, str]]], etags: dict[str, str]) -> None:
        super().__init__(blobs)
        self.versions = {name: {"etag": e, "last_modified": "t"} for name, e in etags.items()}


def test_the_stored_position_carries_the_version_of_its_blob() -> None:
    reader = VersionedReader(BLOBS, {"p/a.csv": '"0x1"', "p/b.csv": '"0x2"'})
    window = read_window(reader, "p/", 4, start_row=None, stored=None, run_id="r1")
    assert window["next_position"] == {
        "blob": "p/b.csv",
        "row": 1,
        "etag": '"0x2"',
        "last_modified": "t",
    }
    stored = stored_position(window, "r1")
    assert resume_from(stored, "r2") == Position("p/b.csv", 1)  # the extra keys are ignored


def test_an_overwritten_blob_is_continued_by_position_and_the_change_logged(caplog) -> None:
    stored = {"blob": "p/a.csv", "row": 1, "etag": '"0x1"', "last_modified": "t0", "run_id": "r1"}
    changed = VersionedReader(BLOBS, {"p/a.csv": '"0x9"'})
    with caplog.at_level("WARNING", logger="painting_simulator"):
        window = read_window(changed, "p/", 1, start_row=None, stored=stored, run_id="r2")
    assert sources(window) == [("p/a.csv", 1)]
    assert (
        "blob 'p/a.csv' was overwritten since the position was stored "
        '(ETag "0x1" -> "0x9", last modified t0 -> t); the sequence goes on by position: '
        "row 1 of its new content (now 3 row(s))" in caplog.text
    )

    caplog.clear()
    same = VersionedReader(BLOBS, {"p/a.csv": '"0x1"'})
    with caplog.at_level("WARNING", logger="painting_simulator"):
        read_window(same, "p/", 1, start_row=None, stored=stored, run_id="r2")
    assert "overwritten" not in caplog.text


def test_a_position_stored_without_a_version_is_still_read() -> None:
    # Positions stored before versions were recorded: no change check, same window.
    stored = {"blob": "p/a.csv", "row": 2, "run_id": "r1", "window_start": None}
    reader = VersionedReader(BLOBS, {"p/a.csv": '"0x9"'})
    window = read_window(reader, "p/", 1, start_row=None, stored=stored, run_id="r2")
    assert sources(window) == [("p/a.csv", 2)]
