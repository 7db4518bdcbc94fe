"""The replay's summary: the shards' figures merged, as a record and as a table for the task log.

:func:`combine` makes the summary (one line of ``painting_replay_summary.jsonl``, written through
the results writer), with the release gate's verdict (:mod:`.thresholds`); :func:`format_summary`
prints it, or a shard's summary.
"""

from __future__ import annotations

import time
from typing import Any

from include.painting_simulator import settings
from include.painting_simulator.records import utc_now
from include.painting_simulator.replay import thresholds
from include.painting_simulator.replay.figures import (
    Tally,
    candidate_figures,
    expected_figures,
    latency_ms,
)
from include.painting_simulator.settings import KINDS


def combine(
    shard_summaries: list[dict[str, Any]],
    run_id: str,
    params: dict[str, Any],
    model_url: str,
    limits: dict[str, Any] | None = None,
    candidate_conn_id: str | None = None,
) -> dict[str, Any]:
    """The replay's summary from its shards' (one line of ``painting_replay_summary.jsonl``),
    judged against ``limits`` (:func:`thresholds.resolve`): ``thresholds`` and ``passed``; with a
    candidate, its ``candidate`` block (:func:`figures.candidate_figures`), else ``null``.

    Throughput is over wall-clock time, from the first shard's start to the last one's end.
    """
    total = Tally()
    for summary in shard_summaries:
        total.merge(Tally.from_json(summary))
    started = min((s["started_at"] for s in shard_summaries), default=time.time())
    finished = max((s["finished_at"] or started for s in shard_summaries), default=started)
    wall = max(finished - started, 1e-9) if shard_summaries else 0.0
    merged = {
        "timestamp": utc_now(),
        "service_name": settings.SERVICE_NAME,
        "run_id": run_id,
        "model_service": model_url,
        "start_row": params["start_row"],
        "concurrency": params["concurrency"],
        "rate": params["rate"],
        "shards": len(shard_summaries),
        "rows": total.rows,
        "outcomes": {kind: total.outcomes[kind] for kind in KINDS},
        "elapsed_seconds": round(wall, 3),
        "throughput_rows_per_second": round(total.rows / wall, 1) if wall else 0.0,
        "latency_ms": latency_ms(total.latency),
        "errors_by_cause": dict(total.errors.most_common()),
        "expected": expected_figures(total.expected),
        "candidate": candidate_figures(candidate_conn_id, total.candidate, total.candidate_latency),
        "per_shard": [
            {
                "shard": s["shard"],
                "start_row": s["start_row"],
                "rows": s["rows"],
                "throughput_rows_per_second": round(s["throughput_rows_per_second"], 1),
                "latency_ms": s["latency_ms"],
            }
            for s in sorted(shard_summaries, key=lambda s: s["shard"])
        ],
    }
    merged["thresholds"] = thresholds.evaluate(limits or {}, merged)
    merged["passed"] = all(result["passed"] for result in merged["thresholds"])
    return merged


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a small table for the task log."""
    rows = summary["rows"]
    rate = summary.get("rate")
    header = f"painting_replay {summary.get('run_id', '')}".rstrip()
    if "shards" in summary:
        header += (
            f": {summary['shards']} shard(s), concurrency {summary['concurrency']}, "
            f"rate {f'{rate:g} rows/s' if rate else 'unlimited'}"
        )
    elif "shard" in summary:
        header += f" shard {summary['shard']}"
    seconds = summary.get("elapsed_seconds", summary.get("seconds", 0.0))
    lines = [
        header,
        f"  rows        {rows:,} from row {summary['start_row']:,} in {seconds:.2f} s = "
        f"{summary['throughput_rows_per_second']:,.1f} rows/s",
        "  outcome         rows   share",
    ]
    for kind in KINDS:
        count = summary["outcomes"].get(kind, 0)
        share = 100 * count / rows if rows else 0.0
        lines.append(f"  {kind:<10} {count:>9,} {share:6.1f} %")
    lat = summary["latency_ms"]
    lines.append(
        f"  latency ms  p50 {lat['p50']:.2f}   p95 {lat['p95']:.2f}   p99 {lat['p99']:.2f}   "
        f"max {lat['max']:.2f}"
    )
    causes = summary.get("errors_by_cause") or {}
    lines.append("  errors by cause" + ("" if causes else ": none"))
    lines += [f"    {cause:<40} {count:>9,}" for cause, count in causes.items()]
    expected = summary.get("expected")
    if expected:
        lines.append(
            f"  expected    {expected['rows']:,} row(s) with an expected verdict, accuracy "
            f"{_percent(expected['accuracy'])}"
        )
        lines.append(f"    {'label':<24} {'support':>9} {'precision':>10} {'recall':>8}")
        lines += [
            f"    {label:<24} {scores['support']:>9,} {_percent(scores['precision']):>10} "
            f"{_percent(scores['recall']):>8}"
            for label, scores in expected["by_issue"].items()
        ]
    lines += _candidate_lines(summary.get("candidate"))
    if "thresholds" in summary:
        checked = summary["thresholds"]
        failed = sum(not result["passed"] for result in checked)
        verdict = (
            "none set"
            if not checked
            else ("PASSED" if not failed else f"FAILED ({failed} of {len(checked)})")
        )
        lines.append(f"  thresholds  {verdict}")
        lines += [f"    {thresholds.describe(result)}" for result in checked]
    return "\n".join(lines)


def _candidate_lines(candidate: dict[str, Any] | None) -> list[str]:
    """The candidate section of the report: agreement, latency, errors and each disagreement."""
    if not candidate:
        return []
    lat = candidate["latency_ms"]
    lines = [
        f"  candidate   {candidate['conn_id']}: {candidate['rows']:,} row(s) sent to both, "
        f"agreement {_percent(candidate['agreement'])}, {candidate['errors']:,} candidate "
        "error(s)",
        f"    latency ms  p50 {lat['p50']:.2f}   p95 {lat['p95']:.2f}   p99 {lat['p99']:.2f}   "
        f"max {lat['max']:.2f}",
    ]
    differ = [
        (production, label, count)
        for production, row in candidate["matrix"].items()
        for label, count in row.items()
        if label != production
    ]
    lines.append("    production -> candidate, where they differ" + ("" if differ else ": nowhere"))
    lines += [
        f"      {production:<22} -> {label:<22} {count:>9,}" for production, label, count in differ
    ]
    return lines


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"
