"""Replay a range of the row sequence to the model service, as fast as it takes it or at a rate.

The body of the ``painting_replay`` DAG's tasks (the DAG file is wiring). A replay is a load
test with real data: rows ``start_row`` to ``start_row + rows - 1`` of the simulator's sequence
(all ``.csv`` blobs under the prefix, sorted by name) are mapped like the simulator's, POSTed to
``/predict/`` with at most ``concurrency`` requests in flight, and every outcome is recorded in
the simulator's ledgers under the replay's run id. The simulator's position is never read or
written.

Memory stays flat whatever the range: rows are read lazily from the row cache
(:mod:`blob_cache`) in chunks of :data:`CHUNK_ROWS`, recorded chunk by chunk (the next chunk is
being sent while the previous one is written), and latencies go into a fixed-size histogram.

HTTP client: ``aiohttp`` (a requirement of Airflow's HTTP provider, whose async hook is built on
it): one event loop and one pooled connector give ``concurrency`` requests in flight for a small
fraction of a core, where ``requests`` would need a thread per request and the GIL would make the
client, not the model service, the limit. The address, headers, basic auth and ``verify`` come
from the ``painting_model_service`` connection through ``HttpHook`` (:func:`endpoint_from_hook`).

A retried shard task resumes after the last chunk it recorded (a small progress file in the
output directory); the chunk that was in flight is sent again and recorded once (each chunk has
its own ledger receipt).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from include.painting_simulator import ledger, model_client, sequence, settings
from include.painting_simulator.window import BlobReader, map_rows

log = logging.getLogger("painting_simulator")

SUMMARY_FILE = "painting_replay_summary.jsonl"
PROGRESS_DIR = ".painting_replay_progress"
CHUNK_ROWS = 5000
KINDS = (model_client.ANOMALY, model_client.NORMAL, model_client.ERROR)
# Errors and anomalies are few: writing them first keeps a chunk's later appends from
# rescanning much (see ledger.Ledgers.append_once).
RECORD_ORDER = (model_client.ERROR, model_client.ANOMALY, model_client.NORMAL)


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


def error_cause(result: dict[str, Any]) -> str:
    """A short cause to group errors by: the HTTP status, an unmappable row or no answer."""
    if result.get("status") is not None:
        return f"HTTP {result['status']}"
    if "attempts" not in result:
        return "row cannot be mapped"
    return "no answer (connection error or timeout)"


@dataclass
class Tally:
    """What a shard has recorded so far (kept in its progress file between attempts)."""

    rows: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    seconds: float = 0.0  # time spent replaying, over all attempts
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def add(self, result: dict[str, Any]) -> None:
        self.rows += 1
        self.outcomes[result["kind"]] += 1
        if result["kind"] == model_client.ERROR:
            self.errors[error_cause(result)] += 1
        if result.get("latency") is not None:
            self.latency.add(result["latency"])

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "outcomes": {kind: self.outcomes[kind] for kind in KINDS},
            "errors_by_cause": dict(self.errors.most_common()),
            "latency_histogram": self.latency.to_json(),
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
            seconds=value["seconds"],
            started_at=value["started_at"],
            finished_at=value.get("finished_at"),
        )


# ---------------------------------------------------------------------------------------------
# Which rows


def count_rows(reader: BlobReader, prefix: str) -> int:
    """Rows of the whole sequence (builds the row cache of every blob on a cold worker)."""
    return sum(len(reader.load(name) or ()) for name in reader.list_csv(prefix))


def plan_shards(total: int, start_row: int, rows: int | None, shards: int) -> list[dict[str, int]]:
    """Split rows ``start_row .. start_row + rows - 1`` (default: to the end) into ``shards``
    contiguous ranges of nearly equal size."""
    if start_row < 0 or shards < 1 or (rows is not None and rows < 1):
        raise ValueError(f"start_row={start_row}, rows={rows}, shards={shards}: out of range")
    if start_row >= total:
        raise ValueError(f"start_row={start_row} is past the end of the sequence ({total} rows)")
    available = total - start_row
    count = available if rows is None else rows
    if count > available:
        raise ValueError(
            f"start_row={start_row} + rows={rows} goes past the end of the sequence "
            f"({total} rows); at most {available} rows from there"
        )
    shards = min(shards, count)
    base, extra = divmod(count, shards)
    specs, row = [], start_row
    for shard in range(shards):
        size = base + (shard < extra)
        specs.append({"shard": shard, "shards": shards, "start_row": row, "rows": size})
        row += size
    return specs


def iter_chunks(
    reader: BlobReader, prefix: str, start_row: int, rows: int, chunk_rows: int = CHUNK_ROWS
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """``(global row of the chunk's first row, items)`` for the range, ``chunk_rows`` at a time;
    items as the simulator's window builds them (a body, or the error of an unmappable row)."""
    names = reader.list_csv(prefix)
    position: sequence.Position | None = sequence.locate(names, start_row, reader.load)
    first, left = start_row, rows
    while left > 0:
        window = sequence.take_window(names, position, min(chunk_rows, left), reader.load)
        for warning in window.warnings:
            log.warning("%s", warning)
        yield first, map_rows(window.rows)
        first += len(window.rows)
        left -= len(window.rows)
        position = window.next_position


# ---------------------------------------------------------------------------------------------
# Sending


@dataclass(frozen=True)
class Endpoint:
    """Where and how to POST: from the ``painting_model_service`` connection."""

    url: str
    timeout: float
    attempts: int
    headers: dict[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None
    verify: bool = True


def endpoint_from_hook(hook: Any, timeout: float, attempts: int) -> Endpoint:
    """The connection of an ``HttpHook`` as an :class:`Endpoint`: base URL + ``/predict/``,
    headers from its extra, basic auth (login/password) and ``verify``."""
    import requests

    session = hook.get_conn()
    defaults = requests.utils.default_headers()
    headers = {k: v for k, v in session.headers.items() if defaults.get(k) != v}
    auth = session.auth
    if isinstance(auth, requests.auth.HTTPBasicAuth):
        auth = (auth.username, auth.password)
    elif auth is not None and not isinstance(auth, tuple):
        raise ValueError(
            f"connection {hook.http_conn_id!r} uses {type(auth).__name__}; painting_replay "
            "supports basic auth (login/password) and headers only"
        )
    return Endpoint(
        url=hook.url_from_endpoint(settings.PREDICT_ENDPOINT),
        timeout=timeout,
        attempts=attempts,
        headers=headers,
        auth=auth,
        verify=session.verify is not False,
    )


async def _post(session: Any, url: str, body: dict[str, Any]) -> model_client.HttpAnswer:
    import aiohttp

    try:
        async with session.post(url, json=body) as response:
            text = await response.text()
            retry_after = response.headers.get("Retry-After", "").strip()
            return model_client.HttpAnswer(
                response.status, text, float(retry_after) if retry_after.isdigit() else None
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise model_client.TransportError(f"{type(exc).__name__} on POST {url}") from exc


async def send_with_retries(
    session: Any, url: str, body: dict[str, Any], attempts: int, backoff_seconds: float = 1.0
) -> model_client.CallResult:
    """POST one body under the simulator's :class:`model_client.RetryPolicy`, on the event loop."""
    policy = model_client.RetryPolicy(attempts, backoff_seconds)
    while True:
        try:
            answer: model_client.HttpAnswer | model_client.TransportError = await _post(
                session, url, body
            )
        except model_client.TransportError as exc:
            answer = exc
        step = policy.after(answer)
        if isinstance(step, model_client.CallResult):
            return step
        await asyncio.sleep(step)


class _Sender:
    """Sends items with bounded concurrency and an optional rate, one chunk at a time."""

    def __init__(self, session: Any, endpoint: Endpoint, concurrency: int, rate: float) -> None:
        self.session, self.endpoint = session, endpoint
        self.concurrency, self.rate = concurrency, rate
        self.started = time.monotonic()
        self.sent = 0
        self.answered = False

    async def call(self, item: dict[str, Any]) -> dict[str, Any]:
        if "body" not in item:
            return model_client.unmapped_result(item)
        if self.rate:
            due = self.started + self.sent / self.rate
            self.sent += 1
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
        began = time.perf_counter()
        call = await send_with_retries(
            self.session, self.endpoint.url, item["body"], self.endpoint.attempts
        )
        latency = time.perf_counter() - began
        if not call.reached and not self.answered:
            raise model_client.unreachable(call, item["source"], "the shard will be retried")
        self.answered = self.answered or call.reached
        return {**model_client.row_result(item["source"], item["body"], call), "latency": latency}

    async def send_chunk(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results: list[Any] = [None] * len(items)
        todo = iter(enumerate(items))

        async def worker() -> None:
            for index, item in todo:  # shared: each item is taken by one worker
                results[index] = await self.call(item)

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(items)))))
        return results


