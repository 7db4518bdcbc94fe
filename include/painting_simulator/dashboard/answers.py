"""The dashboard's answers from counts per minute, whichever results store holds the counts.

Both readers (:mod:`ledger_reader` on the JSON-lines files, :mod:`database_reader` on the results
database) count the same things per minute and hand them here, so an answer has one shape and
one set of definitions: the clock (:func:`now_minute`, minutes since the epoch, UTC), a record's
minute (:func:`minute_of`), the timeline's buckets (:func:`bucket_minutes`, :func:`buckets`),
the anomaly rate, the rankings by issue code and by machine (:func:`label`: how a value that is
no text is named), a row's shadow-mode labels and outcome (:func:`shadow_labels`, on
:func:`records.shadow_outcome`) and the answers themselves (:func:`summary_answer`,
:func:`shadow_answer`). No Airflow, no SQL here.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from include.painting_simulator.dashboard.model_checks import agreement_rate
from include.painting_simulator.records import candidate_label, shadow_outcome, verdict_label
from include.painting_simulator.settings import ERROR, KINDS

UNKNOWN = "(unknown)"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Bucket widths for the timeline, in minutes: the first giving at most MAX_BUCKETS buckets.
BUCKET_CHOICES = (1, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 10080)
MAX_BUCKETS = 120


def now_minute() -> int:
    """Now, in minutes since the epoch (UTC): the clock every age is measured from."""
    return int(time.time() // 60)


def minute_iso(minute: int) -> str:
    return (_EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%MZ")


def minute_of(timestamp: Any) -> int | None:
    """Minutes since the epoch (UTC) of an ISO-8601 timestamp, or None if it is not one."""
    if not isinstance(timestamp, str) or len(timestamp) < 16:
        return None
    try:
        if timestamp.endswith("Z") or timestamp.endswith("+00:00") or len(timestamp) == 16:
            # The ledgers' own format: the minute is the first 16 characters (fast path; a
            # minute holds many records, so its parse is cached).
            return _utc_minute(timestamp[:16])
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return int((moment - _EPOCH).total_seconds() // 60)


@lru_cache(maxsize=4096)
def _utc_minute(minute: str) -> int:
    if minute[4] != "-" or minute[7] != "-" or minute[10] != "T" or minute[13] != ":":
        raise ValueError(f"not an ISO-8601 minute: {minute!r}")
    moment = datetime(
        int(minute[:4]), int(minute[5:7]), int(minute[8:10]), int(minute[11:13]),
        int(minute[14:16]), tzinfo=UTC,
    )  # fmt: skip
    return int((moment - _EPOCH).total_seconds() // 60)


def label(value: Any) -> str:
    """How an issue code or a machine id is named in the rankings: as written; a missing or
    empty one ``(unknown)``; a value that is no text as its JSON."""
    if value is None or value == "":
        return UNKNOWN
    return value if isinstance(value, str) else json.dumps(value)


def bucket_minutes(span_minutes: int) -> int:
    for width in BUCKET_CHOICES:
        if span_minutes / width <= MAX_BUCKETS:
            return width
    return BUCKET_CHOICES[-1]


def buckets(start: int | None, first: int | None, end: int) -> tuple[int, int, range]:
    """The range's first minute (``start``; None: ``first``, the first minute the store holds),
    the bucket width and the buckets' first minutes: the timeline's, for every chart over time."""
    if start is None:  # all of it: from the first minute the store holds
        start = first if first is not None else end - 60
    start = min(start, end - 1)
    width = bucket_minutes(end - start)
    return start, width, range(start - start % width, end, width)


@lru_cache(maxsize=4096)
def _shadow_labels(
    kind: str | None, issue: Any, candidate_kind: Any, candidate_issue: Any
) -> tuple[str, str, str | None]:
    production = verdict_label({"kind": kind or ERROR, "prediction": {"issue": issue}})  # type: ignore[typeddict-item]
    if candidate_kind not in KINDS:
        candidate_kind = ERROR
    verdict = {
        "kind": candidate_kind,
        "issue": candidate_issue if isinstance(candidate_issue, str) else None,
    }
    candidate = candidate_label(verdict)  # type: ignore[arg-type]
    return production, candidate, shadow_outcome(production, candidate)


def shadow_labels(
    kind: str | None, issue: Any, candidate_kind: Any, candidate_issue: Any
) -> tuple[str, str, str | None]:
    """Production's label (``kind``: the row's), the candidate's and :func:`shadow_outcome`
    (cached: a store holds few distinct verdicts). A candidate ``kind`` the dashboard does not
    know is no verdict (an error); an issue that is no text, none; a production issue that is
    no code (a list, an object), as its JSON."""
    try:
        return _shadow_labels(kind, issue, candidate_kind, candidate_issue)
    except TypeError:  # unhashable: a list or an object
        candidate_kind = candidate_kind if candidate_kind.__class__ is str else None
        return _shadow_labels(kind, label(issue), candidate_kind, None)


def rate(anomalies: int, normals: int) -> float | None:
    """Share of anomalies among the rows the model judged (errors have no verdict)."""
    judged = anomalies + normals
    return round(anomalies / judged, 4) if judged else None


def ranked(counts: dict[str, int], key: str) -> list[dict[str, Any]]:
    """Most first; equal counts by name (the same order from every store)."""
    ordered = sorted(counts.items(), key=lambda i: (-i[1], i[0]))
    return [{key: name, "count": n} for name, n in ordered]


def shadow_counts(figures: list[int]) -> dict[str, Any]:
    compared, agreed, errors = figures
    return {
        "compared": compared,
        "agreed": agreed,
        "disagreed": compared - agreed,
        "candidate_errors": errors,
        "agreement": agreement_rate(compared, agreed),
    }


def summary_answer(
    start: int, end: int, width: int, *, counts: dict[str, int],
    timeline: dict[int, dict[str, int]], by_issue: dict[str, int], by_machine: dict[str, int],
    totals: dict[str, int], future: dict[str, int], skipped: int, run_failures: int,
    newest: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The summary's answer (docs/dashboard.md) from its counts: ``counts`` per kind in the
    range, ``timeline`` bucket -> kind -> rows, the breakdowns, the all-time ``totals``, the
    rows stamped after now (``future``), and the store's other figures."""
    return {
        "indexing": None,
        "range": {"from": minute_iso(start), "to": minute_iso(end), "bucket_minutes": width},
        "counts": {**counts, "total": sum(counts.values())},
        "anomaly_rate": rate(counts["anomaly"], counts["normal"]),
        "timeline": [
            {"start": minute_iso(b), **c, "anomaly_rate": rate(c["anomaly"], c["normal"])}
            for b, c in timeline.items()
        ],
        "by_issue": ranked(by_issue, "issue"),
        "by_machine": ranked(by_machine, "machine"),
        "totals": {**totals, "total": sum(totals.values())},
        "skipped_lines": skipped,
        "run_failures": run_failures,
        "future": {**future, "total": sum(future.values())},
        "newest_record": newest,
    }


def shadow_answer(
    start: int, end: int, width: int, counts: list[int], timeline: dict[int, list[int]],
    left_out: int,
) -> dict[str, Any]:  # fmt: skip
    """The shadow view's answer from ``[compared, agreed, candidate errors]`` in all and per
    bucket, and the replay rows left out."""
    return {
        "indexing": None,
        "range": {"from": minute_iso(start), "to": minute_iso(end), "bucket_minutes": width},
        "counts": shadow_counts(counts),
        "timeline": [{"start": minute_iso(b), **shadow_counts(c)} for b, c in timeline.items()],
        "replay_rows_left_out": left_out,
    }


def kind_counts() -> dict[str, int]:
    return dict.fromkeys(KINDS, 0)
