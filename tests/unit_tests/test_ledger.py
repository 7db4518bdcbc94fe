"""Unit tests of the JSON-lines ledgers: record shape and the exactly-once append."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from include.painting_simulator import ledger
from include.painting_simulator.ledger import RECEIPTS_FILE, Ledgers
from include.painting_simulator.records import describe_anomaly, describe_error, row_record
from include.painting_simulator.settings import LEDGER_FILES
from tests.support.contract_examples import BODY, FLAT_RECORD

KINDS = ("anomaly", "normal", "error")
RUN = "scheduled__2026-01-01T00:01:00+00:00"
LOGGED_AT = "2026-01-01T00:01:02.345Z"
PREDICTION = FLAT_RECORD


def result(kind: str, blob: str = "a.csv", row: int = 0, **extra: Any) -> dict[str, Any]:
    """A result as call_window returns it."""
    base: dict[str, Any] = {
        "source": {"blob": blob, "row": row},
        "kind": kind,
        "original_data": {**BODY, "machineId": f"PAINT-{row}"},
        "attempts": 1,
    }
    if kind == "anomaly":
        base["prediction"] = PREDICTION
    if kind == "error":
        base["error"] = "model service rejected the row (422): [...]"
        base["status"] = 422
    base.update(extra)
    return base


def records(kind: str, run_id: str, rows: range | list[int], blob: str = "a.csv") -> list[dict]:
    return [row_record(result(kind, blob, row), run_id, LOGGED_AT) for row in rows]


def read(path: Path) -> list[dict[str, Any]]:
    """Every line of a ledger, each of which must be one complete JSON object."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "ledger does not end with a complete line"
    return [json.loads(line) for line in text.splitlines()]


def ledger_keys(out: Path) -> dict[str, list[tuple[str, str, int]]]:
    """(run_id, blob, row) of every line, per ledger."""
    return {
        kind: [(r["run_id"], r["source"]["blob"], r["source"]["row"]) for r in read(out / name)]
        for kind, name in LEDGER_FILES.items()
    }


# --- row_record ---------------------------------------------------------------------------


def test_anomaly_record_has_the_original_simulators_fields_plus_run_and_source() -> None:
    record = row_record(result("anomaly", "b.csv", 7), RUN, LOGGED_AT)
    assert record == {
        "timestamp": LOGGED_AT,
        "service_name": "painting-process-equipment",
        "run_id": RUN,
        "source": {"blob": "b.csv", "row": 7},
        "prediction": PREDICTION,
        "original_data": {**BODY, "machineId": "PAINT-7"},
    }


def test_normal_record_has_no_prediction_error_or_status() -> None:
    record = row_record(result("normal"), RUN, LOGGED_AT)
    assert set(record) == {"timestamp", "service_name", "run_id", "source", "original_data"}


def test_error_record_has_error_and_status() -> None:
    record = row_record(result("error", "c.csv", 3), RUN, LOGGED_AT)
    assert record["error"] == "model service rejected the row (422): [...]"
    assert record["status"] == 422
    assert record["source"] == {"blob": "c.csv", "row": 3}
    assert "prediction" not in record


def test_error_record_without_a_status_has_no_status_key() -> None:
    unreachable = result("error", status=None, error="model service unreachable: refused")
    record = row_record(unreachable, RUN, LOGGED_AT)
    assert "status" not in record
    assert record["error"] == "model service unreachable: refused"


def test_error_record_of_an_unmappable_row_keeps_the_raw_csv_row() -> None:
    raw = {"machineId": "1", "Thick": "abc"}
    unmappable = {
        "source": {"blob": "a.csv", "row": 0},
        "kind": "error",
        "original_data": raw,
        "error": "column 'Thick': 'abc' is not a number",
    }
    record = row_record(unmappable, RUN, LOGGED_AT)
    assert record["original_data"] == raw
    assert "status" not in record


def test_record_does_not_carry_the_attempt_count_or_extra_source_keys() -> None:
    noisy = result("normal")
    noisy["source"]["extra"] = "x"
    record = row_record(noisy, RUN, LOGGED_AT)
    assert "attempts" not in record
    assert record["source"] == {"blob": "a.csv", "row": 0}


def test_timestamp_defaults_to_now_in_utc_with_milliseconds() -> None:
    stamp = row_record(result("normal"), RUN)["timestamp"]
    # e.g. 2026-01-01T00:01:02.345Z
    assert len(stamp) == 24
    assert stamp[10] == "T"
    assert stamp.endswith("Z")
    assert stamp[19] == "."


# --- append_once ---------------------------------------------------------------------------


