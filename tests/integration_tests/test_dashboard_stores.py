"""The dashboard's answers from the results database equal those from the files, on one set of
results.

Against real engines (a SQLite file, a real PostgreSQL server): results written through the real
writers (:class:`results_db.DatabaseResults` of the simulator and of the replay, a failure record,
replay reports), then exported to JSON-lines files byte for byte (:mod:`results_export`), so that
both stores hold the very same records; every method of the database reader × every range of the
page compared with the ledger reader's answer. Also the count tables themselves: a row written
twice (a retried task) counts once, and the upgrade from schema version 1 builds the same counts
from the rows as the inserts kept. The same comparison over HTTP through the plugin, on real DAG
runs: tests/plugin_tests/test_dashboard_database.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from include.painting_simulator import results_db, settings
from include.painting_simulator.dashboard.answers import minute_iso, now_minute
from include.painting_simulator.dashboard.database_reader import DatabaseReader
from include.painting_simulator.dashboard.ledger_reader import LedgerSet
from include.painting_simulator.records import failure_record
from include.painting_simulator.results_counts import COUNT_TABLES
from include.painting_simulator.results_db import DatabaseResults
from include.painting_simulator.results_export import export_ledgers
from tests.support.model_checks import replay_summary, shadow_result

pytestmark = pytest.mark.integration

ENGINES = pytest.mark.parametrize("results_db", ["sqlite", "postgresql"], indirect=True)
# The page's ranges (plugins/painting_dashboard.py RANGES), in minutes; None: everything.
RANGES = (15, 60, 360, 1440, 7 * 1440, 30 * 1440, None)
MCH, CUR, VOL = "PAINT-EQ-MCH", "PAINT-EQ-CUR-LOW", "PAINT-EQ-VOL-HIGH"


def at(minute: int, second: int = 7) -> str:
    """A record's timestamp in ``minute``."""
    return minute_iso(minute).replace("Z", f":{second:02d}.250Z")


def stamped(monkeypatch: pytest.MonkeyPatch, minute: int, second: int = 7) -> None:
    """The writers stamp the next records at ``minute`` (the clock is the one thing replaced:
    records of three days ago, or of 2099, cannot be written otherwise)."""
    moment = at(minute, second)
    monkeypatch.setattr(results_db, "utc_now", lambda: moment)


