"""A replay's figures: outcomes, errors, latencies, verdicts against expectations and a candidate.

All of them merge across shards.

:class:`Tally` is what a shard has recorded so far (kept in its progress file between attempts);
:class:`LatencyHistogram` keeps latencies in constant memory with percentiles within 1 %;
:func:`expected_figures` turns the expected-versus-got counts into accuracy, the confusion
matrix and precision / recall per label; :func:`candidate_figures` turns the production-versus-
candidate counts into the agreement, the matrix, the candidate's latency and its errors.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from include.painting_simulator.records import (
    AGREED,
    CANDIDATE_ERROR,
    DISAGREED,
    Result,
    candidate_label,
    error_cause,
    expected_label,
    shadow_outcome,
    verdict_label,
)
from include.painting_simulator.settings import ERROR, KINDS

# Rates (accuracy, error rate, ...) are reported, and compared with thresholds, to this many
# decimal places.
RATE_DIGITS = 6


def rate(part: int, whole: int) -> float | None:
    """``part / whole`` rounded to :data:`RATE_DIGITS`; None when ``whole`` is 0."""
    return round(part / whole, RATE_DIGITS) if whole else None


Pairs = Counter[tuple[str, str]]  # (label a, label b) -> rows


def pairs_to_json(pairs: Pairs) -> dict[str, dict[str, int]]:
    """``{a: {b: rows}}``, labels sorted."""
    nested: dict[str, dict[str, int]] = {}
    for (a, b), count in sorted(pairs.items()):
        nested.setdefault(a, {})[b] = count
    return nested


def pairs_from_json(nested: dict[str, dict[str, int]]) -> Pairs:
    return Counter({(a, b): n for a, row in nested.items() for b, n in row.items()})


class LatencyHistogram:
    """Latencies in buckets 1 % wide on a log scale: constant memory, mergeable across shards,
    percentiles within 1 %."""

    FLOOR = 1e-5  # seconds; everything faster is one bucket
    LOG_RATIO = math.log(1.01)

    def __init__(self, counts: dict[int, int] | None = None, maximum: float = 0.0) -> None:
        self.counts: Counter[int] = Counter(counts or {})
        self.maximum = maximum

    def add(self, seconds: float) -> None:
        bucket = (
            0 if seconds <= self.FLOOR else int(math.log(seconds / self.FLOOR) / self.LOG_RATIO) + 1
        )
        self.counts[bucket] += 1
        self.maximum = max(self.maximum, seconds)

    def merge(self, other: LatencyHistogram) -> None:
        self.counts.update(other.counts)
        self.maximum = max(self.maximum, other.maximum)

    def percentile(self, q: float) -> float:
        """The latency (seconds) below which ``q`` % of the calls fall (0 if there were none)."""
        total = sum(self.counts.values())
        if not total:
            return 0.0
        buckets = sorted(self.counts)
        cumulative, rank = [], math.ceil(total * q / 100)
        running = 0
        for bucket in buckets:
            running += self.counts[bucket]
            cumulative.append(running)
        bucket = buckets[bisect.bisect_left(cumulative, max(rank, 1))]
        return min(self.FLOOR * math.exp(bucket * self.LOG_RATIO), self.maximum)

    def to_json(self) -> dict[str, Any]:
        return {"buckets": {str(k): v for k, v in sorted(self.counts.items())}, "max": self.maximum}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> LatencyHistogram:
        return cls({int(k): v for k, v in value["buckets"].items()}, value["max"])


@dataclass
class Tally:
    """What a shard has recorded so far (kept in its progress file between attempts)."""

    rows: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    expected: Pairs = field(default_factory=Counter)  # (expected label, got label) -> rows
    candidate: Pairs = field(default_factory=Counter)  # (production, candidate label) -> rows
    candidate_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    seconds: float = 0.0  # time spent replaying, over all attempts
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def add(self, result: Result) -> None:
        self.rows += 1
        self.outcomes[result["kind"]] += 1
        if result["kind"] == ERROR:
            self.errors[error_cause(result)] += 1
        if result.get("latency") is not None:
            self.latency.add(result["latency"])
        if "expected" in result:
            self.expected[(expected_label(result["expected"]), verdict_label(result))] += 1
        if "candidate" in result:
            verdict = result["candidate"]
            self.candidate[(verdict_label(result), candidate_label(verdict))] += 1
            self.candidate_latency.add(verdict["latency_ms"] / 1000)

    def merge(self, other: Tally) -> None:
        """Add another shard's figures (not its times: :func:`summary.combine` takes those)."""
        self.rows += other.rows
        self.outcomes.update(other.outcomes)
        self.errors.update(other.errors)
        self.latency.merge(other.latency)
        self.expected.update(other.expected)
        self.candidate.update(other.candidate)
        self.candidate_latency.merge(other.candidate_latency)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "outcomes": {kind: self.outcomes[kind] for kind in KINDS},
            "errors_by_cause": dict(self.errors.most_common()),
            "latency_histogram": self.latency.to_json(),
            "expected_confusion": pairs_to_json(self.expected),
            "candidate_matrix": pairs_to_json(self.candidate),
            "candidate_latency_histogram": self.candidate_latency.to_json(),
            "seconds": self.seconds,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Tally:
        return cls(
            rows=value["rows"],
            outcomes=Counter(value["outcomes"]),
            errors=Counter(value["errors_by_cause"]),
            latency=LatencyHistogram.from_json(value["latency_histogram"]),
            # Progress files of older versions have no expected / candidate figures.
            expected=pairs_from_json(value.get("expected_confusion", {})),
            candidate=pairs_from_json(value.get("candidate_matrix", {})),
            candidate_latency=LatencyHistogram.from_json(
                value.get("candidate_latency_histogram", {"buckets": {}, "max": 0.0})
            ),
            seconds=value["seconds"],
            started_at=value["started_at"],
            finished_at=value.get("finished_at"),
        )


