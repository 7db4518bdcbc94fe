"""The results database store: row records, failure records and replay reports in SQL tables.

:class:`DatabaseResults` is the :class:`results.ResultsWriter` of the connection
``painting_results_db`` (``docs/results-database.md``): PostgreSQL for deployments, SQLite for a
one-file local database, through the same SQLAlchemy Core code. The tables
(``painting_results``, ``painting_run_failures``, ``painting_replay_reports``, and
``painting_replay_progress`` for the replay shards' progress) are created on first use and
carry a schema version (``painting_schema_version``): an older schema is upgraded, a newer one is
refused, and a table whose columns or primary key are not the schema's gives an error naming the
table and the column.

Every write is exactly once by its key, like the JSON-lines store: rows by the primary key
``(run_id, blob, row_number)``, failure records by ``(run_id, task_id, try_number)``, replay
reports by ``run_id``; a batch in one transaction, so a retried task, a cleared run or a killed
worker never duplicates or loses a row. A batch of rows that are all new is one bulk write (``COPY``
in PostgreSQL), which the primary key fails as a whole when a row is there already; then the batch
goes through ``INSERT … ON CONFLICT DO NOTHING``, as failure records and reports always do.

The ``record`` / ``report`` columns hold the JSON text the JSON-lines file would hold
(:func:`ledger.json_line`), so that :meth:`DatabaseResults.lines` gives back ledger lines byte for
byte (the export, :mod:`results_export`). SQLAlchemy is imported inside the functions: this module
is imported while DAG files are parsed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include.painting_simulator import results_counts, settings
from include.painting_simulator.ledger import json_line
from include.painting_simulator.records import FailureRecord, Result, RowRecord, row_record, utc_now

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine, MetaData, Table
    from sqlalchemy.engine import URL

    from include.painting_simulator.results import RowsWritten

# The schema's version: raise it with every change to the tables, and add the step from the
# version before to UPGRADES.
SCHEMA_VERSION = 2
# Rows per INSERT statement (a replay chunk of 5,000 rows is a few statements, one transaction).
INSERT_ROWS = 500
# The transaction-scoped PostgreSQL advisory lock that serialises schema creation.
SCHEMA_LOCK_KEY = 0x7061696E74  # "paint"
# How long a SQLite writer waits for another's lock before it fails (seconds).
SQLITE_BUSY_SECONDS = 60.0

# The type family of every column, per table, by dialect where they differ.
TEXT, INTEGER, TIMESTAMP, JSON_, BOOLEAN = "text", "integer", "timestamp", "json", "boolean"


# The table of each record kind that is not a row (describe's argument).
TABLE_OF = {
    settings.RUN_FAILURE: settings.RUN_FAILURES_TABLE,
    settings.REPLAY_SUMMARY: settings.REPLAY_REPORTS_TABLE,
}


class ResultsDatabaseError(RuntimeError):
    """The results database cannot be used: the message names the connection, never a secret."""


class SchemaError(ResultsDatabaseError):
    """The database's schema is not this code's: newer, or a table of the wrong shape."""


def engine_kwargs(dialect: str, *, pooled: bool = False, kept: bool = False) -> dict[str, Any]:
    """The ``create_engine`` arguments the store needs: JSON written as the ledgers write it; no
    pool (a task writes a few batches and ends: a long-lived process such as the dag-processor,
    which runs the failure callbacks, must not keep a connection per callback) unless ``pooled``
    (the dashboard's reader: one engine per api-server process, a few connections kept, checked
    before use) or ``kept`` (a replay shard: two transactions a chunk for its whole task, on one
    connection kept until :meth:`DatabaseResults.close`, checked before use; a new PostgreSQL
    connection costs client and server about 7 ms of CPU together); for SQLite, a writer waits
    for another's lock."""
    from sqlalchemy.pool import NullPool

    kwargs: dict[str, Any] = {"json_serializer": json_line, "json_deserializer": json.loads}
    if pooled:
        kwargs.update(pool_size=4, max_overflow=4, pool_pre_ping=True, pool_recycle=1800)
    elif kept:
        kwargs.update(pool_size=1, max_overflow=1, pool_pre_ping=True)
    else:
        kwargs["poolclass"] = NullPool
    if dialect == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_SECONDS}
    return kwargs


