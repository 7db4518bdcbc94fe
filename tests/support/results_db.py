"""The results database in tests: a real PostgreSQL or a SQLite file, its connection, its rows.

:class:`ResultsDb` is one store under test (``sqlite``: a file under the test's tmp dir;
``postgresql``: a fresh database on a PostgreSQL server the tests started,
:class:`scripts.distributed_stack.Postgres`, Debian's packages; the server and the connections
come from :mod:`scripts.results_databases`). It gives the value of
``AIRFLOW_CONN_PAINTING_RESULTS_DB`` (JSON, as an operator writes it), a
:class:`results_db.DatabaseResults` on the same database, and its records read back as the
JSON-lines ledgers would hold them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include.painting_simulator import settings
from scripts.distributed_stack import Postgres
from scripts.results_databases import ENV, postgres_connection, sqlite_connection, start_postgres

# The stores a parametrised test runs against (json-lines: no connection at all).
STORES = ("json-lines", "sqlite", "postgresql")
# Re-exported: the tests take the connections from here, as every other results-database helper.
__all__ = [
    "ENV",
    "STORES",
    "ResultsDb",
    "postgres_connection",
    "sqlite_connection",
    "start_postgres",
]


@dataclass
class ResultsDb:
    """One results database under test and its connection."""

    kind: str  # "sqlite" or "postgresql"
    connection: dict[str, Any]

    @classmethod
    def sqlite(cls, path: Path) -> ResultsDb:
        return cls("sqlite", sqlite_connection(path))

    @classmethod
    def postgresql(cls, server: Postgres) -> ResultsDb:
        database = f"results_{uuid.uuid4().hex[:12]}"
        server.create_database(database)
        return cls("postgresql", postgres_connection(server, database))

    @property
    def env_value(self) -> str:
        return json.dumps(self.connection)

    def url(self) -> str:
        """The SQLAlchemy URL of the database (with its password: for tests only)."""
        c = self.connection
        if self.kind == "sqlite":
            return f"sqlite:///{c['host']}"
        return f"postgresql+psycopg://{c['login']}:{c['password']}@{c['host']}:{c['port']}/{c['schema']}"

    def store(self) -> Any:
        """A :class:`results_db.DatabaseResults` on this database (as the export opens it)."""
        from sqlalchemy import create_engine

        from include.painting_simulator.results_db import DatabaseResults, engine_kwargs

        engine = create_engine(self.url(), **engine_kwargs(self.kind))
        return DatabaseResults(engine)

    def records(self, table: str = settings.RESULTS_TABLE, kind: str | None = None
                ) -> list[dict[str, Any]]:  # fmt: skip
        """Every record of ``table`` (of one row ``kind``), as its ledger line would read."""
        store = self.store()
        try:
            return [json.loads(line) for line in store.lines(table, kind=kind)]
        finally:
            store.engine.dispose()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of a SQL query, as a user's own tool would run it."""
        return self._run(sql, lambda result: [tuple(row) for row in result])

    def scalar(self, sql: str) -> Any:
        """The first value of a SQL query."""
        return self._run(sql, lambda result: result.scalar())

    def execute(self, sql: str) -> None:
        """A SQL statement, committed (e.g. a table edited by hand)."""
        self._run(sql, lambda result: None)

    def _run(self, sql: str, take: Any) -> Any:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url())
        try:
            with engine.begin() as connection:
                return take(connection.execute(text(sql)))
        finally:
            engine.dispose()


def write_in_process(url: str, run_id: str, rows: list[int], rounds: int) -> int:
    """A writer process's body (multiprocessing, spawn): write ``rows`` of ``run_id`` to the
    database at ``url`` ``rounds`` times, each time as one batch; the rows it found new."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from include.painting_simulator.results_db import DatabaseResults, engine_kwargs

    engine = create_engine(url, **engine_kwargs(make_url(url).get_backend_name()))
    store = DatabaseResults(engine)
    new = 0
    for _ in range(rounds):
        new += store.write_rows(run_id, [normal_result("concurrent.csv", row) for row in rows]).new
    engine.dispose()
    return new


def normal_result(blob: str, row: int, machine: int = 1) -> dict[str, Any]:
    """A normal result of a sent row, its body mapped from a CSV row as the simulator maps it."""
    from include.painting_simulator import csv_format
    from include.painting_simulator.row_mapping import to_request_body

    values = (str(machine), f"2025-07-23T08:{row // 60 % 60:02d}:{row % 60:02d}",
              "19.89", "258.4", "68.9", "34.4")  # fmt: skip
    columns = (csv_format.MACHINE_ID, csv_format.TIMESTAMP, csv_format.THICKNESS,
               csv_format.VOLTAGE, csv_format.CURRENT, csv_format.TEMPERATURE)  # fmt: skip
    body = to_request_body(dict(zip(columns, values, strict=True)))
    return {"source": {"blob": blob, "row": row}, "kind": settings.NORMAL,
            "original_data": body, "attempts": 1}  # fmt: skip
