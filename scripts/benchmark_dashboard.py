"""How long the dashboard's endpoints take on 1,000,000 ledger lines or 10,000,000 database rows.

    .venv/bin/python -m scripts.benchmark_dashboard [--lines 1000000] [--dir DIR]
        [--candidate] [--api-server]
    .venv/bin/python -m scripts.benchmark_dashboard --store postgresql [--rows 10000000]
        [--batch 2000] [--processes 2] [--repeat 7]

**--store postgresql** (the results database): starts its own PostgreSQL
(:mod:`scripts.results_databases`), fills a database through the real writer
(:meth:`results_db.DatabaseResults.write_rows`, so whatever the store maintains on insert is
maintained) from ``--processes`` processes, one call per run of ``--batch`` rows, the runs
spread over 35 days ending now (17 anomalies, 2 normal rows and 1 error in every 20 rows; every
4th run in shadow mode, one row in 100 a disagreement; 5 replay reports), and prints the fill
rate. Then a real ``airflow api-server`` with ``AIRFLOW_CONN_PAINTING_RESULTS_DB`` set serves the
dashboard, and every endpoint (summary and shadow for every range of ``RANGES``) is timed over
HTTP: median and max ms of ``--repeat`` calls, against the goal (≤ 150 ms, ✓/✗). It exits 1,
naming the endpoint, when the answers' totals are not the rows written.

The files store (the default):

Writes an anomaly ledger of ``--lines`` records shaped by the real writer
(:func:`records.row_record`; 10 rows a minute, 4 machines, 7 issue codes, ending now) plus a
normal ledger of a tenth of that, then times what the endpoints do with them
(:mod:`ledger_reader`, called exactly as ``plugins/painting_dashboard.py`` calls it):

* the first ``/api/summary`` after the api-server starts (it starts the first pass over the
  ledgers in the background and answers "indexing" after 1 s), and how long that pass takes,
* later ``/api/summary`` calls for each time range (the index is reused; nothing new to read),
* ``/api/summary`` after another run appended 10 lines (only those are read),
* ``/api/anomalies/recent`` for the first page and a deep page (read from the end),
* ``/api/shadow`` and ``/api/shadow/disagreements`` (the "Model checks" section); with
  ``--candidate`` every record carries a candidate's verdict (shadow mode, one row in 100 a
  disagreement), so that the index's shadow figures are part of the first pass and its memory.

Authentication and the metadata-DB query of the simulator's state are left out: their cost
does not depend on the ledgers. With ``--api-server`` the same ledgers are then served by a
real ``airflow api-server`` (throw-away AIRFLOW_HOME, simple auth manager, a free port) and the
endpoints are timed over HTTP with a token, as the page calls them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from include.painting_simulator import settings
from include.painting_simulator.dashboard.ledger_reader import LedgerSet
from include.painting_simulator.records import row_record, utc_now
from include.painting_simulator.settings import LEDGER_FILES
from scripts import local_services

ISSUES = ("PAINT-EQ-VOL-HIGH", "PAINT-EQ-VOL-LOW", "PAINT-EQ-CUR-HIGH", "PAINT-EQ-TEM-LOW",
          "PAINT-EQ-MCH", "PAINT-EQ-VOL-INVALID", "PAINT-EQ-TEM-INVALID")  # fmt: skip
PER_MINUTE = 10
GOAL_MS = 150.0  # every endpoint over HTTP, 10,000,000 rows in the store (issue 12)
DEFAULT_STORE_ROWS = 10_000_000
# What the benchmark prints when the dashboard's answers do not count the rows it wrote.
TOTALS_MISMATCH = "the dashboard's answers do not count the rows written to the results database"
BLOB = "painting-process-equipment/p.csv"
BODY = {"timeStamp": "2025-07-23T08:00:00", "thick": 24.1, "voltage": 276.0,
        "current": 70.3, "temper": 34.2, "issue": "", "isSolved": False}  # fmt: skip


def bench_result(i: int, kind: str, candidate: bool, row: int | None = None) -> dict:
    """The ``i``-th result of the benchmark's records (a row of ``p.csv``, machine ``i % 4``,
    issue ``i % 7``; with ``candidate`` a candidate's verdict, one row in 100 a disagreement)."""
    data = {**BODY, "machineId": f"PAINT-{i % 4 + 1}"}
    result = {"source": {"blob": BLOB, "row": i if row is None else row},
              "kind": kind, "original_data": data}  # fmt: skip
    if kind == "anomaly":
        result["prediction"] = {**data, "issue": ISSUES[i % len(ISSUES)]}
    elif kind == "error":
        result["error"] = 'model service failed (500): "injected fault: internal error"'
        result["status"] = 500
    if candidate:
        issue = ISSUES[(i + (i % 100 == 0)) % len(ISSUES)] if kind == "anomaly" else None
        status = 200 if issue else 204
        result["candidate"] = {"kind": kind, "issue": issue, "status": status,
                               "latency_ms": 4.2}  # fmt: skip
    return result


