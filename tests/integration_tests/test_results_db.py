"""The results database store against real engines: a SQLite file and a real PostgreSQL server.

Every test runs on both (``results_db`` parametrised): the schema made on first use, exactly-once
writes (repeated batches, two writer processes at once), a newer schema refused, a table of the
wrong shape named, a wrong password that never shows, the export byte for byte as the JSON-lines
store writes, and the documented example queries.
"""

from __future__ import annotations

import json
import multiprocessing
import re
from pathlib import Path
from typing import Any

import pytest

from include.painting_simulator import results, results_db, settings
from include.painting_simulator.records import failure_record
from include.painting_simulator.results import JsonLinesResults
from include.painting_simulator.results_db import (
    DatabaseResults,
    ResultsDatabaseError,
    SchemaError,
)
from include.painting_simulator.results_export import export_ledgers
from scripts import export_results
from tests.support.results_db import (
    ResultsDb,
    normal_result,
    postgres_connection,
    write_in_process,
)

pytestmark = pytest.mark.integration

ENGINES = pytest.mark.parametrize("results_db", ["sqlite", "postgresql"], indirect=True)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "results-database.md"
RUN = "manual__2026-12-01T10:00:00+00:00"


def mixed_results() -> list[dict[str, Any]]:
    """One result of every shape: an anomaly (non-ASCII in its answer), a normal row with an
    expectation, a service error with a status, an unmapped row (raw CSV values)."""
    anomaly = normal_result("line.csv", 1, machine=3)
    anomaly.update(kind=settings.ANOMALY,
                   prediction={"issue": "PAINT-EQ-VOL-INVALID", "note": "전압 초과 ✗"})  # fmt: skip
    expected = {**normal_result("line.csv", 0), "expected": None}
    failed = {**normal_result("line.csv", 2, machine=2), "kind": settings.ERROR,
              "error": 'model service failed (503): "busy"', "status": 503}  # fmt: skip
    unmapped = {
        "source": {"blob": "line.csv", "row": 3},
        "kind": settings.ERROR,
        "original_data": {"machineId": "4", "timeStamp": "not-a-time", "Thick": "19.9"},
        "error": "blob 'line.csv' row 3 column 'timeStamp': not a timestamp",
    }
    return [expected, anomaly, failed, unmapped]


def freeze_clock(monkeypatch: pytest.MonkeyPatch, moment: str) -> None:
    """Both stores stamp records with the same (given) time, so that their lines compare byte
    for byte (the clock is the one thing replaced: it cannot be made to repeat itself)."""
    monkeypatch.setattr(results, "utc_now", lambda: moment)
    monkeypatch.setattr(results_db, "utc_now", lambda: moment)


@ENGINES
def test_first_use_creates_the_schema_and_the_version_and_names_the_store(results_db):
    store = results_db.store()
    written = store.write_rows(RUN, mixed_results())

    assert written.new == 4
    assert results_db.scalar("SELECT version FROM painting_schema_version") == 2
    assert results_db.scalar("SELECT count(*) FROM painting_results") == 4
    assert (
        results_db.scalar(
            "SELECT machine_id || ' ' || issue FROM painting_results WHERE kind = 'anomaly'"
        )
        == "PAINT-3 PAINT-EQ-VOL-INVALID"
    )
    assert (
        results_db.scalar(
            "SELECT machine_id || ' ' || reading_time || ' ' || status FROM painting_results "
            "WHERE row_number = 2"
        )
        == "PAINT-2 2025-07-23T08:00:02 503"
    )
    assert results_db.scalar("SELECT machine_id FROM painting_results WHERE row_number = 3") == "4"
    described = store.describe(settings.ANOMALY)
    if results_db.kind == "postgresql":
        c = results_db.connection
        assert described == (
            f"postgresql://127.0.0.1:{c['port']}/{c['schema']}, table painting_results"
        )
        assert c["password"] not in described
    else:
        assert described == f"sqlite:///{results_db.connection['host']}, table painting_results"
        assert described.startswith("sqlite:////")
    assert store.describe(settings.RUN_FAILURE).endswith(", table painting_run_failures")
    assert store.describe(settings.REPLAY_SUMMARY).endswith(", table painting_replay_reports")


