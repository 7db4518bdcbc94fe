"""Results databases of local runs: a PostgreSQL server started here, and the connections.

The value of ``AIRFLOW_CONN_PAINTING_RESULTS_DB`` (:data:`ENV`) as an operator writes it, for a
database on a PostgreSQL server that a test or ``make bench`` started
(:class:`scripts.distributed_stack.Postgres`, Debian's packages, stopped by PID) or for a SQLite
file. Used by the tests (``tests/support/results_db.py``) and by ``make bench``.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from include.painting_simulator import settings
from scripts.distributed_stack import DB_USER, HOST, Postgres

ENV = f"AIRFLOW_CONN_{settings.RESULTS_DB_CONN_ID.upper()}"


def start_postgres(port: int, log_path: Path) -> Postgres:
    """A PostgreSQL server whose user ``airflow`` needs a (random) password over TCP."""
    return Postgres(port, log_path, password=secrets.token_urlsafe(18)).start()


def sqlite_connection(path: Path) -> dict[str, Any]:
    """The connection of a SQLite file: type ``sqlite``, the file's absolute path as host."""
    return {"conn_type": "sqlite", "host": str(path)}


def postgres_connection(server: Postgres, database: str, password: str | None = None
                        ) -> dict[str, Any]:  # fmt: skip
    """The connection of a database on ``server`` (its password unless another is given)."""
    return {
        "conn_type": "postgres",
        "host": HOST,
        "port": server.port,
        "login": DB_USER,
        "password": server.password if password is None else password,
        "schema": database,
    }