async def _replay(
    chunks: Iterator[tuple[int, list[dict[str, Any]]]],
    endpoint: Endpoint,
    concurrency: int,
    rate: float,
    record: Callable[[int, list[dict[str, Any]]], None],
) -> None:
    """Send chunk after chunk; the next chunk is read and the previous one recorded (in
    threads) while the current one is being sent."""
    import aiohttp

    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=None if endpoint.verify else False)
    session = aiohttp.ClientSession(
        connector=connector,
        headers=endpoint.headers,
        auth=aiohttp.BasicAuth(*endpoint.auth) if endpoint.auth else None,
        timeout=aiohttp.ClientTimeout(total=endpoint.timeout),
    )
    async with session:
        sender = _Sender(session, endpoint, concurrency, rate)
        recording: asyncio.Future[None] | None = None
        upcoming = loop.run_in_executor(None, next, chunks, None)
        while (chunk := await upcoming) is not None:
            upcoming = loop.run_in_executor(None, next, chunks, None)
            first, items = chunk
            results = await sender.send_chunk(items)
            if recording is not None:
                await recording
            recording = loop.run_in_executor(None, record, first, results)
        if recording is not None:
            await recording


def _run_event_loop(main: Any) -> None:
    """``uvloop`` when installed (uvicorn's standard extras, part of Airflow's install): its C
    event loop took about a fifth less CPU per request than asyncio's in our measurements, CPU
    that the model service gets instead when both share a machine. Plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


# ---------------------------------------------------------------------------------------------
# A shard: send, record, remember progress


class Progress:
    """A shard's progress file: the rows recorded so far and their tally (for retries)."""

    def __init__(self, output_dir: str, run_id: str, shard: int) -> None:
        key = hashlib.sha256(run_id.encode()).hexdigest()[:24]
        self.path = os.path.join(output_dir, PROGRESS_DIR, f"{key}-shard{shard}.json")
        self.run_id, self.shard = run_id, shard

    def load(self) -> Tally | None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                saved = json.load(fh)
        except (FileNotFoundError, ValueError):
            return None
        if saved.get("run_id") != self.run_id or saved.get("shard") != self.shard:
            return None
        return Tally.from_json(saved["tally"])

    def save(self, tally: Tally) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"run_id": self.run_id, "shard": self.shard, "tally": tally.to_json()}, fh)
        os.replace(tmp, self.path)


