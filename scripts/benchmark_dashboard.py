"""How long the dashboard's endpoints take on a ledger of 1,000,000 lines (prints, asserts nothing).

    .venv/bin/python -m scripts.benchmark_dashboard [--lines 1000000] [--dir DIR]
        [--candidate] [--api-server]

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
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from include.painting_simulator.dashboard.ledger_reader import LedgerSet
from include.painting_simulator.records import row_record
from include.painting_simulator.settings import LEDGER_FILES
from scripts import local_services

ISSUES = ("PAINT-EQ-VOL-HIGH", "PAINT-EQ-VOL-LOW", "PAINT-EQ-CUR-HIGH", "PAINT-EQ-TEM-LOW",
          "PAINT-EQ-MCH", "PAINT-EQ-VOL-INVALID", "PAINT-EQ-TEM-INVALID")  # fmt: skip
PER_MINUTE = 10


def write_ledgers(output_dir: str, lines: int, candidate: bool = False) -> None:
    now = datetime.now(UTC)
    first = now - timedelta(minutes=lines // PER_MINUTE)
    body = {"timeStamp": "2025-07-23T08:00:00", "thick": 24.1, "voltage": 276.0,
            "current": 70.3, "temper": 34.2, "issue": "", "isSolved": False}  # fmt: skip

    def records(count: int, kind: str):
        for i in range(count):
            minute = first + timedelta(minutes=i // PER_MINUTE * (lines // max(count, 1)))
            data = {**body, "machineId": f"PAINT-{i % 4 + 1}"}
            result = {"source": {"blob": "painting-process-equipment/p.csv", "row": i},
                      "kind": kind, "original_data": data}  # fmt: skip
            if kind == "anomaly":
                result["prediction"] = {**data, "issue": ISSUES[i % len(ISSUES)]}
            if candidate:
                issue = ISSUES[(i + (i % 100 == 0)) % len(ISSUES)] if kind == "anomaly" else None
                status = 200 if issue else 204
                result["candidate"] = {"kind": kind, "issue": issue, "status": status,
                                       "latency_ms": 4.2}  # fmt: skip
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--dir", help="output dir to use (default: a temporary one, removed)")
    parser.add_argument("--candidate", action="store_true",
                        help="every record carries a candidate verdict")  # fmt: skip
    parser.add_argument("--api-server", action="store_true", help="also time them over HTTP")
    args = parser.parse_args()
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


def over_http(output_dir: str) -> None:
    """Time the endpoints of a real api-server serving these ledgers (token auth, DB)."""
    with tempfile.TemporaryDirectory(prefix="painting-bench-airflow-") as home:
        port = local_services.free_port()
        env = local_services.airflow_env(Path(home), port)
        env["AIRFLOW_VAR_PAINTING_OUTPUT_DIR"] = output_dir
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
                with urllib.request.urlopen(request) as answer:
                    return json.load(answer)

            print(f"over HTTP, {base} (one api-server worker, fresh: its index is empty):")
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


if __name__ == "__main__":
    main()