def write_ledgers(output_dir: str, lines: int, candidate: bool = False) -> None:
    now = datetime.now(UTC)
    first = now - timedelta(minutes=lines // PER_MINUTE)

    def records(count: int, kind: str):
        for i in range(count):
            minute = first + timedelta(minutes=i // PER_MINUTE * (lines // max(count, 1)))
            result = bench_result(i, kind, candidate)
            stamp = minute.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            run_id = f"scheduled__{minute.isoformat(timespec='minutes')}"
            yield json.dumps(row_record(result, run_id, stamp), ensure_ascii=False) + "\n"

    for kind, count in (("anomaly", lines), ("normal", lines // 10)):
        with open(os.path.join(output_dir, LEDGER_FILES[kind]), "w", encoding="utf-8") as fh:
            batch: list[str] = []
            for line in records(count, kind):
                batch.append(line)
                if len(batch) == 10_000:
                    fh.writelines(batch)
                    batch.clear()
            fh.writelines(batch)


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def timed(label: str, call, repeat: int = 1):
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    print(f"  {label:<58} {best * 1000:9.1f} ms")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument(
        "--store",
        choices=("files", "postgresql"),
        default="files",
        help="postgresql: the dashboard on a results database (over HTTP)",
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=DEFAULT_STORE_ROWS,
        help="--store postgresql: rows written (default 10,000,000)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=2_000,
        help="--store postgresql: rows per run (one write_rows call)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="--store postgresql: writer processes filling the store",
    )
    parser.add_argument(
        "--repeat", type=int, default=7, help="--store postgresql: timed calls per endpoint"
    )
    parser.add_argument("--dir", help="output dir to use (default: a temporary one, removed)")
    parser.add_argument("--candidate", action="store_true",
                        help="every record carries a candidate verdict")  # fmt: skip
    parser.add_argument("--api-server", action="store_true", help="also time them over HTTP")
    args = parser.parse_args()
    if args.store == "postgresql":
        sys.stdout.reconfigure(
            line_buffering=True
        )  # a long fill: each line as it comes, also piped
        print(f"filling the results database with {args.rows:,} rows …")
        return bench_store(args.rows, args.batch, args.processes, args.repeat)
    with tempfile.TemporaryDirectory(prefix="painting-bench-") as tmp:
        output_dir = args.dir or tmp
        os.makedirs(output_dir, exist_ok=True)
        start = time.perf_counter()
        write_ledgers(output_dir, args.lines, args.candidate)
        size = os.path.getsize(os.path.join(output_dir, LEDGER_FILES["anomaly"]))
        took = time.perf_counter() - start
        print(f"anomaly ledger: {args.lines:,} lines, {size / 1e6:.0f} MB; normal ledger: "
              f"{args.lines // 10:,} lines (written in {took:.1f} s)")  # fmt: skip

        rss_before = rss_mb()
        ledgers = LedgerSet(output_dir)
        end = int(time.time() // 60) + 1
        start = time.perf_counter()
        first = timed("first /api/summary (starts the first pass, answers 'indexing')",
                      lambda: ledgers.summary(end - 1440, end))  # fmt: skip
        print(f"    -> {first.get('indexing')}")
        while not ledgers.ready(wait=0.05):
            pass
        print(f"  {'first pass over the ledgers done after':<58} "
              f"{(time.perf_counter() - start) * 1000:9.1f} ms")  # fmt: skip
        print(f"  {'memory the index takes (growth of the resident set)':<58} "
              f"{rss_mb() - rss_before:9.1f} MB")  # fmt: skip
        for name, minutes in (("1h", 60), ("24h", 1440), ("7d", 7 * 1440), ("all", None)):
            timed(f"/api/summary?range={name}",
                  lambda m=minutes: ledgers.summary(None if m is None else end - m, end),
                  repeat=3)  # fmt: skip
        anomaly_path = os.path.join(output_dir, LEDGER_FILES["anomaly"])
        with open(anomaly_path, "rb") as fh:
            fh.seek(-20_000, os.SEEK_END)
            tail = fh.read().splitlines()[-10:]
        with open(anomaly_path, "ab") as fh:
            fh.write(b"\n".join(tail) + b"\n")
        timed("/api/summary?range=24h after a run appended 10 lines",
              lambda: ledgers.summary(end - 1440, end))  # fmt: skip
        page = timed("/api/anomalies/recent?limit=20",
                     lambda: ledgers.recent("anomaly", 20), repeat=3)  # fmt: skip
        assert page["total"] == args.lines + 10
        timed("/api/anomalies/recent?limit=20&offset=10000",
              lambda: ledgers.recent("anomaly", 20, 10_000), repeat=3)  # fmt: skip
        for name, minutes in (("24h", 1440), ("all", None)):
            timed(f"/api/shadow?range={name}",
                  lambda m=minutes: ledgers.shadow(None if m is None else end - m, end),
                  repeat=3)  # fmt: skip
        timed("/api/shadow/disagreements?limit=20", lambda: ledgers.disagreements(20), repeat=3)
        if args.api_server:
            over_http(output_dir)
    return 0


@contextlib.contextmanager
def api_server(env_overrides: dict[str, str]) -> Iterator[Callable[[str], dict]]:
    """A real ``airflow api-server`` (throw-away AIRFLOW_HOME, simple auth manager, one worker,
    a free port) with ``env_overrides``; yields ``get(path)``, a GET with a token."""
    with tempfile.TemporaryDirectory(prefix="painting-bench-airflow-") as home:
        port = local_services.free_port()
        env = {**local_services.airflow_env(Path(home), port), **env_overrides}
        airflow = [sys.executable, "-m", "airflow"]
        subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        base = f"http://127.0.0.1:{port}"
        server = local_services.ServiceProcess(
            "Airflow api-server",
            [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            port, local_services.http_ready(f"{base}/api/v2/monitor/health"),
            Path(home) / "api-server.log", env=env,
        )  # fmt: skip
        with server:
            passwords = Path(home) / "simple_auth_manager_passwords.json.generated"
            login = {"username": "admin", "password": json.loads(passwords.read_text())["admin"]}
            body, headers = json.dumps(login).encode(), {"Content-Type": "application/json"}
            request = urllib.request.Request(f"{base}/auth/token", body, headers)
            with urllib.request.urlopen(request) as answer:
                token = json.load(answer)["access_token"]

            def get(path: str) -> dict:
                request = urllib.request.Request(base + path)
                request.add_header("Authorization", f"Bearer {token}")
                with urllib.request.urlopen(request, timeout=300) as answer:
                    return json.load(answer)

            print(f"over HTTP, {base} (one api-server worker):")
            yield get


def over_http(output_dir: str) -> None:
    """Time the endpoints of a real api-server serving these ledgers (token auth, DB)."""
    with api_server({"AIRFLOW_VAR_PAINTING_OUTPUT_DIR": output_dir}) as get:
        print("  (fresh: its index is empty)")
        summary = "/painting/api/summary?range=1h"
        first = timed(f"first {summary}", lambda: get(summary))
        print(f"    -> indexing: {first['indexing']}")
        while get(summary)["indexing"] is not None:
            time.sleep(0.2)
        for name in ("1h", "24h", "7d", "all"):
            timed(f"/painting/api/summary?range={name}",
                  lambda n=name: get(f"/painting/api/summary?range={n}"), repeat=5)  # fmt: skip
        for query in ("limit=20", "limit=20&offset=10000"):
            path = f"/painting/api/anomalies/recent?{query}"
            timed(path, lambda p=path: get(p), repeat=5)


# --- the dashboard on the results database (--store postgresql) ---

# Of every 20 rows of a run: 17 anomalies, 2 normal rows, 1 error (the ledgers' shape above: the
# anomalies are most of the rows, so that the anomaly endpoints have the most to read).
KIND_CYCLE = ("anomaly",) * 17 + ("normal",) * 2 + ("error",)
SHADOW_EVERY = 4  # every 4th run in shadow mode: its rows carry a candidate's verdict
REPLAY_REPORTS = 5
DAYS = 35


@dataclass
class Filled:
    """What the filling wrote: rows per kind, rows with a candidate, replay reports."""

    kinds: Counter = field(default_factory=Counter)
    candidates: int = 0
    disagreements: int = 0
    reports: int = 0

    def add(self, other: Filled) -> None:
        self.kinds.update(other.kinds)
        self.candidates += other.candidates
        self.disagreements += other.disagreements
        self.reports += other.reports


def run_plan(rows: int, batch: int, now: datetime) -> list[tuple[str, str, int]]:
    """The runs that write the rows: (run_id, timestamp, rows), spread evenly over ``DAYS``
    days ending ``now``, ``batch`` rows each (the last one the rest)."""
    count = max(1, -(-rows // batch))
    step = timedelta(days=DAYS) / count
    plan = []
    for k in range(count):
        moment = now - timedelta(days=DAYS) + step * (k + 1)
        stamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        plan.append((f"scheduled__{stamp}", stamp, min(batch, rows - k * batch)))
    return plan


def simulator_writer(engine: Any) -> Any:
    """The store as ``painting_simulator``'s log tasks open it: the rows carry its ``dag_id``
    where the store's schema has that column (version 2), as the dashboard reads them."""
    from include.painting_simulator import results_db

    if "dag_id" in inspect.signature(results_db.DatabaseResults).parameters:
        return results_db.DatabaseResults(engine, dag_id=settings.SIMULATOR_DAG_ID)
    return results_db.DatabaseResults(engine)


def fill_slice(url: str, runs: list[tuple[int, str, str, int]]) -> Filled:
    """One filling process: write ``runs`` (index, run_id, timestamp, rows) through the real
    writer, :meth:`DatabaseResults.write_rows`, each run's rows as one call."""
    from sqlalchemy import create_engine

    from include.painting_simulator import results_db

    engine = create_engine(url, **results_db.engine_kwargs("postgresql"))
    store, filled = simulator_writer(engine), Filled()
    try:
        for index, run_id, stamp, count in runs:
            shadow = index % SHADOW_EVERY == 0
            results = [
                bench_result(index * 7 + i, KIND_CYCLE[i % len(KIND_CYCLE)], shadow, row=i)
                for i in range(count)
            ]
            # The writer stamps the records "now"; the benchmark's runs are spread over weeks,
            # so the writer's clock says when this run wrote (nothing else is changed).
            results_db.utc_now = lambda stamp=stamp: stamp
            try:
                written = store.write_rows(run_id, results)
            finally:
                results_db.utc_now = utc_now
            assert written.new == count, f"{run_id}: {written.new} of {count} rows new"
            filled.kinds.update(r["kind"] for r in results)
            if shadow:
                filled.candidates += count
                filled.disagreements += sum(
                    r["kind"] == "anomaly" and r["prediction"]["issue"] != r["candidate"]["issue"]
                    for r in results
                )
    finally:
        engine.dispose()
    return filled


def fill_store(url: str, rows: int, batch: int, processes: int) -> Filled:
    """Fill the results database at ``url`` with ``rows`` row records in ``processes`` writer
    processes, plus ``REPLAY_REPORTS`` replay reports; prints the fill rate."""
    from sqlalchemy import create_engine

    from include.painting_simulator import results_db

    now = datetime.now(UTC)
    plan = [(k, *run) for k, run in enumerate(run_plan(rows, batch, now))]
    engine = create_engine(url, **results_db.engine_kwargs("postgresql"))
    store = results_db.DatabaseResults(engine)
    filled = Filled()
    try:
        # One first write creates the schema before the writers race for it.
        start = time.perf_counter()
        filled.add(fill_slice(url, plan[:1]))
        slices = [plan[1 + p :: processes] for p in range(processes)]
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            for part in pool.starmap(fill_slice, [(url, s) for s in slices if s]):
                filled.add(part)
        took = time.perf_counter() - start
        for k in range(REPLAY_REPORTS):
            moment = now - timedelta(days=k + 1)
            filled.reports += store.write_summary(replay_summary(k, moment))
    finally:
        engine.dispose()
    total = sum(filled.kinds.values())
    print(f"results database filled through DatabaseResults.write_rows: {total:,} rows "
          f"({dict(filled.kinds)}) in {len(plan):,} runs over {DAYS} days, {processes} "
          f"process(es): {took:.1f} s, {total / took:,.0f} rows/s; "
          f"{filled.candidates:,} with a candidate ({filled.disagreements:,} disagreements), "
          f"{filled.reports} replay reports")  # fmt: skip
    return filled


def replay_summary(k: int, moment: datetime) -> dict:
    """A replay report as ``summarize`` writes it (the fields the dashboard shows)."""
    stamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "timestamp": stamp, "run_id": f"manual__replay-{k}", "dag_id": settings.REPLAY_DAG_ID,
        "model_service": settings.MODEL_CONN_ID, "rows": 10_000,
        "throughput_rows_per_second": 480.0 + k, "latency_ms": {"p95": 12.5, "p99": 20.1},
        "passed": k % 2 == 0, "thresholds": [], "candidate": None, "expected": None,
    }  # fmt: skip


def dashboard_ranges() -> list[str]:
    """The range names the dashboard offers (``RANGES`` of plugins/painting_dashboard.py)."""
    path = local_services.REPO / "plugins" / "painting_dashboard.py"
    spec = importlib.util.spec_from_file_location("painting_dashboard_ranges", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.RANGES)


def timed_http(get: Callable[[str], dict], path: str, repeat: int) -> tuple[dict, float, float]:
    """Median and max ms of ``repeat`` GETs of ``path`` (after one untimed warm-up call)."""
    answer, took = get(path), []
    for _ in range(repeat):
        start = time.perf_counter()
        answer = get(path)
        took.append((time.perf_counter() - start) * 1000)
    return answer, statistics.median(took), max(took)


def totals_mismatch(filled: Filled, answers: dict[str, dict]) -> list[str]:
    """Where the dashboard's answers disagree with what was written (empty: all agree)."""
    wrong = []
    counts = (answers["summary"].get("counts") or {}) if answers["summary"] else {}
    for kind in ("anomaly", "normal", "error"):
        if counts.get(kind) != filled.kinds[kind]:
            wrong.append(f"/api/summary?range=all counts.{kind} = {counts.get(kind)}, "
                         f"the store holds {filled.kinds[kind]:,}")  # fmt: skip
    recent = answers["recent"].get("total")
    if recent != filled.kinds["anomaly"]:
        wrong.append(f"/api/anomalies/recent total = {recent}, "
                     f"the store holds {filled.kinds['anomaly']:,} anomalies")  # fmt: skip
    reports = answers["replays"].get("total")
    if reports != filled.reports:
        wrong.append(f"/api/replays/recent total = {reports}, the store holds {filled.reports}")
    return wrong


def bench_store(rows: int, batch: int, processes: int, repeat: int) -> int:
    """``--store postgresql``: a PostgreSQL started here, filled, served by an api-server."""
    from scripts.results_databases import ENV, start_postgres

    with tempfile.TemporaryDirectory(prefix="painting-bench-db-") as tmp:
        server = start_postgres(local_services.free_port(), Path(tmp) / "postgres.log")
        try:
            database = "painting_bench"
            server.create_database(database)
            url = (f"postgresql+psycopg://airflow:{server.password}@127.0.0.1:{server.port}/"
                   f"{database}")  # fmt: skip
            filled = fill_store(url, rows, batch, processes)
            ranges = dashboard_ranges()
            paths = [
                *(f"/painting/api/summary?range={name}" for name in ranges),
                *(f"/painting/api/shadow?range={name}" for name in ranges),
                "/painting/api/shadow/disagreements?limit=20",
                "/painting/api/anomalies/recent?limit=20",
                "/painting/api/anomalies/recent?limit=20&offset=10000",
                "/painting/api/replays/recent?limit=10",
            ]
            overrides = {ENV: server.connection_uri(database)}
            with api_server(overrides) as get:
                print(f"  {'endpoint':<58} {'median':>9} {'max':>9}  goal ≤ {GOAL_MS:.0f} ms "
                      f"({repeat} calls each)")  # fmt: skip
                answers, slow = {}, 0
                for path in paths:
                    answer, median, worst = timed_http(get, path, repeat)
                    answers[path] = answer
                    ok = worst <= GOAL_MS
                    slow += not ok
                    print(f"  {path:<58} {median:6.1f} ms {worst:6.1f} ms  {'✓' if ok else '✗'}")
        finally:
            server.stop()
    print(f"{len(paths) - slow} of {len(paths)} endpoints within {GOAL_MS:.0f} ms "
          f"(max of {repeat} calls)")  # fmt: skip
    wrong = totals_mismatch(filled, {
        "summary": answers["/painting/api/summary?range=all"],
        "recent": answers["/painting/api/anomalies/recent?limit=20"],
        "replays": answers["/painting/api/replays/recent?limit=10"],
    })  # fmt: skip
    if wrong:
        print(f"error: {TOTALS_MISMATCH}:", *wrong, sep="\n  ", file=sys.stderr)
        return 1
    print("the answers' totals are the rows written ✓")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
