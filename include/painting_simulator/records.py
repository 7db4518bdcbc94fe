"""The typed records a row becomes on its way, and the failure record of a run.

A row travels as four shapes, each a plain JSON-serialisable dict (they cross XCom and land in
the ledgers), typed here so that every module agrees on the keys:

``Item``
    a CSV row ready to send (``source`` + ``body``), or one that cannot be sent (``source`` +
    ``raw`` + ``error``): made by :mod:`row_mapping`.
``Result``
    the verdict on an item (``kind`` anomaly / normal / error): made by :func:`sent_result` and
    :func:`unsent_result` for :mod:`model_client` and the replay's sender.
``RowRecord``
    one line of a row ledger (``painting_issue_logs.jsonl``, ``painting_normal_logs.jsonl``,
    ``painting_errors.jsonl``): made by :func:`row_record`, written by :mod:`results`.
``FailureRecord``
    one line of ``painting_run_failures.jsonl``: why a run failed (:func:`failure_record`).

**``original_data``** (in results and row records) is what the row was when it left the
simulator, and so means one of three things, by kind and cause:

* a row that was sent (every anomaly and normal record, and an error record whose ``error`` is
  the model service's answer or its silence): the **request body** POSTed to ``/predict/``;
* a row that could not be read or mapped (an error record whose ``error`` names the blob, row
  and column): the **raw CSV row** (column -> text as written, values longer than
  :data:`row_mapping.SHOWN_VALUE_CHARS` cut);
* a file that could not be read at all (one error record for the whole blob): ``null``.

**``expected``** (in items, results and row records) is the verdict the CSV row says it should
get, from its column ``expected_issue``: an issue code, or ``None`` for a row expected normal.
The key is there exactly when the row has an expectation: a blob without the column (or a row
that could not be read as CSV) gives items, results and records without the key.
:func:`verdict_label` and :func:`expected_label` turn verdicts and expectations into the labels
a replay compares (``normal``, an issue code, or ``error``).

**``candidate``** (in results and row records of a replay with a ``candidate_conn_id``, and of a
simulator run in shadow mode: the Variable ``painting_candidate_conn_id``) is what
the candidate model service said about the same request body (:class:`CandidateVerdict`, made by
:func:`candidate_verdict`): it never changes the row's ``kind``, which is the production
service's. Rows that were not sent have none.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from include.painting_simulator import settings

if TYPE_CHECKING:
    from include.painting_simulator.model_client import CallResult


class Source(TypedDict):
    """Where a row comes from: the blob and its 0-based data row."""

    blob: str
    row: int


class Item(TypedDict):
    """A row of a window: ``body`` when it can be sent, else ``raw`` and ``error``."""

    source: Source
    body: NotRequired[dict[str, Any]]
    raw: NotRequired[dict[str, Any] | None]
    error: NotRequired[str]
    expected: NotRequired[str | None]  # see the module doc


class CandidateVerdict(TypedDict):
    """The candidate model service's verdict on a row sent to both services."""

    kind: str  # settings.ANOMALY / NORMAL / ERROR
    issue: str | None  # anomalies: the candidate's issue code
    status: int | None  # the HTTP status of its last answer; None when it never answered
    latency_ms: float  # all attempts
    error: NotRequired[str]  # kind error: why the candidate gave no verdict


class Result(TypedDict):
    """The verdict on one item; ``attempts`` is present exactly when the row was sent."""

    source: Source
    kind: str  # settings.ANOMALY / NORMAL / ERROR
    original_data: dict[str, Any] | None  # see the module doc
    attempts: NotRequired[int]
    prediction: NotRequired[dict[str, Any]]  # anomalies: the model's answer
    error: NotRequired[str]  # errors: the cause, naming blob, row and column where known
    status: NotRequired[int]  # errors with an HTTP answer
    latency: NotRequired[float]  # replay only (seconds, all attempts); never recorded
    expected: NotRequired[str | None]  # see the module doc
    candidate: NotRequired[CandidateVerdict]  # see the module doc


