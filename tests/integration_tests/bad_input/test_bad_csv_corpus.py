"""The bad-CSV corpus (tests/data/bad_csv/) through the real pipeline: every file uploaded to
Azurite under one prefix, the painting_simulator DAG run with dag.test() until the whole
sequence has been sent once, every row checked against tests/data/bad_csv/expected.json.

Rules under test: good rows in a file with bad ones still go through; each bad row is one error
record naming blob, row and column; a file that cannot be read at all is ONE error record and
the sequence moves on; a file without rows is skipped with a warning; no task fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.dag_runs import PREFIX, task_output

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[2] / "data" / "bad_csv"
MANIFEST = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))["files"]


def test_every_corpus_file_has_its_expected_outcome_written_down():
    files = {path.name for path in CORPUS.glob("*.csv")}
    assert files == {case["file"] for case in MANIFEST}
    assert len(files) >= 15


def check_record(kind: str, record: dict[str, Any], blob: str, row: int, expected: dict) -> None:
    assert kind == expected["outcome"], (blob, row, record.get("error"))
    if "machineId" in expected:
        assert record["original_data"]["machineId"] == expected["machineId"]
    if kind != "error":
        return
    error = record["error"]
    for text in expected["contains"]:
        assert text in error, (blob, row, error)
    assert record.get("status") == expected.get("status"), (blob, row, error)
    if "status" not in expected:  # rows not sent: the error itself names blob and row
        where = "(whole file, not read)" if expected.get("whole_file") else f"row {row}"
        assert error.startswith(f"blob '{blob}' {where}: "), error
    # Nothing huge reaches a ledger (the 1 MB line is cut short in the record).
    assert len(json.dumps(record, ensure_ascii=False)) < 5000


def test_the_corpus_runs_through_the_dag_row_by_row_as_written_down(simulator, caplog, capfd):
    simulator.upload({case["file"]: (CORPUS / case["file"]).read_bytes() for case in MANIFEST})
    expected = {
        (PREFIX + case["file"], row): outcome
        for case in MANIFEST
        for row, outcome in enumerate(case["rows"])
    }
    # Two runs that together cover the sequence once: the second starts after the first.
    first_batch = len(expected) // 2
    dag = simulator.dag()
    runs = [
        simulator.run({"batch_size": first_batch}, dag=dag),
        simulator.run({"batch_size": len(expected) - first_batch}, dag=dag),
    ]

    out = task_output(caplog, capfd)
    for run in runs:
        assert run.state == "success"
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert "failed" not in states.values(), states
    assert "Traceback" not in out

    recorded: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}
    for kind, records in simulator.ledgers().items():
        for record in records:
            key = (record["source"]["blob"], record["source"]["row"])
            assert key not in recorded, f"{key} recorded twice"
            recorded[key] = (kind, record)
    assert sorted(recorded) == sorted(expected)  # every entry once, none missing
    for (blob, row), outcome in expected.items():
        check_record(*recorded[blob, row], blob, row, outcome)

    for case in MANIFEST:
        if not case["rows"]:
            blob = PREFIX + case["file"]
            assert f"blob '{blob}' has no data rows (empty or a header only); skipped" in out
    last = [case for case in MANIFEST if case["rows"]][-1]
    position = simulator.position()
    assert (position["blob"], position["row"]) == (PREFIX + last["file"], len(last["rows"]))