def test_append_writes_one_json_line_per_record(tmp_path: Path) -> None:
    ledgers = Ledgers(str(tmp_path / "out"))
    batch = records("anomaly", RUN, range(3))
    assert ledgers.append_once("anomaly", RUN, batch) == 3
    assert read(Path(ledgers.path("anomaly"))) == batch
    assert Path(ledgers.path("anomaly")).name == "painting_issue_logs.jsonl"


def test_ledger_file_names_are_the_documented_ones(tmp_path: Path) -> None:
    ledgers = Ledgers(str(tmp_path))
    assert Path(ledgers.path("anomaly")).name == "painting_issue_logs.jsonl"
    assert Path(ledgers.path("normal")).name == "painting_normal_logs.jsonl"
    assert Path(ledgers.path("error")).name == "painting_errors.jsonl"


def test_non_ascii_text_is_written_as_is(tmp_path: Path) -> None:
    ledgers = Ledgers(str(tmp_path))
    record = row_record(result("error", error="모델 서비스 오류"), RUN, LOGGED_AT)
    ledgers.append_once("error", RUN, [record])
    assert "모델 서비스 오류" in Path(ledgers.path("error")).read_text(encoding="utf-8")


def test_appending_nothing_creates_nothing(tmp_path: Path) -> None:
    ledgers = Ledgers(str(tmp_path / "out"))
    assert ledgers.append_once("normal", RUN, []) == 0
    assert not Path(ledgers.path("normal")).exists()


def test_the_same_run_and_keys_again_writes_nothing(tmp_path: Path) -> None:
    ledgers = Ledgers(str(tmp_path))
    batch = records("normal", RUN, range(3))
    ledgers.append_once("normal", RUN, batch)
    size = Path(ledgers.path("normal")).stat().st_size
    # A task retry: same records, a later logged_at.
    retry = [row_record(result("normal", row=i), RUN) for i in range(3)]
    assert ledgers.append_once("normal", RUN, retry) == 0
    assert Path(ledgers.path("normal")).stat().st_size == size


def test_a_key_twice_in_one_append_is_written_once_the_first(tmp_path: Path) -> None:
    # As the database store's INSERT … ON CONFLICT DO NOTHING keeps the first of a batch.
    ledgers = Ledgers(str(tmp_path))
    first, second = records("normal", RUN, [0])[0], records("normal", RUN, [0])[0]
    second["original_data"] = {**BODY, "machineId": "PAINT-9"}
    assert ledgers.append_once("normal", RUN, [first, *records("normal", RUN, [1]), second]) == 2
    assert [k[2] for k in ledger_keys(tmp_path)["normal"]] == [0, 1]
    assert "PAINT-9" not in Path(ledgers.path("normal")).read_text(encoding="utf-8")


def test_a_retry_writes_only_the_records_still_missing(tmp_path: Path) -> None:
    ledgers = Ledgers(str(tmp_path))
    ledgers.append_once("normal", RUN, records("normal", RUN, [0, 2]))
    assert ledgers.append_once("normal", RUN, records("normal", RUN, range(4))) == 2
    rows = [k[2] for k in ledger_keys(tmp_path)["normal"]]
    assert sorted(rows) == [0, 1, 2, 3]


def test_a_row_already_in_another_ledger_for_the_run_is_not_written_again(
    tmp_path: Path,
) -> None:
    ledgers = Ledgers(str(tmp_path))
    ledgers.append_once("anomaly", RUN, records("anomaly", RUN, [0]))
    # The same row, now with another verdict (e.g. a retry got a different answer).
    assert ledgers.append_once("error", RUN, records("error", RUN, [0, 1])) == 1
    keys = ledger_keys(tmp_path)
    assert keys["anomaly"] == [(RUN, "a.csv", 0)]
    assert keys["error"] == [(RUN, "a.csv", 1)]


def test_the_same_row_in_another_blob_is_another_key(tmp_path: Path) -> None:
    ledgers = Ledgers(str(tmp_path))
    ledgers.append_once("normal", RUN, records("normal", RUN, [0], blob="a.csv"))
    assert ledgers.append_once("normal", RUN, records("normal", RUN, [0], blob="b.csv")) == 1


def test_another_run_with_the_same_keys_is_written(tmp_path: Path) -> None:
    ledgers = Ledgers(str(tmp_path))
    ledgers.append_once("normal", "run-1", records("normal", "run-1", range(2)))
    assert ledgers.append_once("normal", "run-2", records("normal", "run-2", range(2))) == 2
    assert [k[0] for k in ledger_keys(tmp_path)["normal"]] == ["run-1"] * 2 + ["run-2"] * 2