def public_url(url: URL) -> str:
    """The database's URL without driver, user, password or options, for logs:
    ``postgresql://host:5432/painting``, ``sqlite:////path/to/file.db``."""
    from sqlalchemy.engine import URL

    backend = url.get_backend_name()
    if backend == "sqlite":
        # ``sqlite:////abs`` in a connection URI reaches here as ``//abs``: the same file.
        path = url.database or ""
        path = "/" + path.lstrip("/") if path.startswith("/") else path
        return URL.create("sqlite", database=path).render_as_string()
    bare = URL.create(backend, host=url.host, port=url.port, database=url.database)
    return bare.render_as_string()


@functools.cache
def schema(dialect: str) -> tuple[MetaData, dict[str, dict[str, str]]]:
    """The tables (SQLAlchemy ``MetaData``) and each column's type family, for ``dialect``."""
    from sqlalchemy import (
        JSON,
        BigInteger,
        Boolean,
        Column,
        DateTime,
        Index,
        Integer,
        MetaData,
        PrimaryKeyConstraint,
        Table,
        Text,
        func,
    )

    timestamp = DateTime(timezone=True) if dialect == "postgresql" else Text()
    meta = MetaData()
    results = Table(
        settings.RESULTS_TABLE,
        meta,
        Column("run_id", Text, nullable=False),
        Column("blob", Text, nullable=False),
        Column("row_number", BigInteger, nullable=False),
        Column("kind", Text, nullable=False),
        Column("logged_at", timestamp, nullable=False),
        Column("machine_id", Text),
        Column("reading_time", Text),
        Column("issue", Text),
        Column("status", Integer),
        Column("error", Text),
        Column("record", JSON, nullable=False),
        Column("dag_id", Text),  # version 2: the DAG that wrote the row (NULL: not known)
        PrimaryKeyConstraint("run_id", "blob", "row_number", name="painting_results_pkey"),
    )
    # The dashboard's queries: a time range, by kind, by machine.
    Index("painting_results_logged_at", results.c.logged_at)
    Index("painting_results_kind_logged_at", results.c.kind, results.c.logged_at)
    Index("painting_results_machine_logged_at", results.c.machine_id, results.c.logged_at)
    failures = Table(
        settings.RUN_FAILURES_TABLE,
        meta,
        Column("run_id", Text, nullable=False),
        Column("dag_id", Text),
        Column("task_id", Text),
        Column("try_number", Integer),
        Column("logged_at", timestamp, nullable=False),
        Column("error", Text, nullable=False),
        Column("record", JSON, nullable=False),
    )
    # A run failure without a task (a timed-out run) has no task_id / try_number: NULLs would be
    # distinct in a plain unique index, so the key is unique over their stand-ins.
    Index(
        "painting_run_failures_key",
        failures.c.run_id,
        func.coalesce(failures.c.task_id, ""),
        func.coalesce(failures.c.try_number, -1),
        unique=True,
    )
    Index("painting_run_failures_logged_at", failures.c.logged_at)
    reports = Table(
        settings.REPLAY_REPORTS_TABLE,
        meta,
        Column("run_id", Text, primary_key=True),
        Column("logged_at", timestamp, nullable=False),
        Column("passed", Boolean),
        Column("report", JSON, nullable=False),
    )
    Index("painting_replay_reports_logged_at", reports.c.logged_at)
    Table(
        settings.REPLAY_PROGRESS_TABLE,
        meta,
        Column("run_id", Text, nullable=False),
        Column("shard", Integer, nullable=False),
        Column("tally", JSON, nullable=False),
        PrimaryKeyConstraint("run_id", "shard", name="painting_replay_progress_pkey"),
    )
    results_counts.define(meta)  # version 2: the dashboard's counts
    Table(
        settings.SCHEMA_VERSION_TABLE,
        meta,
        Column("name", Text, primary_key=True),
        Column("version", Integer, nullable=False),
    )
    families = {
        table.name: {column.name: _family(column.type) for column in table.columns}
        for table in meta.sorted_tables
    }
    return meta, families