def latency_ms(histogram: LatencyHistogram) -> dict[str, float]:
    return {
        **{f"p{q}": round(histogram.percentile(q) * 1000, 2) for q in (50, 95, 99)},
        "max": round(histogram.maximum * 1000, 2),
    }


def expected_figures(confusion: Pairs) -> dict[str, Any] | None:
    """How right the service was on the rows with an expectation (None when no row had one):
    ``rows``, ``accuracy`` (rows whose got label equals the expected label ÷ rows; a row that
    ended as an error is wrong), ``confusion`` ``{expected: {got: rows}}`` and ``by_issue``
    ``{label: {precision, recall, support}}`` over every label but ``error`` (precision is None
    for a label never got, recall for one never expected)."""
    rows = sum(confusion.values())
    if not rows:
        return None
    expected, got, right = Counter[str](), Counter[str](), Counter[str]()
    for (want, have), count in confusion.items():
        expected[want] += count
        got[have] += count
        if want == have:
            right[want] += count
    labels = sorted((set(expected) | set(got)) - {ERROR})
    return {
        "rows": rows,
        "accuracy": rate(sum(right.values()), rows),
        "confusion": pairs_to_json(confusion),
        "by_issue": {
            label: {
                "precision": rate(right[label], got[label]),
                "recall": rate(right[label], expected[label]),
                "support": expected[label],
            }
            for label in labels
        },
    }


def candidate_figures(conn_id: str | None, matrix: Pairs, latency: LatencyHistogram) -> Any:
    """The candidate block of a summary (None without a candidate): ``conn_id``, ``agreement``
    (rows with the same label ÷ rows on which both gave a verdict, neither ``error``; two
    different issue codes disagree), ``matrix`` ``{production: {candidate: rows}}`` over every
    row sent to both, the candidate's ``latency_ms`` and ``errors`` (rows it gave no verdict)."""
    if not conn_id:
        return None
    outcomes: Counter[str | None] = Counter()
    for (production, candidate), count in matrix.items():
        outcomes[shadow_outcome(production, candidate)] += count
    same, errors = outcomes[AGREED], outcomes[CANDIDATE_ERROR]
    both = same + outcomes[DISAGREED]
    return {
        "conn_id": conn_id,
        "rows": sum(matrix.values()),
        "agreement": rate(same, both),
        "matrix": pairs_to_json(matrix),
        "latency_ms": latency_ms(latency),
        "errors": errors,
    }