@ENGINES
def test_every_write_is_exactly_once_by_its_key(results_db):
    store = results_db.store()
    rows = [normal_result("a.csv", row) for row in range(1200)]  # more than one INSERT

    assert store.write_rows(RUN, rows, batch="b0").new == 1200
    again = store.write_rows(RUN, [*rows[600:], normal_result("a.csv", 1200)], batch="b0")
    assert (again.new, len(again.records)) == (1, 601)  # a retry: only the new row is written
    assert store.write_rows("another-run", rows[:2]).new == 2  # another run: its own rows

    failure = failure_record(dag_id="d", run_id=RUN, task_id="t", try_number=4, cause="X: y")
    assert store.write_failure(failure) is True
    assert store.write_failure({**failure, "timestamp": "2026-12-01T11:00:00.000Z"}) is False
    taskless = failure_record(dag_id="d", run_id=RUN, task_id=None, try_number=None, cause="t/o")
    assert store.write_failure(taskless) is True
    assert store.write_failure(taskless) is False  # no task: still once
    assert store.write_summary({"run_id": RUN, "rows": 3, "passed": False}) is True
    assert store.write_summary({"run_id": RUN, "rows": 3, "passed": False}) is False

    assert results_db.scalar("SELECT count(*) FROM painting_results") == 1203
    assert results_db.scalar("SELECT count(*) FROM painting_run_failures") == 2
    assert results_db.scalar("SELECT count(*) FROM painting_replay_reports") == 1
    assert results_db.scalar("SELECT passed FROM painting_replay_reports") in (False, 0)


@ENGINES
def test_a_new_batch_is_one_bulk_write_and_one_with_a_row_there_already_falls_back(results_db):
    """A batch of rows that are all new goes in as one bulk write (PostgreSQL's ``COPY``,
    SQLite's ``executemany`` on the driver): no ``INSERT`` of ``painting_results`` goes through
    the engine. A batch with a row there already writes nothing in bulk and falls back to
    ``INSERT … ON CONFLICT DO NOTHING``: only its new rows are written, and counted."""
    from sqlalchemy import event

    store = results_db.store()
    inserts: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _seen(connection, cursor, statement, *rest) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().startswith(f"INSERT INTO {settings.RESULTS_TABLE} "):
            inserts.append(statement)

    rows = [normal_result("a.csv", row) for row in range(10)]
    assert store.write_rows(RUN, rows[:6]).new == 6
    assert inserts == []  # the bulk write
    assert results_db.scalar("SELECT count(*) FROM painting_results") == 6

    assert store.write_rows(RUN, rows[4:]).new == 4  # rows 4 and 5 are there already
    assert len(inserts) == 1
    assert "ON CONFLICT" in inserts[0].upper()
    assert results_db.rows("SELECT row_number FROM painting_results ORDER BY row_number") == [
        (row,) for row in range(10)
    ]
    counted = results_db.scalar(f"SELECT sum(n) FROM {settings.MINUTE_COUNTS_TABLE}")
    assert counted == 10  # the dashboard's counts: each row once


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_postgresql_writes_a_batch_once_with_every_column_through_either_driver(
    postgres_server, driver, tmp_path, monkeypatch
):
    # A batch with a key twice is not a bulk write: the PostgreSQL store sends it as one array
    # per column (INSERT … SELECT FROM unnest), in binary with psycopg, as literals with
    # psycopg2 (which has no bulk write; the postgres provider's hook takes psycopg when it is
    # installed): both must write what the JSON-lines store writes.
    from sqlalchemy import create_engine

    database = ResultsDb.postgresql(postgres_server)
    engine = create_engine(database.url().replace("+psycopg:", f"+{driver}:"),
                           **results_db.engine_kwargs("postgresql"))  # fmt: skip
    assert engine.dialect.driver == driver
    store, files = DatabaseResults(engine), JsonLinesResults(str(tmp_path / "files"))
    many = [normal_result("more.csv", row) for row in range(results_db.INSERT_ROWS + 1)]
    batch = [*mixed_results(), mixed_results()[1], *many]  # a key twice in one batch
    for writer in (store, files):
        freeze_clock(monkeypatch, "2026-12-01T10:00:01.000Z")
        assert writer.write_rows(RUN, batch).new == 4 + len(many)
        assert writer.write_rows(RUN, batch).new == 0
    try:
        assert database.rows(
            "SELECT row_number, kind, logged_at = '2026-12-01T10:00:01Z', machine_id, "
            "reading_time, issue, status, error, record->>'run_id' FROM painting_results "
            "WHERE blob = 'line.csv' ORDER BY row_number"
        ) == [
            (0, "normal", True, "PAINT-1", "2025-07-23T08:00:00", None, None, None, RUN),
            (1, "anomaly", True, "PAINT-3", "2025-07-23T08:00:01", "PAINT-EQ-VOL-INVALID", None,
             None, RUN),
            (2, "error", True, "PAINT-2", "2025-07-23T08:00:02", None, 503,
             'model service failed (503): "busy"', RUN),
            (3, "error", True, "4", "not-a-time", None, None,
             "blob 'line.csv' row 3 column 'timeStamp': not a timestamp", RUN),
        ]  # fmt: skip
        exported = tmp_path / "exported"
        export_ledgers(store, str(exported))
        for path in (tmp_path / "files").glob("painting_*_logs.jsonl"):
            assert (exported / path.name).read_bytes() == path.read_bytes(), path.name
    finally:
        engine.dispose()