class RowRecord(TypedDict):
    """One line of a row ledger, keyed by ``(run_id, source.blob, source.row)``."""

    timestamp: str  # when it was logged (ISO-8601 UTC, milliseconds, ``Z``)
    service_name: str
    run_id: str
    source: Source
    expected: NotRequired[str | None]  # see the module doc
    prediction: NotRequired[dict[str, Any]]
    error: NotRequired[str]
    status: NotRequired[int]
    candidate: NotRequired[CandidateVerdict]  # see the module doc
    original_data: dict[str, Any] | None


class FailureRecord(TypedDict):
    """One line of ``painting_run_failures.jsonl``, keyed by ``(run_id, task_id, try_number)``."""

    record_type: str  # settings.RUN_FAILURE
    timestamp: str
    service_name: str
    dag_id: str | None
    run_id: str
    task_id: str | None
    try_number: int | None
    error: str


class EncodedBody(dict):
    """A request body (a plain dict for every reader) that carries ``text``, its JSON as a
    ledger line spells it (:func:`ledger.json_line`): the replay encodes each body once, to
    POST it, and its ledger line reuses that text instead of encoding the body again."""

    __slots__ = ("text",)

    def __init__(self, body: dict[str, Any], text: str) -> None:
        super().__init__(body)
        self.text = text


def utc_now() -> str:
    """Now as records spell it: ISO-8601 UTC with milliseconds and a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _with_expected(result: Result, item: Item) -> Result:
    if "expected" in item:
        result["expected"] = item["expected"]
    return result


def unsent_result(item: Item) -> Result:
    """The error result of an item that could not be mapped to a request body (not sent)."""
    result: Result = {"source": item["source"], "kind": settings.ERROR,
                      "original_data": item.get("raw"), "error": item["error"]}  # fmt: skip
    return _with_expected(result, item)


def sent_result(item: Item, call: CallResult) -> Result:
    """The result of a sent item: its source, kind, body, attempts, prediction or error, and
    its expectation."""
    result: Result = {
        "source": item["source"],
        "kind": call.outcome.kind,
        "original_data": item["body"],
        "attempts": call.attempts,
    }
    if call.outcome.kind == settings.ANOMALY:
        result["prediction"] = call.outcome.prediction
    if call.outcome.kind == settings.ERROR:
        result["error"] = call.outcome.error  # type: ignore[typeddict-item]
        if call.outcome.status is not None:
            result["status"] = call.outcome.status
    return _with_expected(result, item)


def candidate_verdict(call: CallResult | None, seconds: float, cause: str = "") -> CandidateVerdict:
    """The candidate's verdict from its call (``None`` when the call itself failed: ``cause``
    says why), with the seconds it took over all attempts."""
    outcome = call.outcome if call is not None else None
    kind = outcome.kind if outcome is not None else settings.ERROR
    status = {settings.ANOMALY: 200, settings.NORMAL: 204}.get(kind)
    verdict: CandidateVerdict = {
        "kind": kind,
        "issue": _issue(outcome.prediction) if kind == settings.ANOMALY and outcome else None,
        "status": status if status is not None else (outcome.status if outcome else None),
        "latency_ms": round(seconds * 1000, 3),
    }
    if kind == settings.ERROR:
        verdict["error"] = (outcome.error if outcome is not None else None) or cause
    return verdict


def _issue(prediction: Any) -> str:
    return str((prediction or {}).get("issue") or settings.ANOMALY)


def verdict_label(result: Result) -> str:
    """What a row got, as a label: its issue code (anomaly), ``normal`` or ``error``."""
    if result["kind"] == settings.ANOMALY:
        return _issue(result.get("prediction"))
    return result["kind"]


def candidate_label(verdict: CandidateVerdict) -> str:
    """What the candidate said, as a label (as :func:`verdict_label`)."""
    if verdict["kind"] == settings.ANOMALY:
        return verdict["issue"] or settings.ANOMALY
    return verdict["kind"]


# What a row sent to both services counts as (:func:`shadow_outcome`).
AGREED = "agreed"
DISAGREED = "disagreed"
CANDIDATE_ERROR = "candidate_error"


def shadow_outcome(production: str, candidate: str) -> str | None:
    """What a row counts as, from production's label and the candidate's: the one definition
    of agreement, for the replay's summary, the simulator's shadow log and the dashboard.

    ``CANDIDATE_ERROR`` when the candidate gave no verdict (whatever production said); ``None``
    when production gave none (an error row: nothing to compare); else ``AGREED`` when the two
    labels are equal and ``DISAGREED`` when not (two different issue codes disagree). Compared
    rows = agreed + disagreed; agreement = agreed ÷ compared.
    """
    if candidate == settings.ERROR:
        return CANDIDATE_ERROR
    if production == settings.ERROR:
        return None
    return AGREED if production == candidate else DISAGREED


def expected_label(expected: str | None) -> str:
    """The label of an expectation: the issue code, or ``normal`` for ``None``."""
    return settings.NORMAL if expected is None else expected


def error_cause(result: Result) -> str:
    """A short cause to group errors by: the HTTP status, an unmappable row or no answer."""
    if result.get("status") is not None:
        return f"HTTP {result['status']}"
    if "attempts" not in result:
        return "row cannot be mapped"
    return "no answer (connection error or timeout)"


def row_record(result: Result, run_id: str, logged_at: str | None = None) -> RowRecord:
    """The ledger record of one row's result (fields: ``docs/results.md``)."""
    record: dict[str, Any] = {
        "timestamp": logged_at or utc_now(),
        "service_name": settings.SERVICE_NAME,
        "run_id": run_id,
        "source": {"blob": result["source"]["blob"], "row": result["source"]["row"]},
    }
    if "expected" in result:
        record["expected"] = result["expected"]
    if result["kind"] == settings.ANOMALY:
        record["prediction"] = result["prediction"]
    elif result["kind"] == settings.ERROR:
        record["error"] = result["error"]
        if result.get("status") is not None:
            record["status"] = result["status"]
    if "candidate" in result:
        record["candidate"] = result["candidate"]
    record["original_data"] = result["original_data"]
    return record  # type: ignore[return-value]


