"""One replay shard: send its range chunk by chunk, record every outcome, remember progress.

The body of the ``replay_shard`` mapped task. A retried shard task resumes after the last chunk
it recorded (its progress, kept by the results store: a small progress file in the output
directory, or a row of the results database); the chunks after it (at most three: the one being
recorded and the two handed to the sending process) are sent again and recorded once (each chunk
is its own batch of the results writer). The POSTs go through a sending process of the shard's
own (:mod:`replay.send_process`).
"""

from __future__ import annotations

import collections
import contextlib
import gc
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from include.painting_simulator import model_client
from include.painting_simulator.records import Item, Result
from include.painting_simulator.replay import sender
from include.painting_simulator.replay.figures import Tally, latency_ms
from include.painting_simulator.replay.plan import CHUNK_ROWS, iter_chunks
from include.painting_simulator.replay.send_process import SendProcess, SendSettings
from include.painting_simulator.replay.sender import Endpoint
from include.painting_simulator.results import ResultsWriter, open_results

if TYPE_CHECKING:
    from include.painting_simulator.blob_rows import BlobRows

log = logging.getLogger("painting_simulator")

PROGRESS_DIR = ".painting_replay_progress"
AHEAD = 1  # chunks submitted beyond the one being sent


class Progress:
    """A shard's progress file: the rows recorded so far and their tally (for retries); the
    JSON-lines store's :meth:`results.ResultsWriter.progress`."""

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


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects that exist now (Airflow's, the providers', the modules': hundreds of
    thousands in a task's process) out of the garbage collector's passes until the block ends
    (:func:`gc.freeze`). A replay makes millions of short-lived objects; without this, every
    full collection they set off walks the whole heap again: a third of the shard's CPU per row
    went there (``docs/performance.md#what-limits-the-replay``)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def replay_chunks(
    chunks: Iterator[tuple[int, list[Item]]],
    settings: SendSettings,
    record: Callable[[int, list[Result]], None],
) -> None:
    """Send chunk after chunk through a :class:`send_process.SendProcess` and ``record`` each
    one's results, in order. The sending process always has the next chunk: this process reads
    chunks and records results while it sends (two interpreters, so neither waits for the
    other's lock)."""
    submitted: collections.deque[tuple[int, list[Item], list[Any]]] = collections.deque()
    number = 0  # of the oldest submitted chunk

    def submit() -> None:
        if (chunk := next(chunks, None)) is not None:
            bodies, payloads = sender.payloads_of(chunk[1])
            sending.submit(payloads)
            submitted.append((*chunk, bodies))

    with frozen_heap(), SendProcess(settings) as sending:
        for _ in range(AHEAD + 1):
            submit()
        while submitted:
            try:
                outcomes = sending.outcomes()
            except sender.Unreached as exc:
                source = submitted[exc.chunk - number][1][exc.index]["source"]
                then = "the shard will be retried"
                raise model_client.unreachable(exc.call, source, then) from None
            first, items, bodies = submitted.popleft()
            number += 1
            submit()  # before recording: the sending process is never without a chunk
            record(first, sender.results_of(items, bodies, outcomes))


def run_shard(
    reader: BlobRows,
    prefix: str,
    spec: dict[str, int],
    endpoint: Endpoint,
    *,
    concurrency: int,
    rate: float,
    output_dir: str,
    run_id: str,
    results: ResultsWriter | None = None,
    chunk_rows: int = CHUNK_ROWS,
    candidate: Endpoint | None = None,
) -> dict[str, Any]:
    """Replay one shard (``{"shard", "start_row", "rows"}``) and return its summary; with a
    ``candidate`` endpoint every sent row also goes to the candidate model service.

    Every outcome goes to ``results`` (default: the JSON-lines ledgers in ``output_dir``), and
    so does the shard's progress.
    """
    if concurrency < 1 or rate < 0:
        raise ValueError(f"concurrency={concurrency} must be >= 1 and rate={rate} >= 0")
    writer = results or open_results(output_dir)
    progress = writer.progress(run_id, spec["shard"])
    tally = progress.load() or Tally()
    if tally.rows:
        log.info("shard %d resumes after %d recorded row(s)", spec["shard"], tally.rows)
    left = spec["rows"] - tally.rows
    if left > 0:
        began = time.monotonic()
        seconds_before = tally.seconds

        def record(first: int, chunk: list[Result]) -> None:
            writer.write_rows(run_id, chunk, batch=f"{run_id}#replay-row-{first}")
            for result in chunk:
                tally.add(result)
            tally.seconds = seconds_before + time.monotonic() - began
            progress.save(tally)

        chunks = iter_chunks(reader, prefix, spec["start_row"] + tally.rows, left, chunk_rows)
        replay_chunks(chunks, SendSettings(endpoint, concurrency, rate, candidate), record)
    tally.finished_at = time.time()
    progress.save(tally)
    return {
        "shard": spec["shard"],
        "start_row": spec["start_row"],
        **tally.to_json(),
        "throughput_rows_per_second": tally.rows / tally.seconds if tally.seconds else 0.0,
        "latency_ms": latency_ms(tally.latency),
    }
