"""The one results writer: each result to its kind's ledger, failures and summaries once each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from include.painting_simulator import settings
from include.painting_simulator.records import failure_record
from include.painting_simulator.results import JsonLinesResults, open_results
from tests.support.contract_examples import BODY, FLAT_RECORD

RUN = "scheduled__2026-01-01T00:01:00+00:00"


def result(kind: str, row: int = 0) -> dict[str, Any]:
    """A result as call_window returns it."""
    base: dict[str, Any] = {"source": {"blob": "a.csv", "row": row}, "kind": kind,
                            "original_data": BODY, "attempts": 1}  # fmt: skip
    if kind == settings.ANOMALY:
        base["prediction"] = FLAT_RECORD
    if kind == settings.ERROR:
        base.update(error="model service rejected the row (422): ...", status=422)
    return base


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def rows_of(out: Path) -> dict[str, list[int]]:
    return {
        kind: [r["source"]["row"] for r in lines(out / name)]
        for kind, name in settings.LEDGER_FILES.items()
    }


def test_the_store_without_a_database_is_the_json_lines_ledgers(tmp_path: Path) -> None:
    writer = open_results(str(tmp_path))
    assert isinstance(writer, JsonLinesResults)
    assert writer.describe(settings.ANOMALY) == str(tmp_path / "painting_issue_logs.jsonl")
    assert writer.describe(settings.RUN_FAILURE) == str(tmp_path / "painting_run_failures.jsonl")
    assert writer.describe(settings.REPLAY_SUMMARY) == str(
        tmp_path / "painting_replay_summary.jsonl"
    )


def test_each_result_goes_to_the_ledger_of_its_kind(tmp_path: Path) -> None:
    results = [result("normal", 0), result("anomaly", 1), result("normal", 2), result("error", 3)]
    written = open_results(str(tmp_path)).write_rows(RUN, results)
    assert written.new == 4
    assert [r["source"]["row"] for r in written.records] == [0, 1, 2, 3]  # in the given order
    assert rows_of(tmp_path) == {"anomaly": [1], "normal": [0, 2], "error": [3]}


def test_a_retry_returns_the_records_and_writes_nothing_again(tmp_path: Path) -> None:
    writer = open_results(str(tmp_path))
    writer.write_rows(RUN, [result("anomaly", 0)])
    written = writer.write_rows(RUN, [result("anomaly", 0)])
    assert written.new == 0
    assert written.records[0]["prediction"] == FLAT_RECORD
    assert rows_of(tmp_path)["anomaly"] == [0]


def test_no_results_write_nothing(tmp_path: Path) -> None:
    written = open_results(str(tmp_path)).write_rows(RUN, [])
    assert (written.records, written.new) == ([], 0)
    assert not any(tmp_path.glob("*.jsonl"))


def test_batches_of_one_run_are_each_written_once(tmp_path: Path) -> None:
    writer = open_results(str(tmp_path))
    writer.write_rows(RUN, [result("normal", 0), result("normal", 1)], batch=f"{RUN}#0")
    writer.write_rows(RUN, [result("normal", 2)], batch=f"{RUN}#2")
    again = writer.write_rows(RUN, [result("normal", 0), result("normal", 1)], batch=f"{RUN}#0")
    assert again.new == 0
    assert rows_of(tmp_path)["normal"] == [0, 1, 2]


def test_failure_records_have_a_ledger_of_their_own_and_are_written_once(tmp_path: Path) -> None:
    writer = open_results(str(tmp_path))
    record = failure_record(dag_id="painting_simulator", run_id=RUN, task_id="pull_window",
                            try_number=4, cause="StorageError: ...")  # fmt: skip
    assert writer.write_failure(record) is True
    assert writer.write_failure({**record, "timestamp": "later"}) is False
    assert lines(tmp_path / settings.RUN_FAILURES_LEDGER) == [record]
    assert not (tmp_path / settings.ERROR_LEDGER).exists()  # row ledgers hold rows only


def test_a_replay_summary_is_written_once_per_run(tmp_path: Path) -> None:
    writer = open_results(str(tmp_path))
    assert writer.write_summary({"run_id": RUN, "rows": 10}) is True
    assert writer.write_summary({"run_id": RUN, "rows": 10}) is False
    assert writer.write_summary({"run_id": "another", "rows": 3}) is True
    assert [s["run_id"] for s in lines(tmp_path / settings.REPLAY_SUMMARY_FILE)] == [RUN, "another"]


def test_a_row_record_carries_the_expectation_exactly_when_the_row_has_one(
    tmp_path: Path,
) -> None:
    results = [
        {**result("anomaly", 0), "expected": "PAINT-EQ-VOL-HIGH"},
        {**result("normal", 1), "expected": None},
        {**result("error", 2), "expected": None},
        result("normal", 3),  # a blob without the column expected_issue
    ]
    written = open_results(str(tmp_path)).write_rows(RUN, results)
    by_row = {r["source"]["row"]: r for r in written.records}
    assert by_row[0]["expected"] == "PAINT-EQ-VOL-HIGH"
    assert "expected" in by_row[1]
    assert by_row[1]["expected"] is None
    assert by_row[2]["expected"] is None
    assert "expected" not in by_row[3]
    normals = {r["source"]["row"]: r for r in lines(tmp_path / "painting_normal_logs.jsonl")}
    assert normals[1]["expected"] is None
    assert "expected" not in normals[3]


def test_rows_are_read_back_by_kind_in_a_time_range_oldest_first(tmp_path: Path) -> None:
    writer = open_results(str(tmp_path))
    path = tmp_path / settings.ANOMALY_LEDGER
    stamps = ["2026-12-01T10:00:00.000Z", "2026-12-01T10:05:00.000Z", "2026-12-01T10:10:00.000Z"]
    records = []
    for row, stamp in enumerate(stamps):
        (record,) = writer.write_rows(f"run-{row}", [result(settings.ANOMALY, row)]).records
        records.append({**record, "timestamp": stamp})
    writer.write_rows(RUN, [result(settings.NORMAL, 9)])
    # The timestamps made known; a torn last line (a writer killed mid-append) is not a record.
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"timestamp": "2026-12')

    got = writer.read_rows(settings.ANOMALY, stamps[0], stamps[2])
    assert [r["source"]["row"] for r in got] == [1, 2]  # after since, up to and with until
    assert [r["source"]["row"] for r in writer.read_rows(settings.ANOMALY, None, stamps[1])] == [
        0,
        1,
    ]
    assert [r["source"]["row"] for r in writer.read_rows(settings.NORMAL, None, "9")] == [9]
    assert writer.read_rows(settings.ERROR, None, "9") == []  # no ledger yet