@ENGINES
def test_rows_are_read_back_by_kind_in_a_time_range_as_the_files_store_reads_them(
    results_db, tmp_path, monkeypatch
):
    """``read_rows`` (the alerts' read): after ``since``, up to and with ``until``, oldest
    first, one kind; the same records as the JSON-lines store gives for the same writes."""
    files, store = JsonLinesResults(str(tmp_path)), results_db.store()
    stamps = ["2026-12-01T10:00:00.000Z", "2026-12-01T10:05:00.000Z", "2026-12-01T10:10:00.000Z"]
    for row, stamp in enumerate(stamps):
        freeze_clock(monkeypatch, stamp)
        anomaly = {**normal_result("a.csv", row), "kind": settings.ANOMALY,
                   "prediction": {"issue": "PAINT-EQ-THK-HIGH"}}  # fmt: skip
        for writer in (files, store):
            writer.write_rows(f"run-{row}", [anomaly, normal_result("b.csv", row)])

    for kind, since, until, rows in [
        (settings.ANOMALY, stamps[0], stamps[2], [1, 2]),
        (settings.ANOMALY, None, stamps[1], [0, 1]),
        (settings.NORMAL, stamps[2], "2026-12-02T00:00:00.000Z", []),
        (settings.ERROR, None, stamps[2], []),
    ]:
        got = store.read_rows(kind, since, until)
        assert [r["source"]["row"] for r in got] == rows, (kind, since, until)
        assert got == files.read_rows(kind, since, until)


@ENGINES
def test_a_replay_shards_progress_is_kept_in_the_database_and_replaced_at_each_save(results_db):
    from include.painting_simulator.replay.figures import Tally

    store = results_db.store()
    progress = store.progress(RUN, 1)
    assert progress.load() is None
    progress.save(Tally(rows=20))
    progress.save(Tally(rows=40, seconds=1.5))

    assert (progress.load().rows, progress.load().seconds) == (40, 1.5)
    assert results_db.store().progress(RUN, 1).load().rows == 40  # another worker sees it
    assert store.progress(RUN, 0).load() is None
    assert store.progress("other-run", 1).load() is None
    assert results_db.scalar("SELECT count(*) FROM painting_replay_progress") == 1


@ENGINES
def test_a_replay_shards_writes_go_through_one_kept_connection_until_it_closes(results_db):
    """A replay shard writes two transactions a chunk (its rows, its progress): with ``kept``
    they share one connection, checked before use, closed by ``close``; without, each write
    connects anew (a long-lived process keeps nothing)."""
    from sqlalchemy import create_engine, event

    from include.painting_simulator.replay.figures import Tally

    def connects(kept: bool) -> tuple[int, int]:
        engine = create_engine(results_db.url(), **results_db_kwargs(results_db.kind, kept))
        made: list[object] = []
        event.listen(engine, "connect", lambda connection, record: made.append(connection))
        store = DatabaseResults(engine)
        for chunk in range(3):
            store.write_rows(f"{RUN}-{kept}", [normal_result("a.csv", chunk)])
            store.progress(f"{RUN}-{kept}", 0).save(Tally(rows=chunk + 1))
        opened = len(made)
        kept_open = engine.pool.checkedin() if kept else 0
        store.close()
        left = engine.pool.checkedin() if kept else 0
        engine.dispose()
        return opened, kept_open, left

    assert connects(kept=True) == (1, 1, 0)  # one connection, kept, then closed
    assert connects(kept=False)[0] >= 6


def results_db_kwargs(kind: str, kept: bool) -> dict[str, Any]:
    return results_db.engine_kwargs(kind, kept=kept)