def test_an_older_run_retried_after_newer_runs_is_still_written_once(tmp_path: Path) -> None:
    ledgers = Ledgers(str(tmp_path))
    ledgers.append_once("normal", "run-1", records("normal", "run-1", range(2)))
    for run in ("run-2", "run-3"):
        ledgers.append_once("normal", run, records("normal", run, range(2)))
    assert ledgers.append_once("normal", "run-1", records("normal", "run-1", range(3))) == 1
    run_1 = [k for k in ledger_keys(tmp_path)["normal"] if k[0] == "run-1"]
    assert sorted(run_1) == [("run-1", "a.csv", i) for i in range(3)]


def test_lines_written_before_the_ledgers_existed_are_left_alone(tmp_path: Path) -> None:
    # An operator's older file in the output dir (e.g. from a previous version): appended to.
    path = tmp_path / LEDGER_FILES["normal"]
    path.write_text('{"legacy": true}\n', encoding="utf-8")
    Ledgers(str(tmp_path)).append_once("normal", RUN, records("normal", RUN, [0]))
    assert read(path)[0] == {"legacy": True}
    assert len(read(path)) == 2


def _torn(record: dict[str, Any]) -> str:
    line = json.dumps(record, ensure_ascii=False)
    return line[: len(line) // 2]  # a writer killed mid-append: half a line, no newline


def test_a_torn_line_of_the_run_is_trimmed_and_its_records_written_exactly_once(
    tmp_path: Path,
) -> None:
    ledgers = Ledgers(str(tmp_path))
    batch = records("normal", RUN, range(3))
    ledgers.append_once("normal", RUN, batch[:1])
    path = Path(ledgers.path("normal"))
    with path.open("a", encoding="utf-8") as fh:
        fh.write(_torn(batch[1]))
    # The task is retried with the whole window.
    assert ledgers.append_once("normal", RUN, batch) == 2
    assert read(path) == batch


def test_a_torn_line_of_another_run_does_not_corrupt_the_next_append(tmp_path: Path) -> None:
    ledgers = Ledgers(str(tmp_path))
    path = Path(ledgers.path("anomaly"))
    ledgers.append_once("anomaly", "run-1", records("anomaly", "run-1", [0]))
    with path.open("a", encoding="utf-8") as fh:
        fh.write(_torn(records("anomaly", "run-1", [1])[0]))
    batch = records("anomaly", "run-2", range(2))
    assert ledgers.append_once("anomaly", "run-2", batch) == 2
    lines = read(path)  # every line parses: the fragment was not glued to run-2's first line
    assert [(r["run_id"], r["source"]["row"]) for r in lines] == [
        ("run-1", 0),
        ("run-2", 0),
        ("run-2", 1),
    ]


def test_a_ledger_holding_only_a_torn_line_is_emptied_before_appending(tmp_path: Path) -> None:
    ledgers = Ledgers(str(tmp_path))
    path = Path(ledgers.path("error"))
    path.write_text('{"run_id": "run-0", "sour', encoding="utf-8")
    batch = records("error", RUN, [0])
    assert ledgers.append_once("error", RUN, batch) == 1
    assert read(path) == batch


def test_a_record_torn_just_before_its_newline_is_not_lost(tmp_path: Path) -> None:
    ledgers = Ledgers(str(tmp_path))
    batch = records("normal", RUN, range(3))
    ledgers.append_once("normal", RUN, batch[:1])
    path = Path(ledgers.path("normal"))
    with path.open("a", encoding="utf-8") as fh:
        # Killed after the last byte of row 1's JSON, before its "\n" (e.g. at a buffer flush).
        fh.write(json.dumps(batch[1], ensure_ascii=False))
    ledgers.append_once("normal", RUN, batch)
    assert sorted(r["source"]["row"] for r in read(path)) == [0, 1, 2]


def _receipt_runs(out: Path) -> list[str]:
    return list(json.loads((out / RECEIPTS_FILE).read_text(encoding="utf-8")))


def test_receipts_keep_only_the_most_recent_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger, "MAX_RECEIPTS", 3)
    ledgers = Ledgers(str(tmp_path))
    for i in range(6):
        ledgers.append_once("normal", f"run-{i}", records("normal", f"run-{i}", [0]))
    assert _receipt_runs(tmp_path) == ["run-3", "run-4", "run-5"]


def test_a_run_writing_another_ledger_becomes_the_most_recent_receipt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger, "MAX_RECEIPTS", 3)
    ledgers = Ledgers(str(tmp_path))
    for i in range(3):
        ledgers.append_once("normal", f"run-{i}", records("normal", f"run-{i}", [0]))
    ledgers.append_once("error", "run-0", records("error", "run-0", [1]))
    ledgers.append_once("normal", "run-3", records("normal", "run-3", [0]))
    assert _receipt_runs(tmp_path) == ["run-2", "run-0", "run-3"]
    # run-0 can still be retried exactly once in both its ledgers.
    assert ledgers.append_once("normal", "run-0", records("normal", "run-0", [0])) == 0
    assert ledgers.append_once("anomaly", "run-0", records("anomaly", "run-0", [1])) == 0