def _family(type_: Any) -> str:
    from sqlalchemy import JSON, Boolean, DateTime, Integer, String

    for family, kind in ((JSON_, JSON), (BOOLEAN, Boolean), (TIMESTAMP, DateTime),
                         (INTEGER, Integer), (TEXT, String)):  # fmt: skip
        if isinstance(type_, kind):
            return family
    return type(type_).__name__.lower()


# Upgrades: the version a step starts from -> the step (a function of the open connection and
# the schema's tables). 1 -> 2: the rows' dag_id and the dashboard's counts, backfilled.
UPGRADES: dict[int, Any] = {1: results_counts.backfill}
SCHEMA_NAME = "painting_results"


def _timestamp(text: str, dialect: str) -> Any:
    """A record's ``timestamp`` as the column holds it: a datetime (PostgreSQL) or the ISO-8601
    UTC text as written (SQLite)."""
    if dialect == "postgresql":
        return datetime.fromisoformat(text)
    return text


def bound(moment: str | datetime | None, dialect: str) -> Any:
    """A time-range bound (ISO-8601 text or a datetime; naive = UTC) as ``logged_at`` compares."""
    if moment is None:
        return None
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            raise ValueError(
                f"{moment!r} is not an ISO-8601 time (e.g. 2026-12-01T00:00:00Z)"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if dialect == "postgresql":
        return moment
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def result_row(
    record: RowRecord, kind: str, dialect: str, dag_id: str | None = None
) -> dict[str, Any]:
    """The ``painting_results`` row of one row record, written by DAG ``dag_id``."""
    data = record.get("original_data") or {}
    issue = (record.get("prediction") or {}).get("issue") if kind == settings.ANOMALY else None
    return {
        "run_id": record["run_id"],
        "blob": record["source"]["blob"],
        "row_number": record["source"]["row"],
        "kind": kind,
        "logged_at": _timestamp(record["timestamp"], dialect),
        "machine_id": _text(data.get("machineId")) if isinstance(data, dict) else None,
        "reading_time": _text(data.get("timeStamp")) if isinstance(data, dict) else None,
        "issue": _text(issue),
        "status": record.get("status"),
        "error": record.get("error"),
        "record": record,
        "dag_id": dag_id,
    }


class DatabaseResults:
    """The results database behind one SQLAlchemy engine (PostgreSQL or SQLite).

    Build the engine with :func:`engine_kwargs` (the DAGs build it from the connection's provider
    hook, :func:`airflow_runtime.results`). ``conn_id`` names the connection in every error;
    ``dag_id`` is the DAG whose rows this writer writes (the rows' ``dag_id`` column: a replay's
    rows are kept out of shadow mode's counts).
    """

    def __init__(
        self, engine: Engine, conn_id: str = settings.RESULTS_DB_CONN_ID,
        dag_id: str | None = None,
    ) -> None:  # fmt: skip
        self.engine, self.conn_id, self.dag_id = engine, conn_id, dag_id
        self.dialect = engine.dialect.name
        if self.dialect not in ("postgresql", "sqlite"):
            raise ResultsDatabaseError(
                f"connection {conn_id!r}: the results database is PostgreSQL or SQLite, "
                f"not {self.dialect}"
            )
        self.meta, self.families = schema(self.dialect)
        self.url = public_url(engine.url)
        self._ready = False
        if self.dialect == "sqlite":
            _sqlite_write_lock_on_begin(engine)

    # --- where ---

    def describe(self, kind: str | None = None) -> str:
        return f"{self.url}, table {TABLE_OF.get(kind or '', settings.RESULTS_TABLE)}"

    def table(self, name: str) -> Table:
        return self.meta.tables[name]

    # --- writes ---

    def write_rows(
        self, run_id: str, results: Iterable[Result], *, batch: str | None = None
    ) -> RowsWritten:
        from include.painting_simulator.results import RowsWritten

        logged_at = utc_now()
        records: list[RowRecord] = []
        rows: list[dict[str, Any]] = []
        for result in results:
            record = row_record(result, run_id, logged_at)
            records.append(record)
            rows.append(result_row(record, result["kind"], self.dialect, self.dag_id))
        new = self._insert_rows(rows) if rows else 0
        return RowsWritten(records, new)

    def write_failure(self, record: FailureRecord) -> bool:
        row = {
            "run_id": record["run_id"],
            "dag_id": record["dag_id"],
            "task_id": record["task_id"],
            "try_number": record["try_number"],
            "logged_at": _timestamp(record["timestamp"], self.dialect),
            "error": record["error"],
            "record": dict(record),
        }
        return self._insert_once(settings.RUN_FAILURES_TABLE, [row]) == 1

    def write_summary(self, summary: dict) -> bool:
        passed = summary.get("passed")
        row = {
            "run_id": summary["run_id"],
            "logged_at": _timestamp(summary.get("timestamp") or utc_now(), self.dialect),
            "passed": passed if isinstance(passed, bool) else None,
            "report": summary,
        }
        return self._insert_once(settings.REPLAY_REPORTS_TABLE, [row]) == 1

    def progress(self, run_id: str, shard: int) -> DatabaseProgress:
        return DatabaseProgress(self, run_id, shard)

    def close(self) -> None:
        """Close the connections the engine keeps (``engine_kwargs(kept=True)``); the store
        stays usable."""
        self.engine.dispose()

    def _insert_once(self, name: str, rows: list[dict[str, Any]]) -> int:
        """Insert the rows whose key is not in table ``name`` yet, in one transaction; how many."""
        table = self.table(name)
        # RETURNING gives the inserted rows only (rowcount is -1 for some drivers). One statement
        # with the rows as parameters (SQLAlchemy's "insertmanyvalues": multi-row INSERTs, the SQL
        # compiled once), not ``.values(rows)``, whose SQL is compiled anew for every batch: that
        # compile was most of a chunk's write (make bench, docs/performance.md).
        statement = (
            dialect_insert(self.dialect)(table).on_conflict_do_nothing().returning(table.c.run_id)
        )
        new = 0
        with self.connection() as connection:
            for start in range(0, len(rows), INSERT_ROWS):
                new += len(connection.execute(statement, rows[start : start + INSERT_ROWS]).all())
        return new

    def _insert_rows(self, rows: list[dict[str, Any]]) -> int:
        """Insert the ``painting_results`` rows not there yet and, in the same transaction, add
        the new ones to the dashboard's counts; how many were new.

        A batch none of whose keys is there yet (nearly every batch: a retry's is the exception)
        goes in as one bulk write (:meth:`_bulk_insert_new`), which fails as a whole on a key
        that is there. Then (and with psycopg2) the batch goes through ``INSERT … ON CONFLICT DO
        NOTHING RETURNING`` its key, which says which rows were new (:meth:`_insert_missing`)."""
        values = _column_values(self.table(settings.RESULTS_TABLE), rows)
        with self.connection() as connection:
            fresh = rows if self._bulk_insert_new(connection, values) else (
                self._insert_missing(connection, rows, values)
            )  # fmt: skip
            if fresh:
                replay = self.dag_id == settings.REPLAY_DAG_ID
                results_counts.add(connection, self.meta, self.dialect, fresh, replay)
        return len(fresh)

    def _bulk_insert_new(self, connection: Connection, values: list[list[Any]]) -> bool:
        """Write the rows (``values``: :func:`_column_values`) into ``painting_results`` in one
        bulk write, in a savepoint: True; or False, with nothing written, when one of their keys
        is there already (or twice in the rows), and always with psycopg2. PostgreSQL: ``COPY …
        FROM STDIN`` (psycopg formats the rows in C); SQLite: the driver's ``executemany`` of a
        plain ``INSERT``. Either takes a fraction of the CPU per row of the ``INSERT … ON
        CONFLICT`` path (``docs/performance.md``), on the server too."""
        if self.dialect == "postgresql" and self.engine.dialect.driver != "psycopg":
            return False
        table = self.table(settings.RESULTS_TABLE)
        dbapi = self.engine.dialect.loaded_dbapi
        savepoint = connection.begin_nested()
        try:
            driver = connection.connection.driver_connection
            if self.dialect == "postgresql":
                with driver.cursor() as cursor, cursor.copy(_copy_statement(table.name)) as copy:
                    for row in zip(*values, strict=True):
                        copy.write_row(row)
            else:
                driver.executemany(_plain_insert(table.name), list(zip(*values, strict=True)))
        except dbapi.IntegrityError:
            savepoint.rollback()
            return False
        except dbapi.Error as exc:  # the driver's own: name the connection, as for the rest
            raise ResultsDatabaseError(self._explain(exc)) from None
        savepoint.commit()
        return True

    def _insert_missing(
        self, connection: Connection, rows: list[dict[str, Any]], values: list[list[Any]]
    ) -> list[dict[str, Any]]:
        """Insert the rows (``values``: theirs, :func:`_column_values`) whose key is not in
        ``painting_results`` yet; the new ones, each once (``RETURNING`` gives back the keys it
        inserted)."""
        table = self.table(settings.RESULTS_TABLE)
        if self.dialect == "postgresql":
            sql = _unnest_insert(table.name, self.engine.dialect.driver)
            names = [column.name for column in table.columns]

            def insert(start: int, end: int) -> Any:
                slices = [column[start:end] for column in values]
                return connection.exec_driver_sql(sql, dict(zip(names, slices, strict=True)))
        else:
            statement = (
                dialect_insert(self.dialect)(table)
                .on_conflict_do_nothing()
                .returning(table.c.run_id, table.c.blob, table.c.row_number)
            )

            def insert(start: int, end: int) -> Any:
                return connection.execute(statement, rows[start:end])

        new: set[tuple[Any, ...]] = set()
        for start in range(0, len(rows), INSERT_ROWS):
            new.update(tuple(key) for key in insert(start, start + INSERT_ROWS).all())
        fresh, seen = [], set()
        for row in rows:
            key = (row["run_id"], row["blob"], row["row_number"])
            if key in new and key not in seen:
                seen.add(key)
                fresh.append(row)
        return fresh

    # --- reads ---

    def read_rows(self, kind: str, since: str | None, until: str) -> list[RowRecord]:
        return [
            json.loads(text)
            for text in self.lines(settings.RESULTS_TABLE, since, until, kind, after=True)
        ]

    def lines(
        self, name: str, since: str | datetime | None = None, until: str | datetime | None = None,
        kind: str | None = None, *, after: bool = False,
    ) -> Iterator[str]:  # fmt: skip
        """The ledger lines (JSON text, no newline) of table ``name``, oldest first, logged in
        ``[since, until)`` (the export's range) or, with ``after``, in ``(since, until]`` (the
        alerts' :meth:`read_rows`); for ``painting_results`` optionally of one ``kind`` only."""
        from sqlalchemy import Text, cast, select

        table = self.table(name)
        column = table.c.report if name == settings.REPLAY_REPORTS_TABLE else table.c.record
        query = select(cast(column, Text))
        if (low := bound(since, self.dialect)) is not None:
            query = query.where(table.c.logged_at > low if after else table.c.logged_at >= low)
        if (high := bound(until, self.dialect)) is not None:
            query = query.where(table.c.logged_at <= high if after else table.c.logged_at < high)
        if kind is not None:
            query = query.where(table.c.kind == kind)
        keys = [
            c for c in ("run_id", "blob", "row_number", "task_id", "try_number") if c in table.c
        ]
        query = query.order_by(table.c.logged_at, *(table.c[c] for c in keys))
        with self.connection() as connection:
            result = connection.execution_options(yield_per=5000).execute(query)
            for (text,) in result:
                yield text

    # --- the connection, the schema ---

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection in a transaction (committed on success), the schema checked first;
        database errors become :class:`ResultsDatabaseError` naming the connection."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            if not self._ready:
                self._ensure_schema()
                self._ready = True
            with self.engine.begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise ResultsDatabaseError(self._explain(exc)) from None

    def _explain(self, exc: BaseException) -> str:
        cause = getattr(exc, "orig", None) or exc
        message = " ".join(str(cause).split()) or type(cause).__name__
        password = self.engine.url.password
        if password:
            message = message.replace(str(password), "***")
        return (
            f"results database of connection {self.conn_id!r} ({self.url}): "
            f"{type(cause).__name__}: {message[:500]}"
        )

    def _ensure_schema(self) -> None:
        """Create the tables (first use), upgrade an older schema, refuse a newer one, and check
        every table's columns and primary key."""
        from sqlalchemy import inspect, select

        versions = self.table(settings.SCHEMA_VERSION_TABLE)
        with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
            found = inspect(connection).get_table_names()
            if settings.SCHEMA_VERSION_TABLE in found:
                version = connection.execute(
                    select(versions.c.version).where(versions.c.name == SCHEMA_NAME)
                ).scalar()
            else:
                version = None
            if version is None:
                self.meta.create_all(connection, checkfirst=True)
                connection.execute(
                    versions.insert().values(name=SCHEMA_NAME, version=SCHEMA_VERSION)
                )
            elif version > SCHEMA_VERSION:
                raise SchemaError(
                    f"results database of connection {self.conn_id!r} ({self.url}) has schema "
                    f"version {version}, newer than this code's {SCHEMA_VERSION}: upgrade the "
                    f"DAG package (nothing was written)"
                )
            else:
                while version < SCHEMA_VERSION:
                    UPGRADES[version](connection, self.meta)
                    version += 1
                connection.execute(
                    versions.update().where(versions.c.name == SCHEMA_NAME).values(version=version)
                )
            self._check_shape(connection)

    def _check_shape(self, connection: Connection) -> None:
        from sqlalchemy import inspect

        inspector = inspect(connection)
        for name, expected in self.families.items():
            found = {c["name"]: _family(c["type"]) for c in inspector.get_columns(name)}
            for column, family in expected.items():
                if column not in found:
                    raise self._shape_error(name, column, "is missing")
                if found[column] != family:
                    raise self._shape_error(
                        name, column, f"is of type {found[column]}, the schema's is {family}"
                    )
            primary = [c.name for c in self.table(name).primary_key.columns]
            if primary and inspector.get_pk_constraint(name)["constrained_columns"] != primary:
                raise self._shape_error(name, ", ".join(primary), "is not the primary key")

    def _shape_error(self, table: str, column: str, what: str) -> SchemaError:
        return SchemaError(
            f"results database of connection {self.conn_id!r} ({self.url}): table {table!r} "
            f"column {column!r} {what} (schema version {SCHEMA_VERSION}, "
            f"docs/results-database.md); nothing was written"
        )


class DatabaseProgress:
    """A replay shard's progress as a row of ``painting_replay_progress`` (one per run and
    shard, replaced at every save): workers on other machines resume where a shard stopped."""

    def __init__(self, store: DatabaseResults, run_id: str, shard: int) -> None:
        self.store, self.run_id, self.shard = store, run_id, shard

    def load(self) -> Any:  # Tally | None
        from sqlalchemy import select

        from include.painting_simulator.replay.figures import Tally

        table = self.store.table(settings.REPLAY_PROGRESS_TABLE)
        query = select(table.c.tally).where(
            table.c.run_id == self.run_id, table.c.shard == self.shard
        )
        with self.store.connection() as connection:
            saved = connection.execute(query).scalar()
        return None if saved is None else Tally.from_json(saved)

    def save(self, tally: Any) -> None:
        table = self.store.table(settings.REPLAY_PROGRESS_TABLE)
        row = {"run_id": self.run_id, "shard": self.shard, "tally": tally.to_json()}
        statement = dialect_insert(self.store.dialect)(table).values(row)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.run_id, table.c.shard], set_={"tally": statement.excluded.tally}
        )
        with self.store.connection() as connection:
            connection.execute(statement)


