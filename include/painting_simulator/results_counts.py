"""The results database's dashboard counts: kept per minute as rows are inserted, exactly once.

Schema version 2 (``docs/results-database.md``) adds small narrow tables that the dashboard reads
instead of ``painting_results`` itself (:mod:`dashboard.database_reader`): rows per (minute,
kind), anomalies per (minute, issue code) and per (minute, machine), shadow mode's figures per
(minute, replay or not) and the disagreements of the simulator's rows. :func:`add` maintains
them in the transaction of the row INSERT, from the rows its ``RETURNING`` said are new, with
``INSERT … ON CONFLICT (key) DO UPDATE SET n = n + excluded.n``: a retried task adds nothing to
the counts either. :func:`backfill` builds them from a version 1 database's rows (the upgrade),
one ``INSERT … SELECT … GROUP BY`` per table. A row's counts use the dashboard's definitions
(:mod:`dashboard.answers`), so both stores answer alike. SQLAlchemy is imported inside functions.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from include.painting_simulator import settings
from include.painting_simulator.dashboard.answers import UNKNOWN, label, minute_of, shadow_labels
from include.painting_simulator.records import AGREED, CANDIDATE_ERROR

if TYPE_CHECKING:
    from sqlalchemy import Connection, MetaData

# Every table of this module (what the upgrade to version 2 creates).
COUNT_TABLES = (
    settings.MINUTE_COUNTS_TABLE, settings.MINUTE_ISSUES_TABLE, settings.MINUTE_MACHINES_TABLE,
    settings.MINUTE_SHADOW_TABLE, *settings.HOURLY_TABLES.values(), settings.DISAGREEMENTS_TABLE,
)  # fmt: skip
# The shadow figures' columns, in the order of the dashboard's [compared, agreed, errors].
SHADOW_COLUMNS = ("compared", "agreed", "candidate_errors")

# The count tables of rows (their key column), each also per hour (settings.HOURLY_TABLES).
KEYS = {
    settings.MINUTE_COUNTS_TABLE: "kind",
    settings.MINUTE_ISSUES_TABLE: "issue",
    settings.MINUTE_MACHINES_TABLE: "machine",
}


def define(meta: MetaData) -> None:
    """Add the count tables to ``meta`` (the schema of :func:`results_db.schema`)."""
    from sqlalchemy import BigInteger, Boolean, Column, Index, PrimaryKeyConstraint, Table, Text

    for minutes, key in KEYS.items():
        for name in (minutes, settings.HOURLY_TABLES[minutes]):
            Table(
                name,
                meta,
                Column("minute", BigInteger, nullable=False),
                Column(key, Text, nullable=False),
                Column("n", BigInteger, nullable=False),
                PrimaryKeyConstraint("minute", key, name=f"{name}_pkey"),
            )
    minutes = settings.MINUTE_SHADOW_TABLE
    for name in (minutes, settings.HOURLY_TABLES[minutes]):
        Table(
            name,
            meta,
            Column("minute", BigInteger, nullable=False),
            Column("replay", Boolean, nullable=False),
            *(Column(column, BigInteger, nullable=False) for column in SHADOW_COLUMNS),
            PrimaryKeyConstraint("minute", "replay", name=f"{name}_pkey"),
        )
    disagreements = Table(
        settings.DISAGREEMENTS_TABLE,
        meta,
        Column("run_id", Text, nullable=False),
        Column("blob", Text, nullable=False),
        Column("row_number", BigInteger, nullable=False),
        Column("timestamp", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("machine", Text),
        Column("production", Text, nullable=False),
        Column("candidate", Text, nullable=False),
        PrimaryKeyConstraint("run_id", "blob", "row_number", name="painting_disagreements_pkey"),
    )
    Index("painting_disagreements_timestamp", disagreements.c.timestamp)


def _machine(record: dict[str, Any]) -> Any:
    prediction = record.get("prediction")
    data = record.get("original_data")
    return (prediction.get("machineId") if isinstance(prediction, dict) else None) or (
        data.get("machineId") if isinstance(data, dict) else None
    )


def counts_of(rows: list[dict[str, Any]], replay: bool) -> dict[str, Any]:
    """The counts of new ``painting_results`` rows (:func:`results_db.result_row`), per table:
    ``{table: Counter((minute, name) -> n)}``, shadow figures per minute and the disagreements.
    ``replay``: the rows are a replay's (their shadow figures are counted apart, their
    disagreements not kept)."""
    kinds, issues, machines = Counter(), Counter(), Counter()
    shadow: dict[int, list[int]] = {}
    disagreements: list[dict[str, Any]] = []
    for row in rows:
        record = row["record"]
        minute = minute_of(record.get("timestamp"))
        if minute is None:
            continue
        kind = row["kind"]
        kinds[minute, kind] += 1
        prediction = record.get("prediction")
        issue = prediction.get("issue") if isinstance(prediction, dict) else None
        machine = _machine(record)
        if kind == settings.ANOMALY:
            if issue is not None:
                issues[minute, label(issue)] += 1
            if machine is not None:
                machines[minute, label(machine)] += 1
        verdict = record.get("candidate")
        if not isinstance(verdict, dict):
            continue
        production, candidate, outcome = shadow_labels(
            kind, issue, verdict.get("kind"), verdict.get("issue")
        )
        if outcome is None:
            continue
        figures = shadow.setdefault(minute, [0, 0, 0])
        if outcome == CANDIDATE_ERROR:
            figures[2] += 1
            continue
        figures[0] += 1
        if outcome == AGREED:
            figures[1] += 1
        elif not replay:
            disagreements.append(
                {
                    "run_id": row["run_id"],
                    "blob": row["blob"],
                    "row_number": row["row_number"],
                    "timestamp": record["timestamp"],
                    "kind": kind,
                    "machine": None if machine is None else label(machine),
                    "production": production,
                    "candidate": candidate,
                }
            )
    return {
        settings.MINUTE_COUNTS_TABLE: kinds,
        settings.MINUTE_ISSUES_TABLE: issues,
        settings.MINUTE_MACHINES_TABLE: machines,
        "shadow": shadow,
        "disagreements": disagreements,
    }


def add(
    connection: Connection, meta: MetaData, dialect: str, rows: list[dict[str, Any]], replay: bool
) -> None:
    """Add the counts of the new rows ``rows`` in ``connection``'s transaction (keys in order:
    two writers never wait for each other in a cycle)."""
    from include.painting_simulator.results_db import dialect_insert

    found = counts_of(rows, replay)
    insert = dialect_insert(dialect)
    for minutes, key in KEYS.items():
        for name, counts in ((minutes, found[minutes]), (settings.HOURLY_TABLES[minutes],
                                                          per_hour(found[minutes]))):  # fmt: skip
            if not counts:
                continue
            table = meta.tables[name]
            statement = insert(table)
            statement = statement.on_conflict_do_update(
                index_elements=[table.c.minute, table.c[key]],
                set_={"n": table.c.n + statement.excluded.n},
            )
            connection.execute(
                statement, [{"minute": m, key: k, "n": n} for (m, k), n in sorted(counts.items())]
            )
    hours: dict[int, list[int]] = {}
    for minute, figures in found["shadow"].items():
        summed = hours.setdefault(minute - minute % 60, [0, 0, 0])
        hours[minute - minute % 60] = [a + b for a, b in zip(summed, figures, strict=True)]
    minutes = settings.MINUTE_SHADOW_TABLE
    for name, figures_of in ((minutes, found["shadow"]), (settings.HOURLY_TABLES[minutes], hours)):
        if not figures_of:
            continue
        table = meta.tables[name]
        statement = insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.minute, table.c.replay],
            set_={c: table.c[c] + statement.excluded[c] for c in SHADOW_COLUMNS},
        )
        connection.execute(
            statement,
            [
                {"minute": m, "replay": replay, **dict(zip(SHADOW_COLUMNS, f, strict=True))}
                for m, f in sorted(figures_of.items())
            ],
        )
    if found["disagreements"]:
        table = meta.tables[settings.DISAGREEMENTS_TABLE]
        connection.execute(insert(table).on_conflict_do_nothing(), found["disagreements"])


def per_hour(counts: Counter) -> Counter:
    """Counts per (minute, name) summed per (the hour's first minute, name)."""
    hours: Counter = Counter()
    for (minute, name), n in counts.items():
        hours[minute - minute % 60, name] += n
    return hours


def minute_expression(column: Any, dialect: str) -> Any:
    """SQL: the minute (since the epoch, UTC) of a ``logged_at`` column."""
    from sqlalchemy import BigInteger, Integer, cast, extract, func

    if dialect == "postgresql":
        return cast(func.floor(extract("epoch", column) / 60), BigInteger)
    return cast(func.strftime("%s", func.substr(column, 1, 19)), Integer) // 60


def backfill(connection: Connection, meta: MetaData) -> None:
    """Upgrade 1 -> 2: the ``dag_id`` column (``painting_replay`` for the runs of a replay
    report, else NULL: not known), the count tables, and their counts from the rows there are
    (one ``INSERT … SELECT … GROUP BY`` each)."""
    from sqlalchemy import Text, and_, case, false, func, literal, not_, or_, select

    dialect = connection.dialect.name
    results = meta.tables[settings.RESULTS_TABLE]
    reports = meta.tables[settings.REPLAY_REPORTS_TABLE]
    connection.exec_driver_sql(f"ALTER TABLE {settings.RESULTS_TABLE} ADD COLUMN dag_id TEXT")
    connection.execute(
        results.update()
        .where(results.c.run_id.in_(select(reports.c.run_id)))
        .values(dag_id=settings.REPLAY_DAG_ID)
    )
    for name in COUNT_TABLES:
        meta.tables[name].create(connection, checkfirst=True)
    minute = minute_expression(results.c.logged_at, dialect).label("minute")

    def grouped(name: str, key: str, value: Any, *where: Any) -> None:
        query = select(minute, value.label(key), func.count().label("n")).where(*where)
        query = query.group_by(minute, value)
        table = meta.tables[name]
        connection.execute(table.insert().from_select(["minute", key, "n"], query))

    anomaly = results.c.kind == settings.ANOMALY
    grouped(settings.MINUTE_COUNTS_TABLE, "kind", results.c.kind)
    named = func.coalesce(func.nullif(results.c.issue, ""), literal(UNKNOWN, Text))
    grouped(settings.MINUTE_ISSUES_TABLE, "issue", named, anomaly, results.c.issue.is_not(None))
    machine = func.coalesce(func.nullif(results.c.machine_id, ""), literal(UNKNOWN, Text))
    grouped(
        settings.MINUTE_MACHINES_TABLE, "machine", machine, anomaly,
        results.c.machine_id.is_not(None),
    )  # fmt: skip

    # Shadow mode's labels in SQL, as answers.shadow_labels gives them.
    candidate_kind = results.c.record[("candidate", "kind")].as_string()
    candidate_issue = results.c.record[("candidate", "issue")].as_string()
    production = case(
        (anomaly, func.coalesce(func.nullif(results.c.issue, ""), settings.ANOMALY)),
        else_=results.c.kind,
    )
    candidate = case(
        (candidate_kind == settings.ANOMALY,
         func.coalesce(func.nullif(candidate_issue, ""), settings.ANOMALY)),
        (candidate_kind == settings.NORMAL, settings.NORMAL),
        else_=settings.ERROR,
    )  # fmt: skip
    has_candidate = candidate_kind.is_not(None)
    candidate_error = candidate == settings.ERROR
    compared = and_(not_(candidate_error), results.c.kind != settings.ERROR)
    replay = func.coalesce(results.c.dag_id == settings.REPLAY_DAG_ID, false())
    one = lambda condition: func.sum(case((condition, 1), else_=0))  # noqa: E731
    query = (
        select(
            minute,
            replay.label("replay"),
            one(compared).label("compared"),
            one(and_(compared, production == candidate)).label("agreed"),
            one(candidate_error).label("candidate_errors"),
        )
        .where(has_candidate, or_(candidate_error, results.c.kind != settings.ERROR))
        .group_by(minute, replay)
    )
    shadow = meta.tables[settings.MINUTE_SHADOW_TABLE]
    connection.execute(shadow.insert().from_select(["minute", "replay", *SHADOW_COLUMNS], query))
    prediction_machine = results.c.record[("prediction", "machineId")].as_string()
    query = select(
        results.c.run_id,
        results.c.blob,
        results.c.row_number,
        results.c.record[("timestamp",)].as_string(),
        results.c.kind,
        func.coalesce(func.nullif(prediction_machine, ""), results.c.machine_id),
        production,
        candidate,
    ).where(has_candidate, compared, production != candidate, not_(replay))
    disagreements = meta.tables[settings.DISAGREEMENTS_TABLE]
    columns = ["run_id", "blob", "row_number", "timestamp", "kind", "machine", "production",
               "candidate"]  # fmt: skip
    connection.execute(disagreements.insert().from_select(columns, query))
    for minutes, hours in settings.HOURLY_TABLES.items():  # per hour, from the minutes
        source = meta.tables[minutes]
        keys = [c.name for c in source.primary_key.columns if c.name != "minute"]
        sums = [c.name for c in source.columns if c.name not in ("minute", *keys)]
        hour = (source.c.minute - source.c.minute % 60).label("minute")
        query = select(
            hour, *(source.c[k] for k in keys), *(func.sum(source.c[v]).label(v) for v in sums)
        ).group_by(hour, *(source.c[k] for k in keys))
        target = meta.tables[hours]
        connection.execute(target.insert().from_select(["minute", *keys, *sums], query))
