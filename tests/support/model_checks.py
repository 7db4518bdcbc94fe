"""Ledgers for the dashboard's "Model checks" tests, made by the real code that writes them.

* rows with a ``candidate``: :func:`records.sent_result` + :func:`records.candidate_verdict` on
  real :class:`model_client.CallResult` s, written by :class:`results.JsonLinesResults` or
  :func:`records.row_record`;
* replay reports: :func:`replay.summary.combine` of shards tallied by
  :class:`replay.figures.Tally`, judged by the real thresholds, written by the results writer.

A label is what :func:`records.verdict_label` says: ``normal``, an issue code, or ``error``.
"""

from __future__ import annotations

from typing import Any

from include.painting_simulator.model_client import CallResult, Outcome
from include.painting_simulator.records import (
    Result,
    candidate_verdict,
    row_record,
    sent_result,
)
from include.painting_simulator.replay import figures, summary, thresholds
from include.painting_simulator.results import JsonLinesResults
from tests.support.contract_examples import BODY, FLAT_RECORD
from tests.support.replay_shards import shard_summary_of

BLOB = "painting-process-equipment/shadow.csv"
CANDIDATE_CONN = "painting_model_service_candidate"
REPLAY_PARAMS = {"start_row": 0, "concurrency": 4, "rate": 0, "shards": 1}


def _outcome(label: str) -> Outcome:
    if label == "normal":
        return Outcome("normal")
    if label == "error":
        return Outcome("error", error="model service failed (503): down", status=503)
    return Outcome("anomaly", prediction={**FLAT_RECORD, "issue": label})


def shadow_result(row: int, production: str, candidate: str, machine: str = "PAINT-1") -> Result:
    """A sent row's result with production's verdict and the candidate's, by label."""
    body = {**BODY, "machineId": machine}
    item = {"source": {"blob": BLOB, "row": row}, "body": body}
    result = sent_result(item, CallResult(_outcome(production), 1, reached=True))  # type: ignore[arg-type]
    if result["kind"] == "anomaly":
        result["prediction"] = {**result["prediction"], "machineId": machine}
    if candidate == "error":  # the candidate never answered
        verdict = candidate_verdict(None, 0.004, "model service unreachable: connection refused")
    else:
        verdict = candidate_verdict(CallResult(_outcome(candidate), 1, reached=True), 0.004)
    result["candidate"] = verdict
    return result


def write_shadow_rows(output_dir: str, run_id: str, pairs: list[tuple[str, str]]) -> None:
    """Write one row per ``(production, candidate)`` label pair through the results writer
    (logged now), rows numbered from 0."""
    results = [shadow_result(row, p, c) for row, (p, c) in enumerate(pairs)]
    JsonLinesResults(output_dir).write_rows(run_id, results)


def shadow_record(
    row: int, production: str, candidate: str, run_id: str, logged_at: str, machine: str = "PAINT-1"
) -> dict[str, Any]:
    """The ledger record of :func:`shadow_result`, logged at ``logged_at``."""
    return dict(row_record(shadow_result(row, production, candidate, machine), run_id, logged_at))


def replay_summary(
    run_id: str,
    pairs: list[tuple[str, str]] | None = None,
    *,
    rows: int = 100,
    latency_s: float = 0.008,
    limits: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A replay's summary as ``summarize`` makes it: ``rows`` normal rows answered in
    ``latency_s`` each (expected normal), plus, with ``pairs``, rows sent to a candidate too;
    judged against ``limits``."""
    tally = figures.Tally()
    for row in range(rows):
        result = shadow_result(row, "normal", "normal")
        if pairs is None:
            del result["candidate"]
        result["expected"] = None
        tally.add({**result, "latency": latency_s})
    for row, (production, candidate) in enumerate(pairs or [], start=rows):
        tally.add({**shadow_result(row, production, candidate), "latency": latency_s})
    tally.seconds = 1.0
    tally.finished_at = tally.started_at + 1.0
    conn_id = CANDIDATE_CONN if pairs is not None else None
    checked = thresholds.limits(limits or {}, "param thresholds", conn_id)
    return summary.combine(
        [shard_summary_of(tally)], run_id, REPLAY_PARAMS, "http://127.0.0.1:8001/predict/",
        checked, conn_id,
    )  # fmt: skip


def write_replay(output_dir: str, summary_: dict[str, Any]) -> None:
    """Write a replay's summary through the results writer."""
    JsonLinesResults(output_dir).write_summary(summary_)