@functools.cache
def _unnest_insert(name: str, driver: str) -> str:
    """PostgreSQL's insert of a batch into table ``name``, as the SQL the ``driver`` (psycopg or
    psycopg2) takes: ``INSERT … SELECT … FROM unnest(one array per column) ON CONFLICT DO
    NOTHING RETURNING`` its key, one short statement whatever the batch's size
    (:func:`_column_values`); psycopg sends the arrays in binary (``%(name)b``).

    Not a multi-row ``VALUES`` (SQLAlchemy's "insertmanyvalues", as SQLite's store writes):
    psycopg rewrites a statement's placeholders with a regular expression and caches only short
    statements, so a 500-row ``VALUES`` of 6,000 placeholders was parsed anew for every batch,
    and text arrays escape every quote of every record: most of the replay's CPU per row with
    this store (``docs/performance.md``).
    """
    from sqlalchemy.dialects import postgresql

    table = schema("postgresql")[0].tables[name]
    dialect = postgresql.dialect()
    quoted, columns = _quoted_columns(name, "postgresql")
    marker = "b" if driver == "psycopg" else "s"
    arrays = ", ".join(
        f"CAST(%({column.name}){marker} AS {column.type.compile(dialect=dialect)}[])"
        for column in table.columns
    )
    key = ", ".join(
        dialect.identifier_preparer.quote(column.name) for column in table.primary_key.columns
    )
    return (
        f"INSERT INTO {quoted} ({columns}) SELECT {columns} "
        f"FROM unnest({arrays}) AS batch ({columns}) ON CONFLICT DO NOTHING RETURNING {key}"
    )