def run_shard(
    reader: BlobReader,
    prefix: str,
    spec: dict[str, int],
    endpoint: Endpoint,
    *,
    concurrency: int,
    rate: float,
    output_dir: str,
    run_id: str,
    chunk_rows: int = CHUNK_ROWS,
) -> dict[str, Any]:
    """Replay one shard (``{"shard", "start_row", "rows"}``) and return its summary."""
    if concurrency < 1 or rate < 0:
        raise ValueError(f"concurrency={concurrency} must be >= 1 and rate={rate} >= 0")
    progress = Progress(output_dir, run_id, spec["shard"])
    tally = progress.load() or Tally()
    if tally.rows:
        log.info("shard %d resumes after %d recorded row(s)", spec["shard"], tally.rows)
    left = spec["rows"] - tally.rows
    if left > 0:
        ledgers = ledger.Ledgers(output_dir)
        began = time.monotonic()
        seconds_before = tally.seconds

        def record(first: int, results: list[dict[str, Any]]) -> None:
            logged_at = ledger.utc_now()
            receipt = f"{run_id}#replay-row-{first}"
            for kind in RECORD_ORDER:
                records = [
                    ledger.make_record(r, run_id, logged_at) for r in results if r["kind"] == kind
                ]
                ledgers.append_once(kind, run_id, records, receipt=receipt)
            for result in results:
                tally.add(result)
            tally.seconds = seconds_before + time.monotonic() - began
            progress.save(tally)

        chunks = iter_chunks(reader, prefix, spec["start_row"] + tally.rows, left, chunk_rows)
        _run_event_loop(_replay(chunks, endpoint, concurrency, rate, record))
    tally.finished_at = time.time()
    progress.save(tally)
    return {
        "shard": spec["shard"],
        "start_row": spec["start_row"],
        **tally.to_json(),
        "throughput_rows_per_second": tally.rows / tally.seconds if tally.seconds else 0.0,
        "latency_ms": latency_ms(tally.latency),
    }


# ---------------------------------------------------------------------------------------------
# The report


def latency_ms(histogram: LatencyHistogram) -> dict[str, float]:
    return {
        **{f"p{q}": round(histogram.percentile(q) * 1000, 2) for q in (50, 95, 99)},
        "max": round(histogram.maximum * 1000, 2),
    }


def combine(
    shard_summaries: list[dict[str, Any]], run_id: str, params: dict[str, Any], model_url: str
) -> dict[str, Any]:
    """The replay's summary from its shards' (one line of ``painting_replay_summary.jsonl``).

    Throughput is over wall-clock time, from the first shard's start to the last one's end.
    """
    total = Tally()
    for summary in shard_summaries:
        total.rows += summary["rows"]
        total.outcomes.update(summary["outcomes"])
        total.errors.update(summary["errors_by_cause"])
        total.latency.merge(LatencyHistogram.from_json(summary["latency_histogram"]))
    started = min((s["started_at"] for s in shard_summaries), default=time.time())
    finished = max((s["finished_at"] or started for s in shard_summaries), default=started)
    wall = max(finished - started, 1e-9) if shard_summaries else 0.0
    return {
        "timestamp": ledger.utc_now(),
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
    return "\n".join(lines)


def write_summary(output_dir: str, summary: dict[str, Any]) -> str:
    """Append the summary to ``painting_replay_summary.jsonl`` (once per run id)."""
    path = os.path.join(output_dir, SUMMARY_FILE)
    os.makedirs(output_dir, exist_ok=True)
    with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as fh:
        for line in fh:
            with contextlib.suppress(ValueError):
                if json.loads(line).get("run_id") == summary["run_id"]:
                    return path  # a retry of the final task: already written
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(summary, ensure_ascii=False) + "\n")
    return path
