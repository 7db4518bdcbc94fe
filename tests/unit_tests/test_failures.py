"""Unit tests of the failure records written by the DAG's failure callbacks."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from include.painting_simulator import failures, settings
from include.painting_simulator.ledger import Ledgers
from include.painting_simulator.model_client import ModelServiceUnreachable
from include.painting_simulator.records import is_row_record, row_record
from include.painting_simulator.settings import LEDGER_FILES, RUN_FAILURES_LEDGER

RUN = "manual__2026-01-01T00:00:00+00:00"


def variables(output_dir: Path) -> Any:
    return {settings.VAR_OUTPUT_DIR: str(output_dir)}.get


def task_context(task_id: str = "call_model_service", try_number: int = 4, exc=None) -> dict:
    ti = SimpleNamespace(task_id=task_id, try_number=try_number, dag_id="painting_simulator")
    return {"ti": ti, "run_id": RUN, "dag": SimpleNamespace(dag_id="painting_simulator"),
            "exception": exc}  # fmt: skip


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def failure_lines(output_dir: Path) -> list[dict]:
    return lines_of(output_dir / RUN_FAILURES_LEDGER)


def test_a_failed_task_leaves_one_record_naming_run_task_and_cause(tmp_path, caplog):
    exc = ModelServiceUnreachable("model service unreachable: ConnectionError on POST http://x/")

    record = failures.record_task_failure(task_context(exc=exc), variables(tmp_path))

    assert failure_lines(tmp_path) == [record]
    assert record["record_type"] == "run_failure"
    assert (record["run_id"], record["task_id"], record["try_number"]) == (
        RUN,
        "call_model_service",
        4,
    )
    assert record["error"] == (
        "ModelServiceUnreachable: model service unreachable: ConnectionError on POST http://x/"
    )
    assert record["dag_id"] == "painting_simulator"
    assert (
        f"RUN FAILED {RUN} task call_model_service (try 4): ModelServiceUnreachable" in caplog.text
    )


def test_the_dag_callback_adds_nothing_after_the_task_callback(tmp_path):
    context = task_context(exc=RuntimeError("boom"))
    failures.record_task_failure(context, variables(tmp_path))

    assert (
        failures.record_run_failure({**context, "reason": "task_failure"}, variables(tmp_path))
        is None
    )
    assert len(failure_lines(tmp_path)) == 1


def test_the_dag_callback_records_a_task_killed_on_its_last_try(tmp_path):
    """SIGKILL or a lost heartbeat on the last try: Airflow runs no task callback."""
    context = {**task_context(), "reason": "task_failure"}
    del context["exception"]

    record = failures.record_run_failure(context, variables(tmp_path))

    assert record["task_id"] == "call_model_service"
    assert "killed" in record["error"]
    assert failure_lines(tmp_path) == [record]
    assert failures.record_run_failure(context, variables(tmp_path)) is None  # once


def test_a_run_failure_without_a_task_names_the_reason(tmp_path):
    record = failures.record_run_failure(
        {"run_id": RUN, "reason": "timed_out"}, variables(tmp_path)
    )

    assert record["task_id"] is None
    assert record["error"] == "run failed (timed_out) with no failed task to name"


def test_a_later_failed_try_of_the_same_run_gets_its_own_record(tmp_path):
    failures.record_task_failure(task_context(try_number=4, exc=OSError("x")), variables(tmp_path))
    failures.record_task_failure(task_context(try_number=8, exc=OSError("x")), variables(tmp_path))

    assert [r["try_number"] for r in failure_lines(tmp_path)] == [4, 8]


def test_failure_records_do_not_disturb_row_records_and_their_exactly_once(tmp_path):
    """A run that failed and is then cleared and re-run: its rows are still written once."""
    ledgers = Ledgers(str(tmp_path))
    row = {"source": {"blob": "a.csv", "row": 0}, "kind": "error", "original_data": {},
           "error": "bad"}  # fmt: skip
    assert ledgers.append_once("error", RUN, [row_record(row, RUN)]) == 1
    failures.record_task_failure(task_context(exc=OSError("disk")), variables(tmp_path))

    assert ledgers.append_once("error", RUN, [row_record(row, RUN)]) == 0
    # The row ledger holds the row only; the failure record has a ledger of its own.
    lines = lines_of(tmp_path / LEDGER_FILES["error"])
    assert [is_row_record(r) for r in lines] == [True]
    assert set(lines[0]) == {"timestamp", "service_name", "run_id", "source", "error",
                             "original_data"}  # fmt: skip
    assert [is_row_record(r) for r in failure_lines(tmp_path)] == [False]


def test_a_long_cause_is_cut_and_an_empty_message_keeps_the_type():
    assert len(failures.describe_exception(ValueError("x" * 5000))) == failures.MAX_CAUSE_CHARS
    assert failures.describe_exception(TimeoutError()) == "TimeoutError"
    assert settings.RUN_FAILURE == "run_failure"


def test_a_timed_out_run_names_the_reason_and_the_unfinished_task(tmp_path):
    context = {**task_context(try_number=1), "reason": "timed_out"}

    record = failures.record_run_failure(context, variables(tmp_path))

    assert record["error"] == "run failed (timed_out) while task call_model_service was unfinished"