@ENGINES
def test_two_writer_processes_at_once_write_each_row_once(results_db):
    results_db.store().write_rows("warm-up", [])  # nothing: the schema is made on first write
    context = multiprocessing.get_context("spawn")
    overlapping = [list(range(0, 800)), list(range(400, 1200))]
    with context.Pool(2) as pool:
        new = pool.starmap(
            write_in_process, [(results_db.url(), RUN, rows, 3) for rows in overlapping]
        )

    assert sum(new) == 1200  # each of the 1,200 distinct rows was new for exactly one writer
    assert results_db.scalar("SELECT count(*) FROM painting_results") == 1200
    assert results_db.scalar("SELECT count(DISTINCT row_number) FROM painting_results") == 1200


@ENGINES
def test_a_database_at_a_newer_schema_version_is_refused_and_nothing_written(results_db):
    results_db.store().write_failure(
        failure_record(dag_id="d", run_id=RUN, task_id="t", try_number=1, cause="c")
    )
    results_db.execute("UPDATE painting_schema_version SET version = 3")

    with pytest.raises(SchemaError, match="schema version 3, newer than this code's 2") as error:
        results_db.store().write_rows(RUN, mixed_results())

    assert "'painting_results_db'" in str(error.value)
    assert results_db.scalar("SELECT count(*) FROM painting_results") == 0


@ENGINES
def test_a_table_edited_by_hand_to_a_wrong_shape_is_named_with_its_column(results_db):
    results_db.store().write_rows(RUN, mixed_results())
    results_db.execute("ALTER TABLE painting_results DROP COLUMN issue")

    with pytest.raises(SchemaError, match="table 'painting_results' column 'issue' is missing"):
        results_db.store().write_rows("next-run", mixed_results())

    timestamp = "TIMESTAMP WITH TIME ZONE" if results_db.kind == "postgresql" else "TEXT"
    results_db.execute("DROP TABLE painting_replay_reports")
    results_db.execute(
        "CREATE TABLE painting_replay_reports (run_id TEXT PRIMARY KEY, "
        f"logged_at {timestamp} NOT NULL, passed TEXT, report JSON NOT NULL)"
    )
    results_db.execute("ALTER TABLE painting_results ADD COLUMN issue TEXT")
    with pytest.raises(
        SchemaError,
        match="table 'painting_replay_reports' column 'passed' is of type text, the schema's "
        "is boolean",
    ):
        results_db.store().write_summary({"run_id": "r", "passed": True})
    assert results_db.scalar("SELECT count(*) FROM painting_results") == 4  # nothing added


def test_a_wrong_password_names_the_connection_and_never_the_password(postgres_server, monkeypatch):
    from include.painting_simulator.airflow_runtime import results_database

    wrong = "not-the-Password-42"
    connection = postgres_connection(postgres_server, "airflow", password=wrong)
    monkeypatch.setenv("AIRFLOW_CONN_PAINTING_RESULTS_DB", json.dumps(connection))
    store = DatabaseResults(results_database())

    with pytest.raises(ResultsDatabaseError) as error:
        store.write_rows(RUN, mixed_results())

    message = str(error.value)
    assert "connection 'painting_results_db'" in message
    assert "password authentication failed" in message
    assert wrong not in message
    assert wrong not in repr(error.value)
    assert error.value.__cause__ is None
    assert error.value.__suppress_context__


@ENGINES
def test_the_export_is_byte_for_byte_what_the_json_lines_store_writes(
    results_db, tmp_path, monkeypatch
):
    files, database = JsonLinesResults(str(tmp_path / "files")), results_db.store()
    failure = failure_record(
        dag_id="painting_simulator", run_id=RUN, task_id="call_model_service", try_number=4,
        cause="ModelServiceUnreachable: ünreachable", logged_at="2026-12-01T10:00:05.000Z",
    )  # fmt: skip
    summary = {"timestamp": "2026-12-01T10:00:06.000Z", "run_id": RUN, "rows": 4,
               "latency_ms": {"p50": 1.25}, "thresholds": [], "passed": True}  # fmt: skip
    for store in (files, database):
        freeze_clock(monkeypatch, "2026-12-01T10:00:01.000Z")
        store.write_rows(RUN, mixed_results())
        freeze_clock(monkeypatch, "2026-12-01T10:00:02.500Z")
        store.write_rows("scheduled__2026-12-01T10:01:00+00:00",
                         [normal_result("line.csv", 9), normal_result("other.csv", 0)])  # fmt: skip
        store.write_failure(failure)
        store.write_summary(summary)

    exported = tmp_path / "exported"
    counts = export_ledgers(database, str(exported))

    written = sorted(p.name for p in (tmp_path / "files").glob("*.jsonl"))
    assert sorted(p.name for p in exported.iterdir()) == written
    for name in written:
        assert (exported / name).read_bytes() == (tmp_path / "files" / name).read_bytes(), name
    assert counts["painting_normal_logs.jsonl"] == 3
    assert "전압 초과 ✗" in (exported / "painting_issue_logs.jsonl").read_text(encoding="utf-8")


