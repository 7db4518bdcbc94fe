"""The dashboard's API when the results database cannot be read: 503, the connection named.

The connection ``painting_results_db`` points at a database that cannot be read: a real
PostgreSQL server that was stopped, a real one refusing the password, a table edited by hand to a
wrong shape, a schema newer than the code (SQLite files and real PostgreSQL). Every endpoint that
reads the store answers 503 with the store's message as ``detail`` (naming the connection, never
the password), through Airflow's own api-server app. Any other exception stays a 500: a record
column edited to text that is not JSON is a bug to see, not an unavailable database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from include.painting_simulator import settings
from scripts import local_services
from tests.support.results_db import (
    ENV,
    ResultsDb,
    normal_result,
    postgres_connection,
    start_postgres,
)

pytestmark = pytest.mark.integration

# Every endpoint that reads the results store, with its query.
ENDPOINTS = (
    ("summary", {"range": "24h"}),
    ("summary", {"range": "all"}),
    ("anomalies/recent", {"limit": 10}),
    ("replays/recent", {"limit": 10}),
    ("shadow", {"range": "1h"}),
    ("shadow/disagreements", {"limit": 20}),
)
NAMED = f"results database of connection {settings.RESULTS_DB_CONN_ID!r}"


@pytest.fixture
def ask(airflow_app: Any) -> Iterator[Any]:
    """GET an API path as a logged-in user; server errors come back as responses (a 500 is an
    answer here, not an exception raised into the test)."""
    from starlette.testclient import TestClient

    client = TestClient(airflow_app.client.app, base_url="http://127.0.0.1",
                        raise_server_exceptions=False)  # fmt: skip
    auth = {"Authorization": f"Bearer {airflow_app.token()}"}
    yield lambda path, params: client.get(f"/painting/api/{path}", params=params, headers=auth)
    client.close()


def unavailable_details(ask: Any, *secrets: str) -> set[str]:
    """Ask every endpoint: each answers 503 naming the connection and no secret; the details."""
    details = set()
    for path, params in ENDPOINTS:
        answer = ask(path, params)
        assert answer.status_code == 503, f"{path}: {answer.status_code} {answer.text}"
        detail = answer.json()["detail"]
        assert detail.startswith(NAMED), detail
        for secret in secrets:
            assert secret not in answer.text
        details.add(detail)
    return details


def test_a_stopped_database_server_is_503_naming_the_connection(ask, logs_dir, monkeypatch):
    server = start_postgres(local_services.free_port(), logs_dir / "postgres-stopped.log")
    results_db = ResultsDb.postgresql(server)
    server.stop()  # a real server that is no longer there: connections are refused
    monkeypatch.setenv(ENV, results_db.env_value)

    (detail,) = unavailable_details(ask, server.password)

    assert f"(postgresql://127.0.0.1:{server.port}/{results_db.connection['schema']})" in detail
    assert "OperationalError" in detail


def test_a_wrong_password_is_503_naming_the_connection_never_the_password(
    ask, postgres_server, monkeypatch
):
    wrong = "Wrong-Password-Of-The-Dashboard-9"
    connection = postgres_connection(postgres_server, "airflow", password=wrong)
    monkeypatch.setenv(ENV, json.dumps(connection))

    (detail,) = unavailable_details(ask, wrong, postgres_server.password)

    assert "password authentication failed" in detail


@pytest.mark.parametrize("results_db", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ("ALTER TABLE painting_results DROP COLUMN issue",
         "table 'painting_results' column 'issue' is missing"),
        ("UPDATE painting_schema_version SET version = 99",
         "has schema version 99, newer than this code's"),
    ],
    ids=["table-of-a-wrong-shape", "newer-schema"],
)  # fmt: skip
def test_a_database_of_another_shape_is_503_naming_the_table_or_version(
    ask, results_db, monkeypatch, edit, named
):
    results_db.store().write_rows("run-1", [normal_result("line.csv", 0)])
    results_db.execute(edit)
    monkeypatch.setenv(ENV, results_db.env_value)

    (detail,) = unavailable_details(ask)

    assert named in detail


@pytest.mark.parametrize("results_db", ["sqlite"], indirect=True)
def test_any_other_error_stays_a_500(ask, results_db, monkeypatch):
    results_db.store().write_summary({"run_id": "replay-1", "passed": True, "rows": 8})
    results_db.execute("UPDATE painting_replay_reports SET report = 'not JSON'")
    monkeypatch.setenv(ENV, results_db.env_value)

    assert ask("summary", {"range": "all"}).status_code == 200  # the database is readable
    answer = ask("replays/recent", {"limit": 10})  # a report in it is not: a bug, not a 503

    assert answer.status_code == 500, answer.text