def test_a_corrupt_receipts_file_does_not_fail_the_append(tmp_path: Path) -> None:
    (tmp_path / RECEIPTS_FILE).write_text('{"run-1": {"normal": 0', encoding="utf-8")
    ledgers = Ledgers(str(tmp_path))
    assert ledgers.append_once("normal", RUN, records("normal", RUN, [0])) == 1
    assert _receipt_runs(tmp_path) == [RUN]


# Concurrency: several worker processes share the output directory. Every run's three log tasks
# may run at the same time, and each process also retries its append once.
PROCESSES, RUNS, OWN_ROWS = 4, 50, 3


def _worker(output_dir: str, index: int, start: Any) -> None:
    # Durability is not under test here, and fsync makes this test slow (this process only).
    os.fsync = lambda fd: None
    kind = KINDS[index % len(KINDS)]
    ledgers = Ledgers(output_dir)
    start.wait()
    for run in range(RUNS):
        run_id = f"run-{run:03d}"
        batch = records(kind, run_id, range(OWN_ROWS), blob=f"p{index}.csv")
        # A row every process claims for the run: it must land in exactly one ledger.
        batch += records(kind, run_id, [run], blob="shared.csv")
        # A long payload makes a window's lines larger than one write buffer.
        for record in batch:
            record["original_data"]["padding"] = f"{index}" * 3000
        ledgers.append_once(kind, run_id, batch)
        ledgers.append_once(kind, run_id, batch)  # the task retry


def test_concurrent_appends_from_several_processes_are_whole_and_exactly_once(
    tmp_path: Path,
) -> None:
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [
        context.Process(target=_worker, args=(str(tmp_path), i, start)) for i in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES

    keys = ledger_keys(tmp_path)  # read() fails on any interleaved or partial line
    every = [key for kind in KINDS for key in keys[kind]]
    assert len(every) == PROCESSES * RUNS * OWN_ROWS + RUNS
    assert len(set(every)) == len(every)
    for i in range(PROCESSES):
        own = [k for k in keys[KINDS[i % len(KINDS)]] if k[1] == f"p{i}.csv"]
        assert len(own) == RUNS * OWN_ROWS
    shared = [k for k in every if k[1] == "shared.csv"]
    assert sorted(shared) == [(f"run-{r:03d}", "shared.csv", r) for r in range(RUNS)]
    for kind in KINDS:  # each line's padding is one process's own: no bytes mixed in
        for record in read(tmp_path / LEDGER_FILES[kind]):
            padding = record["original_data"]["padding"]
            assert padding == padding[0] * 3000


# --- describe_* ----------------------------------------------------------------------------


def test_describe_anomaly_names_issue_machine_time_values_and_source() -> None:
    record = row_record(result("anomaly", "2025-07.csv", 12), RUN, LOGGED_AT)
    text = describe_anomaly(record)
    assert "PAINT-EQ-VOL-HIGH" in text
    assert "machine=PAINT-12" in text
    assert "time=2025-07-23T15:32:01" in text
    assert "voltage=263.0" in text
    assert "2025-07.csv row 12" in text


def test_describe_error_names_source_status_and_cause() -> None:
    record = row_record(result("error", "2025-07.csv", 12), RUN, LOGGED_AT)
    text = describe_error(record)
    assert "2025-07.csv row 12" in text
    assert "status=422" in text
    assert "model service rejected the row (422)" in text


def test_describe_error_without_status_omits_it() -> None:
    record = row_record(result("error", status=None, error="unreachable"), RUN, LOGGED_AT)
    assert "status=" not in describe_error(record)


def test_a_failure_record_left_in_the_error_ledger_by_an_earlier_version_is_not_a_row(
    tmp_path: Path,
) -> None:
    """Earlier versions wrote failure records into painting_errors.jsonl: a retry still finds
    the run's rows (and only them), and the old line stays where it is."""
    ledgers = Ledgers(str(tmp_path))
    assert ledgers.append_once("error", RUN, records("error", RUN, [0])) == 1
    legacy = {"record_type": "run_failure", "timestamp": LOGGED_AT, "run_id": RUN,
              "task_id": "call_model_service", "try_number": 1, "error": "x"}  # fmt: skip
    with open(tmp_path / LEDGER_FILES["error"], "a", encoding="utf-8") as fh:
        fh.write(json.dumps(legacy) + "\n")
    assert ledgers.append_once("error", RUN, records("error", RUN, [0, 1])) == 1
    assert [r.get("record_type") for r in read(tmp_path / LEDGER_FILES["error"])] == [
        None,
        "run_failure",
        None,
    ]