@ENGINES
def test_the_export_command_takes_a_time_range(results_db, tmp_path, monkeypatch, capsys):
    database = results_db.store()
    for second, row in ((1, 0), (2, 1), (3, 2)):
        freeze_clock(monkeypatch, f"2026-12-01T10:00:0{second}.000Z")
        database.write_rows(RUN, [normal_result("line.csv", row)])

    out = tmp_path / "range"
    assert export_results.main(["--url", results_db.url(), "--out", str(out),
                                "--since", "2026-12-01T10:00:02Z",
                                "--until", "2026-12-01T10:00:03"]) == 0  # fmt: skip

    lines = (out / "painting_normal_logs.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert '"row": 1}' in lines[0]
    assert not (out / "painting_issue_logs.jsonl").exists()
    printed = capsys.readouterr().out
    assert "1 line(s)  painting_normal_logs.jsonl" in printed
    assert (results_db.connection.get("password") or "\0") not in printed
    # A malformed time is named before anything is written.
    bad = tmp_path / "bad"
    assert export_results.main(["--url", results_db.url(), "--out", str(bad),
                                "--since", "yesterday"]) == 1  # fmt: skip
    assert "'yesterday' is not an ISO-8601 time" in capsys.readouterr().err
    assert not bad.exists()
    # An export never mixes with files already there.
    assert export_results.main(["--url", results_db.url(), "--out", str(out)]) == 1
    assert "already holds painting_normal_logs.jsonl" in capsys.readouterr().err


@ENGINES
def test_the_documented_example_queries_run(results_db, monkeypatch):
    database = results_db.store()
    freeze_clock(monkeypatch, "2026-12-01T10:15:00.000Z")
    database.write_rows(RUN, mixed_results())
    freeze_clock(monkeypatch, "2026-12-01T11:05:00.000Z")
    anomaly = mixed_results()[1]
    database.write_rows("later", [anomaly, {**anomaly, "source": {"blob": "b.csv", "row": 0}}])

    queries = documented_queries(results_db.kind)
    counts = "anomalies per issue code per hour, from the counts"
    assert set(queries) == {"anomalies per machine per hour", "the last 10 anomalies", counts}
    per_code = [
        (str(h)[:13].replace(" ", "T"), i, n) for h, i, n in results_db.rows(queries[counts])
    ]
    assert per_code == [("2026-12-01T10", "PAINT-EQ-VOL-INVALID", 1),
                        ("2026-12-01T11", "PAINT-EQ-VOL-INVALID", 2)]  # fmt: skip
    per_hour = results_db.rows(queries["anomalies per machine per hour"])
    hours = [(str(hour)[:13].replace(" ", "T"), machine, n) for hour, machine, n in per_hour]
    assert hours == [("2026-12-01T10", "PAINT-3", 1), ("2026-12-01T11", "PAINT-3", 2)]
    last = results_db.rows(queries["the last 10 anomalies"])
    assert len(last) == 3
    assert last[0][2] == "PAINT-3"


def documented_queries(kind: str) -> dict[str, str]:
    """The example queries of docs/results-database.md for one engine: each ```sql block right
    after a line ``<!-- query: NAME (ENGINE) -->``."""
    engine = "PostgreSQL" if kind == "postgresql" else "SQLite"
    text = DOCS.read_text(encoding="utf-8")
    pattern = r"<!-- query: (.+?) \((\w+)\) -->\s*```sql\n(.*?)```"
    return {name: sql for name, which, sql in re.findall(pattern, text, re.S) if which == engine}


def test_a_connection_of_another_type_is_refused_by_name(monkeypatch):
    from include.painting_simulator.airflow_runtime import results_database

    monkeypatch.setenv("AIRFLOW_CONN_PAINTING_RESULTS_DB", "http://example.invalid:80")
    with pytest.raises(ResultsDatabaseError, match="connection 'painting_results_db' is of type "
                       "'http': the results database is one of postgres, sqlite"):  # fmt: skip
        results_database()


def test_without_the_connection_the_json_lines_files_are_the_store(tmp_path):
    from include.painting_simulator.airflow_runtime import results_store

    writer = results_store(str(tmp_path))
    assert isinstance(writer, JsonLinesResults)
    assert writer.write_rows(RUN, mixed_results()).new == 4
    assert (tmp_path / "painting_issue_logs.jsonl").exists()
