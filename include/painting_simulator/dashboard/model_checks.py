"""The dashboard's "Model checks" figures: each one a small pure function of records.

One definition per figure, so that another results store (a database) can say the same in its
own query language:

* :func:`records.shadow_outcome` (defined there, for the replay and the simulator too): what one
  row record with a ``candidate`` counts as: agreed, disagreed, a candidate error, or nothing;
* :func:`agreement_rate`: agreed / compared;
* :func:`replay_report`: a replay summary (one line of ``painting_replay_summary.jsonl``) as a
  row of the replay reports table (missing blocks are ``None``).

Labels come from :func:`records.verdict_label` and :func:`records.candidate_label` (``normal``,
an issue code, or ``error``): two different issue codes disagree; a candidate error is counted
apart and is never a disagreement.
"""

from __future__ import annotations

from typing import Any


def agreement_rate(compared: int, agreed: int) -> float | None:
    """Agreed / compared (rows on which both services gave a verdict); None with none."""
    return round(agreed / compared, 4) if compared else None


def _block(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def replay_report(summary: dict[str, Any]) -> dict[str, Any]:
    """One replay summary as the reports table shows it: its run, size, speed, the gate's
    thresholds and verdict, the candidate's agreement and the expected verdicts' accuracy.

    A block the summary does not have (``candidate`` null without a candidate, ``expected``
    null without expectations, a summary written before thresholds existed) gives ``None``.
    """
    latency = _block(summary.get("latency_ms"))
    candidate = _block(summary.get("candidate"))
    expected = _block(summary.get("expected"))
    thresholds = summary.get("thresholds")
    return {
        "run_id": summary.get("run_id"),
        "logged_at": summary.get("timestamp"),
        "model_service": summary.get("model_service"),
        "rows": summary.get("rows"),
        "throughput_rows_per_second": summary.get("throughput_rows_per_second"),
        "latency_p95_ms": latency.get("p95"),
        "latency_p99_ms": latency.get("p99"),
        "passed": summary.get("passed"),
        "thresholds": [
            {key: _block(t).get(key) for key in ("name", "limit", "value", "passed")}
            for t in thresholds
        ]
        if isinstance(thresholds, list)
        else None,
        "candidate_conn_id": candidate.get("conn_id"),
        "agreement": candidate.get("agreement"),
        "candidate_errors": candidate.get("errors"),
        "accuracy": expected.get("accuracy"),
    }
