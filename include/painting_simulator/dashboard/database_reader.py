"""Answer the dashboard from the results database: the same methods and answers as the ledgers'.

:class:`DatabaseReader` has :class:`ledger_reader.LedgerSet`'s methods (``summary``, ``recent``,
``run_counts``, ``shadow``, ``disagreements``, ``replay_reports``) and gives the same answers
(:mod:`answers` assembles both), read with SQL from the tables of ``docs/results-database.md``:
counts, timelines, breakdowns and shadow figures from the per-minute count tables that the store
keeps as it inserts rows (:mod:`results_counts`), so an answer costs the same on ten rows or ten
million; the recent anomalies and the disagreements are an index's newest rows. Nothing is kept
in memory between requests (every api-server worker answers from the database), and there is no
first pass: ``indexing`` is always null. SQLAlchemy is imported inside the methods.

What differs from the files, by design: ``skipped_lines`` is 0 (a table holds no line that is
not a record); a replay's rows are known by their ``dag_id`` (from the first row on, not once its
report is written).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from include.painting_simulator import settings
from include.painting_simulator.dashboard.answers import (
    buckets,
    kind_counts,
    now_minute,
    shadow_answer,
    summary_answer,
)
from include.painting_simulator.dashboard.model_checks import replay_report

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from include.painting_simulator.results_db import DatabaseResults


class DatabaseReader:
    """The dashboard's answers from one results database (thread-safe: a connection per call)."""

    def __init__(self, store: DatabaseResults, clock: Callable[[], int] = now_minute) -> None:
        self.store = store
        self.clock = clock

    def _table(self, name: str) -> Any:
        return self.store.table(name)

    def _first_minute(self, connection: Connection) -> int | None:
        from sqlalchemy import func, select

        counts = self._table(settings.MINUTE_COUNTS_TABLE)
        return connection.execute(select(func.min(counts.c.minute))).scalar()

    def _sums(
        self, connection: Connection, name: str, start: int | None, end: int | None,
        width: int | None = None,
    ) -> dict[tuple[Any, ...], list[int]]:  # fmt: skip
        """The sums of count table ``name`` (a minute table) over minutes ``start`` <= m <
        ``end`` (None: open), per key (and per bucket of ``width`` minutes, first in the key):
        whole hours from its hourly table, the minutes before and after them from it."""
        from sqlalchemy import func, select

        minutes = self._table(name)
        hours = self._table(settings.HOURLY_TABLES[name])
        keys = [c for c in minutes.primary_key.columns if c.name != "minute"]
        values = [c.name for c in minutes.columns if c.name != "minute" and c not in keys]
        low = None if start is None else start + (-start) % 60  # the first whole hour
        high = None if end is None else end - end % 60  # the minute after the last one
        if (width is not None and width % 60) or (low is not None and high is not None
                                                  and low >= high):  # fmt: skip
            parts = [(minutes, start, end)]  # buckets finer than hours, or no whole hour
        else:
            parts = [(minutes, start, low), (hours, low, high), (minutes, high, end)]
            parts = [(t, a, b) for t, a, b in parts if t is hours or (a is not None and
                                                                    b is not None)]  # fmt: skip
        sums: dict[tuple[Any, ...], list[int]] = {}
        for table, first, after in parts:
            if first is not None and after is not None and first >= after:
                continue
            c = table.c
            group = [c[k.name] for k in keys]
            if width is not None:
                group.insert(0, _bucket(c.minute, width))
            query = select(*group, *(func.sum(c[v]) for v in values))
            if first is not None:
                query = query.where(c.minute >= first)
            if after is not None:
                query = query.where(c.minute < after)
            for row in connection.execute(query.group_by(*group)):
                key, figures = tuple(row[: len(group)]), [int(n) for n in row[len(group) :]]
                summed = sums.get(key)
                sums[key] = figures if summed is None else [
                    a + b for a, b in zip(summed, figures, strict=True)
                ]  # fmt: skip
        return sums

    def _by_kind(self, connection: Connection, start: int | None, end: int | None
                 ) -> dict[str, int]:  # fmt: skip
        counts = kind_counts()
        for (kind,), (n,) in self._sums(connection, settings.MINUTE_COUNTS_TABLE, start,
                                        end).items():  # fmt: skip
            if kind in counts:
                counts[kind] = n
        return counts

    def _by_name(self, connection: Connection, name: str, start: int, end: int | None
                 ) -> dict[str, int]:  # fmt: skip
        """Anomalies per issue code or machine (count table ``name``) in the range."""
        return {key: n for (key,), (n,) in self._sums(connection, name, start, end).items()}

    def summary(self, start: int | None, end: int, wait: float = 1.0) -> dict[str, Any]:
        """As :meth:`LedgerSet.summary` (``wait`` unused: there is no first pass)."""
        from sqlalchemy import func, select

        results = self._table(settings.RESULTS_TABLE)
        failures = self._table(settings.RUN_FAILURES_TABLE)
        everything = start is None
        with self.store.connection() as connection:
            start, width, starts = buckets(start, self._first_minute(connection), end)
            timeline = {b: kind_counts() for b in starts}
            counts = kind_counts()
            in_range = self._sums(connection, settings.MINUTE_COUNTS_TABLE, start, end, width)
            for (first, kind), (n,) in in_range.items():
                if kind in counts:
                    timeline[first][kind] += n
                    counts[kind] += n
            future = self._by_kind(connection, end, None)
            totals = self._by_kind(connection, None, None)
            if everything:
                counts = {kind: n + future[kind] for kind, n in counts.items()}
            until = None if everything else end
            by_issue = self._by_name(connection, settings.MINUTE_ISSUES_TABLE, start, until)
            by_machine = self._by_name(connection, settings.MINUTE_MACHINES_TABLE, start, until)
            run_failures = connection.execute(select(func.count()).select_from(failures)).scalar()
            newest = connection.execute(
                select(results.c.record[("timestamp",)].as_string())
                .order_by(results.c.logged_at.desc())
                .limit(1)
            ).scalar()
        return summary_answer(
            start, end, width, counts=counts, timeline=timeline, by_issue=by_issue,
            by_machine=by_machine, totals=totals, future=future, skipped=0,
            run_failures=int(run_failures or 0), newest=newest,
        )  # fmt: skip

    def run_counts(self, run_id: str) -> dict[str, int]:
        """How many rows a run wrote, per kind."""
        from sqlalchemy import func, select

        results = self._table(settings.RESULTS_TABLE)
        query = (
            select(results.c.kind, func.count())
            .where(results.c.run_id == run_id)
            .group_by(results.c.kind)
        )
        counts = kind_counts()
        with self.store.connection() as connection:
            for kind, n in connection.execute(query):
                if kind in counts:
                    counts[kind] = int(n)
        return counts

    def recent(self, kind: str, limit: int, offset: int = 0, wait: float = 1.0) -> dict[str, Any]:
        """A page of the newest rows of one kind, newest first, as the ledger holds them (the
        order of the export: time, then run, blob and row, here reversed)."""
        from sqlalchemy import Text, cast, select

        results = self._table(settings.RESULTS_TABLE)
        query = (
            select(cast(results.c.record, Text))
            .where(results.c.kind == kind)
            .order_by(
                results.c.logged_at.desc(), results.c.run_id.desc(), results.c.blob.desc(),
                results.c.row_number.desc(),
            )
            .limit(limit)
            .offset(offset)
        )  # fmt: skip
        with self.store.connection() as connection:
            total = self._by_kind(connection, None, None).get(kind, 0)
            records = [json.loads(text) for (text,) in connection.execute(query)]
        return {"total": int(total), "offset": offset, "limit": limit, "records": records}

    def shadow(self, start: int | None, end: int, wait: float = 1.0) -> dict[str, Any]:
        """As :meth:`LedgerSet.shadow`: the simulator's shadow figures per bucket and in all; a
        replay's rows counted in ``replay_rows_left_out`` only."""
        name = settings.MINUTE_SHADOW_TABLE
        everything = start is None
        with self.store.connection() as connection:
            start, width, starts = buckets(start, self._first_minute(connection), end)
            timeline = {b: [0, 0, 0] for b in starts}
            counts, left_out = [0, 0, 0], 0
            parts = [(first, replay, f) for (first, replay), f
                     in self._sums(connection, name, start, end, width).items()]  # fmt: skip
            if everything:  # and the rows stamped after now: in the counts, in no bucket
                later = self._sums(connection, name, end, None)
                parts += [(None, replay, f) for (replay,), f in later.items()]
            for first, replay, figures in parts:
                if replay:
                    left_out += figures[0] + figures[2]
                    continue
                counts = [a + b for a, b in zip(counts, figures, strict=True)]
                if first is not None:
                    timeline[first] = [a + b for a, b in zip(timeline[first], figures, strict=True)]
        return shadow_answer(start, end, width, counts, timeline, left_out)

    def disagreements(self, limit: int, wait: float = 1.0) -> dict[str, Any]:
        """The newest disagreements of the simulator's rows, newest first (equal times: in the
        ledgers' order, anomalies first)."""
        from sqlalchemy import case, select

        table = self._table(settings.DISAGREEMENTS_TABLE)
        c = table.c
        rank = case({kind: n for n, kind in enumerate(settings.KINDS)}, value=c.kind, else_=9)
        query = (
            select(c.timestamp, c.machine, c.blob, c.row_number, c.production, c.candidate,
                   c.run_id)
            .order_by(c.timestamp.desc(), rank, c.run_id, c.blob, c.row_number)
            .limit(limit)
        )  # fmt: skip
        with self.store.connection() as connection:
            rows = connection.execute(query).all()
        records = [
            {"timestamp": t, "machine": m, "blob": b, "row": r, "production": p, "candidate": k,
             "run_id": run}
            for t, m, b, r, p, k, run in rows
        ]  # fmt: skip
        return {"indexing": None, "limit": limit, "records": records}

    def replay_reports(self, limit: int, wait: float = 1.0) -> dict[str, Any]:
        """The newest replay reports (:func:`model_checks.replay_report`), newest first."""
        from sqlalchemy import Text, cast, func, select

        table = self._table(settings.REPLAY_REPORTS_TABLE)
        query = (
            select(cast(table.c.report, Text))
            .order_by(table.c.logged_at.desc(), table.c.run_id.desc())
            .limit(limit)
        )
        with self.store.connection() as connection:
            total = connection.execute(select(func.count()).select_from(table)).scalar()
            reports = [replay_report(json.loads(text)) for (text,) in connection.execute(query)]
        return {"total": int(total or 0), "limit": limit, "reports": reports}


def _bucket(minute: Any, width: int) -> Any:
    """SQL: the first minute of ``minute``'s bucket (``width`` written into the SQL: the same
    expression in SELECT and GROUP BY, which a bound parameter would not be)."""
    from sqlalchemy import literal_column

    width_ = literal_column(str(int(width)))
    return (minute - minute % width_).label("bucket")
