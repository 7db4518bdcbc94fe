"""Create the results database and its user once: the ``airflow-init`` job's step in compose.

    python -m scripts.create_results_database

What it creates is what the connection ``painting_results_db`` names (from
``AIRFLOW_CONN_PAINTING_RESULTS_DB``, URI or JSON, as the tasks read it): its login becomes a
PostgreSQL user with the connection's password, its schema a database owned by that user, on the
server of the metadata DB, as the metadata DB's (super)user from
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``. Idempotent: on a server that has both already (a second
``docker compose up``, an existing volume) it only sets the user's password to the connection's
again, so that a password changed in ``.env`` takes effect. The password is never printed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from include.painting_simulator import settings

CONN_ENV = f"AIRFLOW_CONN_{settings.RESULTS_DB_CONN_ID.upper()}"
ADMIN_ENV = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"


class SetupError(Exception):
    """The environment does not say what to create, or where."""


@dataclass(frozen=True)
class Target:
    """The database and user that the results connection names."""

    host: str
    port: int
    database: str
    user: str
    password: str


def target(environ: dict[str, str] | os._Environ[str] = os.environ) -> Target:
    """The results connection from the environment, checked: a postgres connection with a host,
    a login, a password and a database (the connection's schema)."""
    from airflow.models.connection import Connection

    value = (environ.get(CONN_ENV) or "").strip()
    if not value:
        raise SetupError(f"{CONN_ENV} is not set: the results database connection (see .env)")
    conn_id = settings.RESULTS_DB_CONN_ID
    if value.startswith("{"):
        connection = Connection.from_json(value, conn_id=conn_id)
    else:
        connection = Connection(conn_id=conn_id, uri=value)
    if connection.conn_type != "postgres":
        raise SetupError(
            f"connection {conn_id!r} ({CONN_ENV}) is of type {connection.conn_type!r}: "
            "the compose stack's results database is on its PostgreSQL, type postgres"
        )
    missing = [
        name
        for name, value in (
            ("host", connection.host),
            ("login", connection.login),
            ("password", connection.password),
            ("schema (the database)", connection.schema),
        )
        if not value
    ]
    if missing:
        raise SetupError(
            f"connection {conn_id!r} ({CONN_ENV}) has no {', no '.join(missing)}"
            " (is PAINTING_RESULTS_DB_PASSWORD set in .env?)"
        )
    return Target(
        connection.host, connection.port or 5432, connection.schema, connection.login,
        connection.password,
    )  # fmt: skip


def create(admin_url: str, wanted: Target) -> list[str]:
    """Create ``wanted``'s user and database on the server of ``admin_url`` unless there; what
    was done, one line each (no password)."""
    from sqlalchemy import create_engine, literal, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    done = []
    try:
        quote = engine.dialect.identifier_preparer.quote
        password = literal(wanted.password).compile(
            dialect=engine.dialect, compile_kwargs={"literal_binds": True}
        )
        user, database = quote(wanted.user), quote(wanted.database)
        with engine.connect() as connection:
            if connection.execute(
                text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": wanted.user}
            ).scalar():
                connection.execute(text(f"ALTER ROLE {user} WITH LOGIN PASSWORD {password}"))
                done.append(f"user {wanted.user}: already there (password set from the connection)")
            else:
                connection.execute(text(f"CREATE ROLE {user} WITH LOGIN PASSWORD {password}"))
                done.append(f"user {wanted.user}: created")
            if connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": wanted.database}
            ).scalar():
                done.append(f"database {wanted.database}: already there")
            else:
                connection.execute(text(f"CREATE DATABASE {database} OWNER {user}"))
                done.append(f"database {wanted.database}: created, owned by {wanted.user}")
    finally:
        engine.dispose()
    return done


def main() -> int:
    try:
        wanted = target()
        admin_url = os.environ.get(ADMIN_ENV) or ""
        if not admin_url:
            raise SetupError(f"{ADMIN_ENV} is not set: the metadata DB's server is the one used")
    except SetupError as error:
        print(f"results database: {error}", file=sys.stderr)
        return 2
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    if (admin.host, admin.port or 5432) != (wanted.host, wanted.port):
        print(
            f"results database: {wanted.database!r} is on {wanted.host}:{wanted.port}, not on the "
            "metadata DB's server: not created here (its database and user must exist there)"
        )
        return 0
    try:
        for line in create(admin_url, wanted):
            print(f"results database: {line}")
    except Exception as error:  # one line naming what failed, never the password
        cause = (str(error).splitlines() or [""])[0].replace(wanted.password, "***")
        print(
            f"results database: creating {wanted.database!r} for user {wanted.user!r} on "
            f"{wanted.host}:{wanted.port} failed: {type(error).__name__}: {cause}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
