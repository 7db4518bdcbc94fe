"""Unit tests of the dashboard's ledger reading: newest-first pages and the incremental index.

Ledgers are written with the real writer (:func:`records.row_record`, :class:`ledger.Ledgers`)
wherever the shape matters, so the reader is tested against what the DAG really writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from include.painting_simulator.dashboard import answers, ledger_reader
from include.painting_simulator.dashboard.answers import bucket_minutes
from include.painting_simulator.dashboard.ledger_reader import (
    LedgerIndex,
    LedgerSet,
    lines_backwards,
    minute_of,
    newest_records,
)
from include.painting_simulator.ledger import Ledgers
from include.painting_simulator.records import failure_record, row_record
from include.painting_simulator.settings import LEDGER_FILES, RUN_FAILURES_LEDGER
from tests.support.contract_examples import BODY, FLAT_RECORD

RUN = "scheduled__2026-01-01T00:00:00+00:00"


def anomaly(row: int, logged_at: str, issue: str = "PAINT-EQ-VOL-HIGH", machine: str = "PAINT-1"):
    result = {
        "source": {"blob": "a.csv", "row": row},
        "kind": "anomaly",
        "original_data": {**BODY, "machineId": machine},
        "prediction": {**FLAT_RECORD, "machineId": machine, "issue": issue},
    }
    return row_record(result, RUN, logged_at)


def normal(row: int, logged_at: str, run_id: str = RUN) -> dict[str, Any]:
    result = {"source": {"blob": "a.csv", "row": row}, "kind": "normal", "original_data": BODY}
    return row_record(result, run_id, logged_at)


def write_lines(path: Path, records: list[Any], mode: str = "a") -> None:
    with open(path, mode, encoding="utf-8") as fh:
        for record in records:
            fh.write((record if isinstance(record, str) else json.dumps(record)) + "\n")


def test_lines_backwards_yields_complete_lines_newest_first_across_blocks(tmp_path: Path):
    path = tmp_path / "l.jsonl"
    lines = [f"line-{i}-" + "x" * (i % 7) for i in range(200)]
    path.write_text("\n".join(lines) + "\n")
    for block_size in (3, 8, 64, 1 << 16):  # blocks smaller than a line, and larger than a file
        got = [line.decode() for line in lines_backwards(str(path), block_size=block_size)]
        assert got == lines[::-1], block_size


def test_lines_backwards_leaves_out_a_torn_last_line(tmp_path: Path):
    path = tmp_path / "l.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}\n{"c": 3')  # a writer is still appending "c"
    assert list(lines_backwards(str(path), block_size=4)) == [b'{"b": 2}', b'{"a": 1}']
    path.write_text('{"only": "torn"')
    assert list(lines_backwards(str(path))) == []
    assert list(lines_backwards(str(tmp_path / "missing.jsonl"))) == []


def test_newest_records_pages_from_the_end_and_skips_lines_it_cannot_parse(tmp_path: Path):
    path = tmp_path / LEDGER_FILES["anomaly"]
    records = [anomaly(i, f"2026-01-01T00:{i:02d}:00.000Z") for i in range(30)]
    write_lines(path, [*records[:10], "not json", "[1, 2]", "", *records[10:]])
    page = newest_records(str(path), limit=10)
    assert [r["source"]["row"] for r in page] == list(range(29, 19, -1))
    page3 = newest_records(str(path), limit=10, offset=20)
    assert [r["source"]["row"] for r in page3] == list(range(9, -1, -1))
    assert newest_records(str(path), limit=10, offset=30) == []


def test_the_table_lists_exactly_the_records_the_index_counts(tmp_path: Path):
    """One definition of "a record": what the index skips, the table skips too, so the pages
    add up to ``total`` and the oldest record is on the last page."""
    path = tmp_path / LEDGER_FILES["anomaly"]
    records = [anomaly(i, f"2026-01-01T00:{i:02d}:00.000Z") for i in range(7)]
    failure = failure_record(
        dag_id="painting_simulator", run_id="manual__x", task_id="pull_window",
        try_number=1, cause="storage unreachable", logged_at="2026-01-01T00:30:00.000Z",
    )  # fmt: skip
    not_records = [{"no": "timestamp"}, {"timestamp": "not a time"}, {"timestamp": 7}, failure]
    write_lines(path, [records[0], *not_records, *records[1:], not_records[0]])
    ledgers = LedgerSet(str(tmp_path), clock=lambda: minute_of("2026-01-01T00:59:00Z"))
    first = ledgers.recent("anomaly", limit=3)
    assert first["total"] == len(records)
    rows: list[int] = []
    for offset in range(0, first["total"], 3):  # "Older" until offset + limit >= total
        rows += [r["source"]["row"] for r in ledgers.recent("anomaly", 3, offset)["records"]]
    assert rows == list(range(6, -1, -1))  # every record once, the oldest included
    summary = ledgers.summary(None, minute_of("2026-01-01T01:00:00Z"))
    assert summary["skipped_lines"] == 4  # lines without an ISO timestamp (one of them twice)
    assert summary["run_failures"] == 1


def test_newest_records_reads_only_the_end_of_a_big_ledger(tmp_path: Path, monkeypatch):
    """A page of 10 from a 20,000-line ledger reads a block or two, not the whole file."""
    path = tmp_path / LEDGER_FILES["anomaly"]
    write_lines(path, [anomaly(i, "2026-01-01T00:00:00.000Z") for i in range(20_000)])
    read_bytes = 0
    real_open = open

    class CountingFile:
        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def read(self, n: int = -1) -> bytes:
            nonlocal read_bytes
            data = self.fh.read(n)
            read_bytes += len(data)
            return data

        def __getattr__(self, name: str) -> Any:
            return getattr(self.fh, name)

    monkeypatch.setattr(ledger_reader, "open", lambda *a, **k: CountingFile(real_open(*a, **k)),
                        raising=False)  # fmt: skip
    page = newest_records(str(path), limit=10)
    assert [r["source"]["row"] for r in page] == list(range(19_999, 19_989, -1))
    assert read_bytes <= 2 * ledger_reader.BLOCK_SIZE < os.path.getsize(path) / 50


def test_minute_of_reads_the_ledger_format_and_other_iso_timestamps():
    assert minute_of("1970-01-01T00:01:59.999Z") == 1
    assert minute_of("1970-01-01T01:00:00+00:00") == 60
    assert minute_of("1970-01-01T09:00:00+09:00") == 0  # converted to UTC
    assert minute_of("1970-01-01T00:02") == 2
    for bad in (None, 12, "", "yesterday", "2026-13-01T00:00:00Z"):
        assert minute_of(bad) is None


def test_index_counts_per_minute_issue_machine_and_run(tmp_path: Path):
    path = tmp_path / LEDGER_FILES["anomaly"]
    write_lines(
        path,
        [
            anomaly(0, "2026-01-01T00:00:10.000Z", "PAINT-EQ-VOL-HIGH", "PAINT-1"),
            anomaly(1, "2026-01-01T00:00:50.000Z", "PAINT-EQ-TEM-LOW", "PAINT-2"),
            anomaly(2, "2026-01-01T00:01:10.000Z", "PAINT-EQ-VOL-HIGH", "PAINT-2"),
        ],
    )
    index = LedgerIndex(str(path))
    start = minute_of("2026-01-01T00:00:00Z")
    assert index.refresh(now=start + 2) == 3
    assert index.minutes == {start: 2, start + 1: 1}
    assert index.breakdown("issues", None, None) == {"PAINT-EQ-VOL-HIGH": 2, "PAINT-EQ-TEM-LOW": 1}
    assert index.breakdown("machines", start + 1, None) == {"PAINT-2": 1}
    assert index.count(start, start + 1) == 2
    assert index.runs == {RUN: 3}
    assert index.newest == "2026-01-01T00:01:10.000Z"


def test_index_reads_only_what_was_appended_and_waits_for_a_torn_line(tmp_path: Path):
    path = tmp_path / LEDGER_FILES["normal"]
    write_lines(path, [normal(i, "2026-01-01T00:00:00.000Z") for i in range(5)])
    index = LedgerIndex(str(path))
    assert index.refresh() == 5
    assert index.refresh() == 0
    size = os.path.getsize(path)
    line = json.dumps(normal(5, "2026-01-01T00:01:00.000Z"))
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line[:20])  # a writer in the middle of an append
    assert index.refresh() == 0
    assert index.offset == size
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line[20:] + "\n")
    assert index.refresh() == 1
    assert index.lines == 6
    assert index.offset == os.path.getsize(path)


def test_index_starts_over_when_the_ledger_shrinks_or_is_replaced(tmp_path: Path):
    path = tmp_path / LEDGER_FILES["normal"]
    write_lines(path, [normal(i, "2026-01-01T00:00:00.000Z") for i in range(5)])
    index = LedgerIndex(str(path))
    index.refresh()
    write_lines(path, [normal(0, "2026-01-02T00:00:00.000Z")], mode="w")  # truncated
    index.refresh()
    assert index.lines == 1
    assert index.minutes == {minute_of("2026-01-02T00:00:00Z"): 1}
    rotated = tmp_path / "rotated.jsonl"
    write_lines(rotated, [normal(i, "2026-01-03T00:00:00.000Z") for i in range(3)])
    os.replace(rotated, path)  # rotation: a new file (new inode) under the same name
    index.refresh()
    assert index.lines == 3
    path.unlink()
    index.refresh()
    assert index.lines == 0
    assert index.minutes == {}


def test_index_skips_what_it_cannot_read_and_ignores_unknown_fields(tmp_path: Path):
    path = tmp_path / LEDGER_FILES["error"]
    write_lines(
        path,
        [
            "{broken",
            '["a", "list"]',
            {"no": "timestamp"},
            {"timestamp": "not a time"},
            # An odd prediction shape: read by the slow path, not dropped.
            {"timestamp": "2026-01-01T00:00:30Z", "prediction": ["x"], "original_data": "y"},
            {"timestamp": "2026-01-01T00:00:40Z", "prediction": {"issue": 7, "machineId": None}},
            {"timestamp": "2026-01-01T00:00:50Z", "run_id": "manual__x", "unknown": [1, 2]},
        ],
    )
    index = LedgerIndex(str(path))
    index.refresh()
    assert index.lines == 3
    assert index.skipped == 4
    assert index.runs == {"manual__x": 1}
    assert index.breakdown("issues", None, None) == {"7": 1}


def test_failure_records_are_counted_as_run_failures_not_as_error_rows(tmp_path: Path):
    ledgers = Ledgers(str(tmp_path))
    row_error = {
        "source": {"blob": "a.csv", "row": 3},
        "kind": "error",
        "error": "bad value",
        "original_data": BODY,
    }
    ledgers.append_once("error", RUN, [row_record(row_error, RUN, "2026-01-01T10:00:05.000Z")])
    failure = failure_record(  # what the DAG's on_failure_callback writes (no row, no source)
        dag_id="painting_simulator", run_id="manual__x", task_id="call_model_service",
        try_number=4, cause="model service unreachable", logged_at="2026-01-01T10:00:09.000Z",
    )  # fmt: skip
    assert ledgers.append_failure(failure)
    start = minute_of("2026-01-01T10:00:00Z")
    summary = LedgerSet(str(tmp_path), clock=lambda: start + 59).summary(start, start + 60)

    assert summary["counts"]["error"] == 1
    assert summary["totals"]["error"] == 1
    assert summary["run_failures"] == 1
    assert summary["skipped_lines"] == 0
    assert (tmp_path / RUN_FAILURES_LEDGER).exists()


def test_a_failure_record_an_earlier_version_left_in_the_error_ledger_is_a_run_failure(
    tmp_path: Path,
):
    failure = failure_record(
        dag_id="painting_simulator", run_id="manual__old", task_id="pull_window",
        try_number=1, cause="storage unreachable", logged_at="2026-01-01T10:00:09.000Z",
    )  # fmt: skip
    write_lines(tmp_path / LEDGER_FILES["error"], [failure])
    assert Ledgers(str(tmp_path)).append_failure({**failure, "run_id": "manual__new"})
    start = minute_of("2026-01-01T10:00:00Z")
    summary = LedgerSet(str(tmp_path), clock=lambda: start + 59).summary(start, start + 60)

    assert summary["counts"]["error"] == 0
    assert summary["totals"]["error"] == 0
    assert summary["run_failures"] == 2


def test_ledger_set_summary_counts_rates_timeline_and_breakdowns(tmp_path: Path):
    ledgers = Ledgers(str(tmp_path))
    ledgers.append_once(
        "anomaly",
        RUN,
        [
            anomaly(0, "2026-01-01T10:00:05.000Z", "PAINT-EQ-VOL-HIGH", "PAINT-1"),
            anomaly(1, "2026-01-01T10:03:05.000Z", "PAINT-EQ-VOL-HIGH", "PAINT-2"),
            anomaly(2, "2026-01-01T10:03:06.000Z", "PAINT-EQ-MCH", "PAINT-2"),
            anomaly(3, "2026-01-01T08:00:00.000Z", "PAINT-EQ-MCH", "PAINT-9"),  # out of range
        ],
    )
    ledgers.append_once("normal", RUN, [normal(i, "2026-01-01T10:00:30.000Z") for i in range(4, 9)])
    write_lines(tmp_path / LEDGER_FILES["error"], [{"timestamp": "2026-01-01T10:59:00Z"}])
    start = minute_of("2026-01-01T10:00:00Z")
    summary = LedgerSet(str(tmp_path), clock=lambda: start + 59).summary(start, start + 60)

    assert summary["counts"] == {"anomaly": 3, "normal": 5, "error": 1, "total": 9}
    assert summary["anomaly_rate"] == round(3 / 8, 4)
    assert summary["by_issue"] == [
        {"issue": "PAINT-EQ-VOL-HIGH", "count": 2},
        {"issue": "PAINT-EQ-MCH", "count": 1},
    ]
    assert summary["by_machine"] == [
        {"machine": "PAINT-2", "count": 2},
        {"machine": "PAINT-1", "count": 1},
    ]
    assert summary["range"] == {
        "from": "2026-01-01T10:00Z",
        "to": "2026-01-01T11:00Z",
        "bucket_minutes": 1,
    }
    timeline = {b["start"]: b for b in summary["timeline"]}
    assert len(timeline) == 60
    assert timeline["2026-01-01T10:00Z"] == {
        "start": "2026-01-01T10:00Z", "anomaly": 1, "normal": 5, "error": 0,
        "anomaly_rate": round(1 / 6, 4),
    }  # fmt: skip
    assert timeline["2026-01-01T10:03Z"]["anomaly_rate"] == 1.0
    assert timeline["2026-01-01T10:01Z"]["anomaly_rate"] is None  # nothing judged
    assert summary["totals"] == {"anomaly": 4, "normal": 5, "error": 1, "total": 10}

    everything = LedgerSet(str(tmp_path), clock=lambda: start + 59).summary(None, start + 60)
    assert everything["range"]["from"] == "2026-01-01T08:00Z"
    assert everything["counts"]["anomaly"] == 4


def test_ledger_set_summary_of_empty_ledgers(tmp_path: Path):
    summary = LedgerSet(str(tmp_path / "nothing-yet")).summary(None, 1_000_000)
    assert summary["counts"] == {"anomaly": 0, "normal": 0, "error": 0, "total": 0}
    assert summary["anomaly_rate"] is None
    assert summary["by_issue"] == summary["by_machine"] == []
    assert all(b["anomaly"] == 0 for b in summary["timeline"])


@pytest.mark.parametrize(
    ("span", "width"), [(60, 1), (121, 5), (24 * 60, 15), (7 * 24 * 60, 120), (10**7, 10080)]
)
def test_bucket_width_keeps_the_timeline_short(span: int, width: int):
    assert bucket_minutes(span) == width


def test_requests_do_not_wait_for_the_first_pass_over_big_ledgers(tmp_path: Path, monkeypatch):
    """While the background pass runs, summary says how far it got and recent still answers."""
    import threading

    write_lines(tmp_path / LEDGER_FILES["anomaly"], [anomaly(0, "2026-01-01T00:00:00.000Z")])
    release = threading.Event()
    real_refresh = LedgerIndex.refresh

    def slow_refresh(self: LedgerIndex, *args: Any, **kwargs: Any) -> int:
        assert release.wait(30), "the test never released the first pass"
        return real_refresh(self, *args, **kwargs)

    monkeypatch.setattr(LedgerIndex, "refresh", slow_refresh)
    end = minute_of("2026-01-01T01:00:00Z")
    ledgers = LedgerSet(str(tmp_path), clock=lambda: end - 1)
    assert ledgers.summary(None, end, wait=0.1) == {"indexing": {"progress": 0.0}}
    page = ledgers.recent("anomaly", 10, wait=0.1)
    assert page["total"] is None
    assert [r["source"]["row"] for r in page["records"]] == [0]

    release.set()
    summary = ledgers.summary(None, end, wait=30)
    assert summary["indexing"] is None
    assert summary["counts"]["anomaly"] == 1
    assert ledgers.recent("anomaly", 10)["total"] == 1


def test_old_minutes_are_folded_into_hours_and_ranges_still_add_up(tmp_path: Path):
    """Years of ledger must not cost a dict entry per minute: beyond 8 days, one per hour."""
    path = tmp_path / LEDGER_FILES["anomaly"]
    start = minute_of("2026-01-01T00:00:00Z")
    stamps = [start + m for m in range(0, 10 * 24 * 60, 7)]  # every 7 minutes for 10 days
    iso = [answers.minute_iso(m).replace("Z", ":00.000Z") for m in stamps]
    write_lines(path, [anomaly(i, t, machine=f"PAINT-{i % 3}") for i, t in enumerate(iso)])
    index = LedgerIndex(str(path))
    newest = stamps[-1]
    index.refresh(now=newest)
    assert index.hourly_before > start
    old = [k for k in index.keys if k < index.hourly_before]
    assert old
    assert all(k % 60 == 0 for k in old)
    assert all(k >= index.hourly_before for k in index.minutes if k % 60)
    assert len(index.keys) < 2 * 24 * 8 + 8 * 24 * 60 // 7 + 10  # hours + recent minutes
    assert index.count() == len(stamps)
    assert sum(index.breakdown("machines", None, None).values()) == len(stamps)
    # A range inside the last 8 days is exact to the minute.
    last_hour = [m for m in stamps if newest - 60 < m <= newest]
    assert index.count(newest - 59, newest + 1) == len(last_hour)
    # A late record for an hour already folded lands in that hour.
    write_lines(path, [anomaly(0, iso[0])])
    index.refresh(now=newest)
    assert index.count(start, start + 60) == len([m for m in stamps if m < start + 60]) + 1


def test_a_record_stamped_in_the_future_never_moves_the_fold(tmp_path: Path):
    """Ages are measured from the clock: one line stamped 2099 (a wrong clock, a hand-edited
    ledger) leaves the recent minutes exact, and is counted apart as ``future``."""
    now = minute_of("2026-06-01T12:30:00Z")
    at = lambda minute: answers.minute_iso(minute).replace("Z", ":10.000Z")  # noqa: E731
    recent = [now - 3, now - 3, now - 14, now - 40]
    old = now - 9 * 24 * 60 - 17  # more than 8 days ago: kept per hour
    write_lines(
        tmp_path / LEDGER_FILES["anomaly"],
        [
            anomaly(0, at(old), machine="PAINT-OLD"),
            *[anomaly(i + 1, at(m)) for i, m in enumerate(recent)],
            anomaly(9, "2099-01-01T00:00:00.000Z", "PAINT-EQ-FUTURE", "PAINT-WRONG-CLOCK"),
        ],
    )
    ledgers = LedgerSet(str(tmp_path), clock=lambda: now)
    end = now + 1

    last_15 = ledgers.summary(end - 15, end)
    assert last_15["counts"]["anomaly"] == 3
    assert last_15["future"] == {"anomaly": 1, "normal": 0, "error": 0, "total": 1}
    hour = ledgers.summary(end - 60, end)
    assert hour["counts"]["anomaly"] == 4
    assert hour["range"]["bucket_minutes"] == 1
    timeline = {b["start"]: b["anomaly"] for b in hour["timeline"] if b["anomaly"]}
    assert timeline == {answers.minute_iso(now - 3): 2,
                        answers.minute_iso(now - 14): 1,
                        answers.minute_iso(now - 40): 1}  # fmt: skip
    assert "PAINT-WRONG-CLOCK" not in {m["machine"] for m in hour["by_machine"]}

    # "all": the future record is counted (and in the breakdowns), the timeline ends now.
    everything = ledgers.summary(None, end)
    assert everything["counts"]["anomaly"] == 6
    assert everything["totals"]["anomaly"] == 6
    assert {"issue": "PAINT-EQ-FUTURE", "count": 1} in everything["by_issue"]
    assert sum(b["anomaly"] for b in everything["timeline"]) == 5
    assert everything["range"]["to"] == answers.minute_iso(end)

    # The fold is measured from now: the old record's minute went into its hour, no more.
    index = ledgers.indexes["anomaly"]
    assert index.hourly_before <= now - ledger_reader.MINUTE_DETAIL
    assert old - old % 60 in index.minutes
    assert all(m in index.minutes for m in recent)


def test_the_fold_follows_the_clock_at_each_answer(tmp_path: Path):
    """The clock is read as each request is answered: nine days later, the same minutes are
    kept per hour (and still counted), without a line appended or a restart."""
    now = minute_of("2026-06-01T12:30:00Z")
    clock = [now]
    write_lines(tmp_path / LEDGER_FILES["normal"], [normal(0, "2026-06-01T12:07:00.000Z")])
    ledgers = LedgerSet(str(tmp_path), clock=lambda: clock[0])
    assert ledgers.summary(now - 59, now + 1)["counts"]["normal"] == 1
    index = ledgers.indexes["normal"]
    assert list(index.minutes) == [now - 23]
    clock[0] = now + 9 * 24 * 60
    assert ledgers.summary(None, clock[0] + 1)["counts"]["normal"] == 1
    assert list(index.minutes) == [now - 30]  # its hour, 12:00