@functools.cache
def _quoted_columns(name: str, dialect: str) -> tuple[str, str]:
    """Table ``name`` and its columns in order (comma-separated), quoted as ``dialect``
    quotes them: the heads of the statements this module writes by hand."""
    from sqlalchemy.dialects import postgresql, sqlite

    table = schema(dialect)[0].tables[name]
    quote = (postgresql if dialect == "postgresql" else sqlite).dialect().identifier_preparer.quote
    return quote(table.name), ", ".join(quote(column.name) for column in table.columns)


def _column_values(table: Table, rows: list[dict[str, Any]]) -> list[list[Any]]:
    """The rows of ``table`` as one list per column, in the table's order: the parameters of
    :func:`_unnest_insert` and, zipped, the rows of the bulk write. A JSON column's values are
    the text it holds (:func:`ledger.json_line`, as the engine's ``json_serializer`` writes
    them)."""
    from sqlalchemy import JSON

    return [
        [json_line(row[column.name]) for row in rows]
        if isinstance(column.type, JSON)
        else [row[column.name] for row in rows]
        for column in table.columns
    ]


@functools.cache
def _copy_statement(name: str) -> str:
    """PostgreSQL's ``COPY`` of table ``name``'s columns, in order, from the client."""
    quoted, columns = _quoted_columns(name, "postgresql")
    return f"COPY {quoted} ({columns}) FROM STDIN"


@functools.cache
def _plain_insert(name: str) -> str:
    """SQLite's ``INSERT`` of one row of table ``name``, its columns in order (no conflict
    clause: a key already there fails it)."""
    quoted, columns = _quoted_columns(name, "sqlite")
    marks = ", ".join("?" for _ in schema("sqlite")[0].tables[name].columns)
    return f"INSERT INTO {quoted} ({columns}) VALUES ({marks})"


def dialect_insert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _sqlite_write_lock_on_begin(engine: Engine) -> None:
    """Every SQLite transaction takes the write lock at BEGIN (``BEGIN IMMEDIATE``), so two
    processes wait for each other (busy timeout) instead of failing on a read-to-write upgrade
    (SQLAlchemy's recipe for pysqlite's own transaction handling)."""
    from sqlalchemy import event

    if getattr(engine, "_painting_sqlite_lock", False):  # a second store on the same engine
        return
    engine._painting_sqlite_lock = True  # type: ignore[attr-defined]

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
