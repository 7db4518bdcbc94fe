"""The one results writer: every row record, failure record and replay summary goes through it.

The simulator's log tasks, the replay's shards, the failure callbacks and the replay's final
summary all write through :class:`ResultsWriter`, so a results store is one class: today the
JSON-lines ledgers in ``painting_output_dir`` (:class:`JsonLinesResults`, built on
:mod:`ledger`), or the results database of the connection ``painting_results_db``
(:class:`results_db.DatabaseResults`, ``docs/results-database.md``) behind the same methods.
:func:`open_results` picks the store.

Every write is exactly once by its key, so a retried task, a cleared run or a killed worker
never duplicates a record: rows by ``(run_id, blob, row)``, failure records by
``(run_id, task_id, try_number)``, replay summaries by ``run_id``.

Reading back is one method too, :meth:`ResultsWriter.read_rows` (the alerts' plug point): the
row records of one kind logged in a time range, oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from include.painting_simulator import settings
from include.painting_simulator.ledger import Ledgers
from include.painting_simulator.records import (
    FailureRecord,
    Result,
    RowRecord,
    row_record,
    utc_now,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from include.painting_simulator.replay.figures import Tally

# Errors and anomalies are few: writing them first keeps a batch's later appends from
# rescanning much (see ledger.Ledgers.append_once).
WRITE_ORDER = (settings.ERROR, settings.ANOMALY, settings.NORMAL)


@dataclass(frozen=True)
class RowsWritten:
    """The records made of a batch of results, and how many of them were new (not a retry's)."""

    records: list[RowRecord]
    new: int


class ResultsWriter(Protocol):
    """Where results go; every method is idempotent (see the module doc)."""

    def describe(self, kind: str | None = None) -> str:
        """Where records of ``kind`` (a row kind, ``RUN_FAILURE`` or ``REPLAY_SUMMARY``; None:
        all results) are written, for the task log."""
        ...

    def write_rows(self, run_id: str, results: Iterable[Result], *, batch: str | None = None
                   ) -> RowsWritten:  # fmt: skip
        """Record each result in its kind's ledger. ``batch`` names one of several writes of a
        run (a replay writes chunk by chunk), so that a retry re-checks only that batch."""
        ...

    def write_failure(self, record: FailureRecord) -> bool:
        """Record why a run failed; False if this run, task and try already has a record."""
        ...

    def write_summary(self, summary: dict) -> bool:
        """Record a replay's summary; False if the run already has one."""
        ...

    def read_rows(self, kind: str, since: str | None, until: str) -> list[RowRecord]:
        """The row records of ``kind`` whose ``timestamp`` is after ``since`` (None: from the
        first) and at most ``until`` (both spelled as records spell them, see
        :func:`records.utc_now`), oldest first; ties in the order they were written."""
        ...

    def progress(self, run_id: str, shard: int) -> ShardProgress:
        """Where one replay shard keeps its progress (what a retry resumes after)."""
        ...

    def close(self) -> None:
        """Let go of what the store keeps open (the results database's kept connection)."""
        ...


class ShardProgress(Protocol):
    """A replay shard's progress: the rows recorded so far and their tally."""

    def load(self) -> Tally | None: ...

    def save(self, tally: Tally) -> None: ...


class JsonLinesResults:
    """The JSON-lines store: the ledgers of one output directory (``docs/results.md``)."""

    def __init__(self, output_dir: str) -> None:
        self.ledgers = Ledgers(output_dir)

    def describe(self, kind: str | None = None) -> str:
        if kind == settings.RUN_FAILURE:
            return self.ledgers.failures_path
        if kind == settings.REPLAY_SUMMARY:
            return self.ledgers.summaries_path
        return self.ledgers.path(kind) if kind else self.ledgers.output_dir

    def write_rows(
        self, run_id: str, results: Iterable[Result], *, batch: str | None = None
    ) -> RowsWritten:
        logged_at = utc_now()
        by_kind: dict[str, list[RowRecord]] = {kind: [] for kind in WRITE_ORDER}
        records: list[RowRecord] = []
        for result in results:
            record = row_record(result, run_id, logged_at)
            by_kind[result["kind"]].append(record)
            records.append(record)
        new = sum(
            self.ledgers.append_once(kind, run_id, by_kind[kind], receipt=batch)
            for kind in WRITE_ORDER
        )
        return RowsWritten(records, new)

    def write_failure(self, record: FailureRecord) -> bool:
        return self.ledgers.append_failure(dict(record))

    def write_summary(self, summary: dict) -> bool:
        return self.ledgers.append_summary(summary)

    def read_rows(self, kind: str, since: str | None, until: str) -> list[RowRecord]:
        # Timestamps have one fixed shape (milliseconds, ``Z``): as strings they sort in time.
        return [
            record  # type: ignore[misc]
            for record in self.ledgers.read(kind)
            if (since is None or record["timestamp"] > since) and record["timestamp"] <= until
        ]

    def progress(self, run_id: str, shard: int) -> ShardProgress:
        from include.painting_simulator.replay.shard import Progress

        return Progress(self.ledgers.output_dir, run_id, shard)  # a file in the output dir

    def close(self) -> None:
        pass  # every write opens and closes its files


def open_results(
    output_dir: str, database: Engine | None = None, dag_id: str | None = None
) -> ResultsWriter:
    """The results store of a run: the results database behind ``database`` (an engine made
    with :func:`results_db.engine_kwargs`) when there is one, its rows marked as DAG
    ``dag_id``'s, else the JSON-lines ledgers in ``output_dir``."""
    if database is None:
        return JsonLinesResults(output_dir)
    from include.painting_simulator.results_db import DatabaseResults

    return DatabaseResults(database, dag_id=dag_id)