def write_results(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulator runs over three days (anomalies of three codes and machines, normals, errors,
    a candidate agreeing, disagreeing and failing), a replay with a candidate and its report, a
    second report, a run failure, and one row stamped in 2099 (a machine with a wrong clock)."""
    engine = store.engine
    simulator = DatabaseResults(engine, dag_id=settings.SIMULATOR_DAG_ID)
    replay = DatabaseResults(engine, dag_id=settings.REPLAY_DAG_ID)
    now = now_minute()
    runs = [
        (now - 3 * 1440 - 7, [("normal", "normal"), (CUR, MCH), ("error", "normal")]),
        (now - 125, [(MCH, MCH), ("normal", "error"), (VOL, "normal"), (VOL, VOL)]),
        (now - 9, [(CUR, CUR), ("normal", MCH), ("error", "error"), ("normal", "normal")]),
        (now, [(VOL, MCH), ("normal", "normal"), (CUR, "error")]),
    ]
    for n, (minute, pairs) in enumerate(runs):
        stamped(monkeypatch, minute)
        machines = [f"PAINT-{(row + n) % 3}" for row in range(len(pairs))]
        rows = enumerate(zip(pairs, machines, strict=True))
        batch = [shadow_result(r, p, c, m) for r, ((p, c), m) in rows]
        simulator.write_rows(f"scheduled__{n}", batch)
    stamped(monkeypatch, now - 30, second=30)
    pairs = [(CUR, MCH), ("normal", MCH), ("normal", "normal"), (VOL, "error")]
    replay.write_rows("manual__replay", [shadow_result(r, p, c) for r, (p, c) in enumerate(pairs)])
    replay.write_summary({**replay_summary("manual__replay", pairs), "timestamp": at(now - 29)})
    replay.write_summary({**replay_summary("manual__plain"), "timestamp": at(now - 5)})
    simulator.write_failure(failure_record(dag_id=settings.SIMULATOR_DAG_ID,
                                           run_id="scheduled__2", task_id="log_errors",
                                           try_number=1, cause="disk full"))  # fmt: skip
    stamped(monkeypatch, minute_of_2099())
    simulator.write_rows("manual__wrong-clock", [shadow_result(0, MCH, MCH, "PAINT-9")])


def minute_of_2099() -> int:
    from include.painting_simulator.dashboard.answers import minute_of

    return minute_of("2099-01-01T00:00:00.000Z")  # type: ignore[return-value]


def answers(reader: Any, end: int) -> dict[str, Any]:
    """Every answer of a reader: the summary and the shadow view for each range, pages of the
    recent anomalies, the disagreements, the reports, a run's counts."""
    got: dict[str, Any] = {}
    for minutes in RANGES:
        start = None if minutes is None else end - minutes
        got[f"summary {minutes}"] = reader.summary(start, end)
        got[f"shadow {minutes}"] = reader.shadow(start, end)
    for limit, offset in ((10, 0), (2, 0), (2, 2), (3, 5), (5, 100)):
        got[f"recent {limit} {offset}"] = reader.recent("anomaly", limit, offset)
    for limit in (1, 20):
        got[f"disagreements {limit}"] = reader.disagreements(limit)
        got[f"replays {limit}"] = reader.replay_reports(limit)
    for run_id in ("scheduled__1", "manual__replay", "no-such-run"):
        got[f"run {run_id}"] = reader.run_counts(run_id)
    return got


def count_tables(results_db: Any) -> dict[str, list[tuple[Any, ...]]]:
    return {
        name: sorted(results_db.rows(f"SELECT * FROM {name}"), key=repr) for name in COUNT_TABLES
    }


@ENGINES
def test_every_answer_from_the_database_equals_the_answer_from_the_files(
    results_db, tmp_path: Path, monkeypatch
):
    store = results_db.store()
    write_results(store, monkeypatch)
    files = tmp_path / "exported"
    export_ledgers(store, str(files))
    end = now_minute() + 1

    from_files = answers(LedgerSet(str(files), clock=lambda: end - 1), end)
    from_database = answers(DatabaseReader(results_db.store()), end)

    for name, answer in from_files.items():
        assert from_database[name] == answer, name
    # The comparison is not of empty answers: what the results hold shows in them.
    everything = from_database["summary None"]
    assert everything["counts"] == {"anomaly": 10, "normal": 7, "error": 2, "total": 19}
    assert everything["future"]["total"] == 1
    assert everything["run_failures"] == 1
    assert from_database["summary 15"]["counts"]["total"] == 7
    assert from_database["shadow None"]["replay_rows_left_out"] == 4
    assert from_database["shadow 60"]["counts"]["compared"] == 5
    assert len(from_database["disagreements 20"]["records"]) == 4
    assert from_database["recent 3 5"]["total"] == 10
    assert len(from_database["recent 3 5"]["records"]) == 3
    assert from_database["replays 20"]["total"] == 2


@ENGINES
def test_an_empty_database_answers_as_empty_files(results_db, tmp_path: Path):
    end = now_minute() + 1
    from_files = answers(LedgerSet(str(tmp_path / "none"), clock=lambda: end - 1), end)
    from_database = answers(DatabaseReader(results_db.store()), end)
    assert from_database == from_files
    assert from_database["summary None"]["counts"]["total"] == 0


@ENGINES
def test_a_row_written_twice_counts_once(results_db, monkeypatch):
    """A retried task writes its batch again, maybe with rows of its own: the count tables add
    only the rows the INSERT found new, like the rows themselves."""
    stamped(monkeypatch, now_minute())
    store = DatabaseResults(results_db.store().engine, dag_id=settings.SIMULATOR_DAG_ID)
    pairs = [(CUR, MCH), ("normal", "normal"), (VOL, "error"), ("error", "normal")]
    batch = [shadow_result(r, p, c) for r, (p, c) in enumerate(pairs)]
    assert store.write_rows("scheduled__retried", batch).new == 4
    once = count_tables(results_db)
    assert store.write_rows("scheduled__retried", batch).new == 0
    assert count_tables(results_db) == once
    extra = shadow_result(4, CUR, CUR)
    assert store.write_rows("scheduled__retried", [*batch, extra]).new == 1

    kinds = dict(
        results_db.rows(f"SELECT kind, sum(n) FROM {settings.MINUTE_COUNTS_TABLE} GROUP BY kind")
    )
    rows = dict(results_db.rows("SELECT kind, count(*) FROM painting_results GROUP BY kind"))
    assert {k: int(n) for k, n in kinds.items()} == rows == {"anomaly": 3, "normal": 1, "error": 1}
    issues = results_db.rows(f"SELECT issue, n FROM {settings.MINUTE_ISSUES_TABLE} ORDER BY issue")
    assert [(i, int(n)) for i, n in issues] == [(CUR, 2), (VOL, 1)]
    shadow = results_db.rows(
        f"SELECT compared, agreed, candidate_errors FROM {settings.MINUTE_SHADOW_TABLE}"
    )
    assert [tuple(int(n) for n in row) for row in shadow] == [(3, 2, 1)]
    hourly = results_db.rows(
        f"SELECT kind, n FROM {settings.HOURLY_TABLES[settings.MINUTE_COUNTS_TABLE]} ORDER BY 1"
    )
    assert [(k, int(n)) for k, n in hourly] == [("anomaly", 3), ("error", 1), ("normal", 1)]
    assert results_db.scalar(f"SELECT count(*) FROM {settings.DISAGREEMENTS_TABLE}") == 1


def downgrade_to_version_1(results_db: Any) -> None:
    """The database as schema version 1 left it: no count tables, no ``dag_id``."""
    for name in COUNT_TABLES:
        results_db.execute(f"DROP TABLE {name}")
    results_db.execute("ALTER TABLE painting_results DROP COLUMN dag_id")
    results_db.execute("UPDATE painting_schema_version SET version = 1")


@ENGINES
def test_the_upgrade_from_version_1_builds_the_counts_the_inserts_kept(
    results_db, tmp_path: Path, monkeypatch
):
    store = results_db.store()
    write_results(store, monkeypatch)
    kept = count_tables(results_db)
    end = now_minute() + 1
    before = answers(DatabaseReader(store), end)
    downgrade_to_version_1(results_db)

    after = answers(DatabaseReader(results_db.store()), end)  # the first use upgrades

    assert results_db.scalar("SELECT version FROM painting_schema_version") == 2
    assert count_tables(results_db) == kept
    assert after == before
    dag_ids = results_db.rows("SELECT DISTINCT run_id, dag_id FROM painting_results ORDER BY 1")
    assert dict(dag_ids) == {
        "manual__replay": settings.REPLAY_DAG_ID,  # a replay report names it
        "manual__wrong-clock": None,
        **{f"scheduled__{n}": None for n in range(4)},  # not known: NULL (docs)
    }