def failure_record(
    *,
    dag_id: str | None,
    run_id: str,
    task_id: str | None,
    try_number: int | None,
    cause: str,
    logged_at: str | None = None,
) -> FailureRecord:
    """The record of a failed run: which run, task and try, and the cause in one line."""
    return {
        "record_type": settings.RUN_FAILURE,
        "timestamp": logged_at or utc_now(),
        "service_name": settings.SERVICE_NAME,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "try_number": try_number,
        "error": cause,
    }


def is_row_record(record: dict[str, Any]) -> bool:
    """True for a row's record; False for a failure record (``record_type`` set).

    Row ledgers hold row records only; ledgers written by earlier versions may still hold
    failure records in ``painting_errors.jsonl``, which readers skip with this test.
    """
    return "record_type" not in record


def describe_anomaly(record: RowRecord) -> str:
    """One readable task-log line per anomaly: machine, time, issue, and where the row came from."""
    prediction = record.get("prediction") or {}
    data = record.get("original_data") or {}
    return (
        f"ANOMALY {prediction.get('issue', '?')} machine={data.get('machineId', '?')} "
        f"time={data.get('timeStamp', '?')} thick={data.get('thick')} "
        f"voltage={data.get('voltage')} current={data.get('current')} temper={data.get('temper')} "
        f"({record['source']['blob']} row {record['source']['row']})"
    )


def describe_error(record: RowRecord) -> str:
    """One readable task-log line per error record."""
    status = f" status={record['status']}" if "status" in record else ""
    return (
        f"ERROR {record['source']['blob']} row {record['source']['row']}{status}: {record['error']}"
    )


def describe_failure(record: FailureRecord) -> str:
    """One readable log line per failure record."""
    return (
        f"RUN FAILED {record['run_id']} task {record['task_id']} "
        f"(try {record['try_number']}): {record['error']}"
    )
