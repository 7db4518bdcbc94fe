"""``make bench``: the performance figures of the package, each a ratio measured side by side.

Absolute times on shared machines are noise; ratios of things measured in the same run are not.
Starts its own Azurite and reference model service on free ports (stopped by PID at the end),
generates the sources with ``include.sample_data.generator`` and prints, each with its two sides
and the spread of its rounds:

1. DAG parse: import time of what each DAG file adds: the simulator and replay DAG files ÷ an
   empty ``airflow.sdk`` DAG file; each check DAG file ÷ an empty DAG file importing the same
   provider sensor class (fresh interpreter per measurement, interleaved, median).  goal ≤ 1.1
2. Tick cost: a warm ``pull_window`` (list + validate + read a 10-row window, through the row
   cache) on the large source ÷ on the small source.                                goal ≤ 1.1
   The cold first tick on the large source (download + index + build the cache) ÷ the download
   of the same blob + ``pandas.read_csv(dtype=str)`` of its bytes, alternated.       goal ≤ 1.5
3. Replay throughput ÷ ``wrk`` throughput against the same model service (``--workers N``)
   at the same concurrency, wrk POSTing the bodies of the rows the replay sends (from a Lua
   script, in turn) just before and just after each replay, alternated rounds (a round's ratio:
   the replay ÷ the mean of its two wrk runs; the figure: the median of the rounds' ratios,
   each round with the machine's CPU steal over it), once per results store the replay writes
   through (also shown: ÷ wrk POSTing one valid normal row): the JSON-lines files  goal ≥ 0.9
   and the results database, PostgreSQL (a server of its own, started here) and SQLite, a fresh
   database each round, opened as the DAG opens it (connection ``painting_results_db``).
                                                                              goal ≥ 0.8
   With it, what limits the replay here: the replay's CPU per row (its own process, and the
   PostgreSQL server's), the replay's HTTP client alone (POSTing wrk's one body and nothing
   else) ÷ wrk POSTing that body, in the same rounds, and this machine's capacity: the share
   of a core each of two CPU-bound processes gets when both run at once.
4. Replay memory: peak RSS of a replay (the shard's process + its sending process), the large
   range ÷ the small range.                                                         goal ≤ 1.2

``python -m scripts.bench --smoke`` runs everything on tiny sizes in well under a minute (the
test suite runs it); ``python -m scripts.bench --help`` lists the sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scripts import local_services, results_databases

REPO = local_services.REPO
CONTAINER = "bench"
CONN_BLOB, CONN_MODEL = "painting_blob_storage", "painting_model_service"
EMPTY_DAG = '''"""An empty DAG: the floor of any DAG file's import time."""
import pendulum

from airflow.sdk import dag


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
def empty() -> None:
    pass


empty()
'''
# What a check DAG file is measured against: the empty DAG file plus the provider sensor class
# its sensor subclasses (include/painting_simulator/checks/*_sensor.py): the provider's own
# import is the price of using its sensor, the DAG file must add nothing to it.
SENSOR_FLOORS = {
    "check_azure_storage_connection.py": ("airflow.providers.microsoft.azure.sensors.wasb",
                                          "WasbPrefixSensor"),
    "check_model_service_connection.py": ("airflow.providers.http.sensors.http", "HttpSensor"),
}  # fmt: skip
IMPORT_PROBE = (
    "import importlib.util, sys, time\n"
    "t = time.perf_counter()\n"
    "spec = importlib.util.spec_from_file_location('probe', sys.argv[1])\n"
    "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
    "print(time.perf_counter() - t)\n"
)
WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{body}'
"""
# wrk POSTing the replay's own request bodies (a file of one JSON body a line), in turn.
WRK_ROWS_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local requests, last = {{}}, 0
for body in io.lines({bodies}) do
  requests[#requests + 1] = wrk.format(nil, nil, nil, body)
end
request = function()
  last = last % #requests + 1
  return requests[last]
end
"""
VALID_BODY = {"machineId": "PAINT-1", "timeStamp": "2025-07-23T08:00:00", "thick": 19.89,
              "voltage": 258.4, "current": 68.9, "temper": 34.4, "issue": "",
              "isSolved": False}  # fmt: skip

# The results stores the replay figure is measured with, and the goal of each.
STORE_GOALS = {"files": 0.9, "postgresql": 0.8, "sqlite": 0.8}
BARE = "bare client"  # the replay's HTTP client alone (figure 3's reference line)
CPU_FIELDS = ("user", "system", "children_user", "children_system")

SIZES = {
    "full": {"small": 1_000, "large": 1_000_000, "replay": 20_000, "memory_base": 10_000,
             "memory_large": 1_000_000, "parse_reps": 15, "tick_reps": 30, "wrk_seconds": 5,
             "rounds": 5, "cold_rounds": 3, "spin_seconds": 3},
    "smoke": {"small": 100, "large": 2_000, "replay": 300, "memory_base": 100,
              "memory_large": 1_000, "parse_reps": 1, "tick_reps": 3, "wrk_seconds": 1,
              "rounds": 1, "cold_rounds": 1, "spin_seconds": 1},
}  # fmt: skip


def env_for(workdir: Path, azurite_cs: str | None = None, model_port: int | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "AIRFLOW_HOME": str(workdir / "airflow")}
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env["PAINTING_CACHE_DIR"] = str(workdir / "row-cache")
    if azurite_cs:
        env["AIRFLOW_CONN_PAINTING_BLOB_STORAGE"] = json.dumps(
            local_services.wasb_connection(azurite_cs)
        )
    if model_port:
        env["AIRFLOW_CONN_PAINTING_MODEL_SERVICE"] = json.dumps(
            local_services.http_connection(model_port)
        )
    return env


# ---------------------------------------------------------------------------------------------
# 1. DAG parse


def spread(values: list[float]) -> str:
    """``min–max`` of a figure's rounds."""
    return f"{min(values):.2f}–{max(values):.2f}"


def bench_parse(workdir: Path, reps: int) -> list[tuple[str, str, list[float], list[float]]]:
    """``(DAG file, its floor, its import times, the floor's)`` per DAG file."""
    floors = {"empty airflow.sdk DAG": workdir / "empty_dag.py"}
    floors["empty airflow.sdk DAG"].write_text(EMPTY_DAG)
    floor_of: dict[str, str] = {}
    for dag_file, (module, sensor_class) in SENSOR_FLOORS.items():
        name = f"empty DAG + {sensor_class}"
        path = workdir / f"empty_dag_{len(floors)}.py"
        sensor = f"from {module} import {sensor_class}  # noqa: F401\n"
        path.write_text(EMPTY_DAG.replace("from airflow.sdk import dag\n",
                                          "from airflow.sdk import dag\n" + sensor))  # fmt: skip
        floors[name], floor_of[dag_file] = path, name
    dags = sorted((REPO / "dags").glob("*.py"))
    files = [*floors.values(), *dags]
    env = env_for(workdir)
    times: dict[Path, list[float]] = {f: [] for f in files}
    for _ in range(reps):  # interleaved, so a busy moment hits every file alike
        for path in files:
            out = subprocess.run(
                [sys.executable, "-c", IMPORT_PROBE, str(path)],
                capture_output=True, text=True, check=True, env=env, cwd=REPO,
            ).stdout  # fmt: skip
            times[path].append(float(out.strip().splitlines()[-1]))
    result = []
    for path in dags:
        floor = floor_of.get(path.name, "empty airflow.sdk DAG")
        result.append((path.name, floor, times[path], times[floors[floor]]))
    return result


# ---------------------------------------------------------------------------------------------
# 2. Tick cost


def source_csv(workdir: Path, rows: int) -> Path:
    from include.sample_data import generator

    path = workdir / "sources" / f"painting_{rows}.csv"
    if not path.exists():
        generator.write_csv(path.with_suffix(".tmp"), n_rows=rows)
        path.with_suffix(".tmp").rename(path)
    return path


def prefix_of(rows: int) -> str:
    return f"bench-{rows}/"


def tick(prefix: str, stored: dict[str, Any] | None) -> float:
    """One warm-or-cold pull_window: what the DAG task does, timed."""
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    from include.painting_simulator.blob_rows import BlobRows
    from include.painting_simulator.row_cache import RowCache, default_cache_dir
    from include.painting_simulator.window import read_window

    began = time.perf_counter()
    reader = BlobRows(WasbHook(wasb_conn_id=CONN_BLOB), CONTAINER, CONN_BLOB,
                      RowCache(default_cache_dir()))  # fmt: skip
    window = read_window(reader, prefix, 10, start_row=None, stored=stored, run_id="bench")
    assert len(window["items"]) == 10
    return time.perf_counter() - began


def middle_of(n: int) -> dict[str, Any]:
    """The stored position of a tick in the middle of the ``n``-row source."""
    return {"blob": prefix_of(n) + "painting.csv", "row": n // 2}


def bench_warm(sizes: list[int], reps: int) -> dict[int, list[float]]:
    for n in sizes:
        tick(prefix_of(n), middle_of(n))  # builds the cache if it is not there
    warm: dict[int, list[float]] = {n: [] for n in sizes}
    for _ in range(reps):  # interleaved
        for n in sizes:
            warm[n].append(tick(prefix_of(n), middle_of(n)))
    return warm


def download_and_read_csv(prefix: str) -> float:
    """The cold tick's yardstick: download the blob (as the tick does) and
    ``pandas.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)`` its bytes."""
    import pandas as pd

    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    from include.painting_simulator import blob_storage

    began = time.perf_counter()
    downloaded = blob_storage.download_blob(
        WasbHook(wasb_conn_id=CONN_BLOB), CONTAINER, prefix + "painting.csv"
    )
    assert downloaded is not None
    frame = pd.read_csv(io.BytesIO(downloaded[0]), dtype=str, keep_default_na=False)
    assert len(frame)
    return time.perf_counter() - began


def bench_cold(n: int, rounds: int, cache_dir: Path) -> tuple[list[float], list[float]]:
    """``rounds`` alternated pairs: a cold first tick (the cache wiped) and the yardstick."""
    cold, reference = [], []
    for _ in range(rounds):
        shutil.rmtree(cache_dir, ignore_errors=True)
        cold.append(tick(prefix_of(n), middle_of(n)))
        reference.append(download_and_read_csv(prefix_of(n)))
    return cold, reference


# ---------------------------------------------------------------------------------------------
# 3. and 4. Replay


def replay_rows(
    rows: int, concurrency: int, output_dir: str, prefix: str, results: Any = None
) -> dict[str, Any]:
    """Replay rows 0..rows-1 of ``prefix`` as the DAG's shard task does; return its summary.
    Outcomes and progress go to ``results`` (a :class:`results.ResultsWriter`; default: the
    JSON-lines files in ``output_dir``)."""
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    from include.painting_simulator.blob_rows import BlobRows
    from include.painting_simulator.replay import sender, shard
    from include.painting_simulator.row_cache import RowCache, default_cache_dir

    reader = BlobRows(WasbHook(wasb_conn_id=CONN_BLOB), CONTAINER, CONN_BLOB,
                      RowCache(default_cache_dir()))  # fmt: skip
    endpoint = sender.endpoint_from_hook(HttpHook(http_conn_id=CONN_MODEL), 30, 3)
    spec = {"shard": 0, "shards": 1, "start_row": 0, "rows": rows}
    run_id = f"bench__{time.time_ns()}"
    return shard.run_shard(reader, prefix, spec, endpoint, concurrency=concurrency, rate=0,
                           output_dir=output_dir, run_id=run_id, results=results)  # fmt: skip


@contextlib.contextmanager
def round_store(store: str, workdir: Path, postgres: Any) -> Any:
    """``(output dir, results writer)`` of one replay round, fresh: the JSON-lines files in a
    new directory, or the results database of a new SQLite file or a new database on the
    bench's PostgreSQL server, its engine made as the DAG makes it (from the connection
    ``painting_results_db``, :func:`airflow_runtime.results_database`)."""
    from include.painting_simulator import airflow_runtime
    from include.painting_simulator.results import open_results

    out_dir = tempfile.mkdtemp(dir=workdir, prefix="replay-out-")
    engine = None
    try:
        if store == "sqlite":
            connection = results_databases.sqlite_connection(Path(out_dir) / "results.db")
        elif store == "postgresql":
            database = f"bench_{time.time_ns()}"
            postgres.create_database(database)
            connection = results_databases.postgres_connection(postgres, database)
        if store != "files":
            os.environ[results_databases.ENV] = json.dumps(connection)
            engine = airflow_runtime.results_database(kept=True)  # as the shard task
        yield out_dir, open_results(out_dir, database=engine)
    finally:
        os.environ.pop(results_databases.ENV, None)
        if engine is not None:
            engine.dispose()
        shutil.rmtree(out_dir, ignore_errors=True)


def records_in(results: Any, out_dir: str) -> int:
    """How many row records a round's store holds (the replay wrote through it)."""
    from include.painting_simulator import settings

    if hasattr(results, "lines"):
        return sum(1 for _ in results.lines(settings.RESULTS_TABLE))
    ledgers = [Path(out_dir) / name for name in settings.LEDGER_FILES.values()]
    return sum(len(path.read_bytes().splitlines()) for path in ledgers if path.exists())


def bare_client(url: str, concurrency: int, requests: int) -> tuple[float, float]:
    """``(requests/s, CPU seconds)`` of the replay's HTTP client (:mod:`replay.http1`, on the
    replay's event loop) POSTing wrk's one body ``requests`` times at ``concurrency`` and doing
    nothing else: the ceiling of any replay on this machine, which also reads, maps and records
    every row."""
    import asyncio

    from include.painting_simulator.replay import http1, sender

    payload = json.dumps(VALID_BODY).encode()

    async def post_all() -> tuple[float, float]:
        todo = iter(range(requests))
        async with http1.Client(url, limit=concurrency, timeout=30) as client:

            async def worker() -> None:
                for _ in todo:
                    if (await client.post(payload)).status >= 300:
                        raise RuntimeError(f"{url} refused wrk's body")

            began, cpu = time.monotonic(), os.times()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return requests / (time.monotonic() - began), cpu_seconds_since(cpu)

    return sender.run_event_loop(post_all())


def cpu_seconds_since(before: os.times_result) -> float:
    """CPU seconds (user + system) since ``before`` (``os.times()``) of this process and of its
    children that ended meanwhile (a replay's sending process, :mod:`replay.send_process`)."""
    now = os.times()
    return sum(getattr(now, f) - getattr(before, f) for f in CPU_FIELDS)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, its live children and its children that have exited (a
    PostgreSQL server: the postmaster and its backends)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            if (fields := local_services.proc_stat(current)) is None:
                continue  # ended meanwhile: its CPU is now its parent's cutime
            with open(f"/proc/{current}/task/{current}/children", encoding="ascii") as fh:
                todo += [int(child) for child in fh.read().split()]
        except (FileNotFoundError, ProcessLookupError):  # ended before the open, or the read
            continue
        total += sum(int(value) for value in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def _spin(seconds: float, out: Any) -> None:
    began, cpu, n = time.monotonic(), time.process_time(), 0
    while time.monotonic() - began < seconds:
        n += 1
    out.put((time.process_time() - cpu) / (time.monotonic() - began))


def core_shares(seconds: float) -> tuple[float, list[float]]:
    """``(the share of a core one CPU-bound process gets alone, the shares of two at once)``:
    on a machine whose two cores are its own, about 1.0 each."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    out = context.Queue()

    def run(n: int) -> list[float]:
        processes = [context.Process(target=_spin, args=(seconds, out)) for _ in range(n)]
        for process in processes:
            process.start()
        shares = [out.get(timeout=seconds + 60) for _ in processes]
        for process in processes:
            process.join()
        return shares

    return run(1)[0], run(2)


def wrk(url: str, concurrency: int, seconds: int, workdir: Path, bodies: Path | None = None
        ) -> float:  # fmt: skip
    """wrk's requests/s POSTing ``VALID_BODY``, or each body of the file ``bodies`` in turn."""
    script = workdir / "post.lua"
    if bodies is None:
        script.write_text(WRK_SCRIPT.format(body=json.dumps(VALID_BODY)))
    else:
        script.write_text(WRK_ROWS_SCRIPT.format(bodies=json.dumps(str(bodies))))
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{out}")
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk got error answers (the body is not valid?):\n{out}")
    return float(match.group(1))


def replay_bodies(rows: int, prefix: str, workdir: Path) -> Path:
    """A file of the request bodies a replay of rows 0..rows-1 of ``prefix`` POSTs, one a line,
    read and mapped as the replay reads and maps them (rows that cannot be mapped are not sent)."""
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    from include.painting_simulator.blob_rows import BlobRows
    from include.painting_simulator.replay import plan, sender
    from include.painting_simulator.row_cache import RowCache, default_cache_dir

    reader = BlobRows(WasbHook(wasb_conn_id=CONN_BLOB), CONTAINER, CONN_BLOB,
                      RowCache(default_cache_dir()))  # fmt: skip
    path = workdir / f"replay-bodies-{rows}.jsonl"
    with open(path, "wb") as out:
        for _, items in plan.iter_chunks(reader, prefix, 0, rows):
            out.writelines(payload + b"\n" for payload in sender.payloads_of(items)[1] if payload)
    return path


def peak_rss_of_replay(rows: int, concurrency: int, workdir: Path, env: dict, prefix: str) -> int:
    """Peak RSS (bytes) of a fresh process replaying ``rows`` rows."""
    out_dir = tempfile.mkdtemp(dir=workdir, prefix="replay-out-")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "scripts.bench", "--replay-child", str(rows),
             "--concurrency", str(concurrency), "--child-prefix", prefix, "--child-out", out_dir],
            capture_output=True, text=True, check=True, env=env, cwd=REPO,
        ).stdout  # fmt: skip
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return int(json.loads(out.strip().splitlines()[-1])["max_rss_bytes"])


def peak_rss(pid: int | str) -> int:
    """A process's peak RSS in bytes (VmHWM, not ru_maxrss: Linux carries ru_maxrss over from
    the parent across fork + exec); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return 0


def sending_process(pid: int) -> bool:
    """Whether ``pid`` runs :mod:`replay.send_process` (it has been exec'd)."""
    try:
        return b"replay.send_process" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False


def replay_child(args: argparse.Namespace) -> int:
    """Replay in this fresh process; print its rows and the peak RSS of this process plus that
    of its sending process (:mod:`replay.send_process`), watched while it lives."""
    import threading

    peaks: dict[int, int] = {}
    done = threading.Event()

    def watch() -> None:
        children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
        while not done.wait(0.05):
            for child in map(int, children.read_text(encoding="ascii").split()):
                if sending_process(child):  # not a fork still holding this process's pages
                    peaks[child] = max(peaks.get(child, 0), peak_rss(child))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    summary = replay_rows(args.replay_child, args.concurrency, args.child_out, args.child_prefix)
    done.set()
    watcher.join()
    rss = peak_rss("self") + max(peaks.values(), default=0)
    print(json.dumps({"rows": summary["rows"], "max_rss_bytes": rss}))
    return 0


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves the bench runs")
    parser.add_argument("--concurrency", type=int, default=16, help="replay and wrk connections")
    # One uvicorn worker on a 2-core machine: one core for the service, one for the client, so
    # the service is the limit. With two, the service takes both cores and the client (a Python
    # process like the Airflow task) starves: that measures the machine, not the replay.
    parser.add_argument(
        "--model-workers", type=int, default=1, help="uvicorn workers of the model service"
    )
    parser.add_argument("--figures", default="1,2,3,4", help="which figures (default: all)")
    parser.add_argument(
        "--stores",
        default=",".join(STORE_GOALS),
        help=f"results stores of figure 3 (default: {','.join(STORE_GOALS)})",
    )
    parser.add_argument("--workdir", default=None, help="sources and caches (default .local/bench)")
    for name in SIZES["full"]:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    parser.add_argument("--replay-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-prefix", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.stores = [store.strip() for store in args.stores.split(",") if store.strip()]
    if unknown := sorted(set(args.stores) - set(STORE_GOALS)):
        parser.error(
            f"--stores: unknown {', '.join(unknown)}; choose from {', '.join(STORE_GOALS)}"
        )
    logging.getLogger("painting_simulator").setLevel(logging.WARNING)  # figures, not task logs
    if args.replay_child is not None:
        return replay_child(args)

    size = dict(SIZES["smoke" if args.smoke else "full"])
    size.update({k: getattr(args, k) for k in size if getattr(args, k) is not None})
    workdir = Path(args.workdir or (tempfile.mkdtemp(prefix="painting-bench-") if args.smoke
                                    else REPO / ".local" / "bench")).resolve()  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"painting simulator benchmarks ({'smoke' if args.smoke else 'full'}), work dir {workdir}"
    )
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; ratios, not times")

    figures = {int(f) for f in args.figures.split(",")}
    if 1 in figures:
        show_parse(workdir, size)
    if figures & {2, 3, 4}:
        with_services(args, size, workdir, figures)
    if args.smoke:
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)
    return 0


def show_parse(workdir: Path, size: dict[str, int]) -> None:
    reps = size["parse_reps"]
    parse = bench_parse(workdir, reps)
    print(f"\n1. DAG parse: import time of each DAG file ÷ its floor (median of {reps} fresh "
          "interpreters each, interleaved; spread: the ratio per round; goal ≤ 1.1)")  # fmt: skip
    for name, floor, seconds, floors in parse:
        mine, base = statistics.median(seconds), statistics.median(floors)
        rounds = [a / b for a, b in zip(seconds, floors, strict=True)]
        print(f"   {name:<34} ratio {mine / base:5.2f}   ({mine * 1000:,.0f} ms vs "
              f"{base * 1000:,.0f} ms, {floor}; rounds {spread(rounds)})")  # fmt: skip


def with_services(
    args: argparse.Namespace, size: dict[str, int], workdir: Path, figures: set[int]
) -> None:
    logs = workdir / "logs"
    az_port, model_port = local_services.free_port(), local_services.free_port()
    azurite = local_services.azurite(workdir / "azurite", az_port, logs / "azurite.log")
    # No access log: a line per request would be part of what the throughput figures measure.
    model_args = ["--workers", str(args.model_workers), "--no-access-log"]
    model = local_services.model_service(
        model_port, logs / "model-service.log", extra_args=model_args
    )
    with azurite, model:
        cs = local_services.azurite_connection_string(az_port)
        env = env_for(workdir, cs, model_port)
        os.environ.update(env)
        small, large = size["small"], size["large"]
        for n in {small, large, size["memory_base"], size["memory_large"]}:
            local_services.upload_blobs(
                cs, CONTAINER, {prefix_of(n) + "painting.csv": source_csv(workdir, n).read_bytes()}
            )
        if 2 in figures:
            show_tick(size, workdir / "row-cache")
        if 3 in figures:
            tick(prefix_of(large), None)  # the replay reads a warm cache, as in a real shard
            show_throughput(args, size, workdir, model_port)
        if 4 in figures:
            show_memory(args, size, workdir, env)


def show_tick(size: dict[str, int], cache_dir: Path) -> None:
    small, large, reps = size["small"], size["large"], size["tick_reps"]
    rounds = size["cold_rounds"]
    cold, reference = bench_cold(large, rounds, cache_dir)
    warm = bench_warm([small, large], reps)
    print(f"\n2. Tick cost: warm pull_window (list + validate + read 10 rows), {large:,} "
          f"rows ÷ {small:,} rows (median of {reps}, interleaved; goal ≤ 1.1)")  # fmt: skip
    big, base = statistics.median(warm[large]), statistics.median(warm[small])
    rounds_warm = [a / b for a, b in zip(warm[large], warm[small], strict=True)]
    print(f"   warm ratio {big / base:5.2f}   ({big * 1000:.1f} ms vs {base * 1000:.1f} ms; "
          f"rounds {spread(rounds_warm)})")  # fmt: skip
    print(f"   cold first tick on {large:,} rows (download + index + build the cache) ÷ download "
          f"+ pandas.read_csv(dtype=str) of the same blob (median of {rounds} alternated rounds; "
          "goal ≤ 1.5)")  # fmt: skip
    mine, yardstick = statistics.median(cold), statistics.median(reference)
    rounds_cold = [a / b for a, b in zip(cold, reference, strict=True)]
    print(f"   cold ratio {mine / yardstick:5.2f}   ({mine:.2f} s vs {yardstick:.2f} s; "
          f"rounds {spread(rounds_cold)})")  # fmt: skip


@dataclasses.dataclass
class Rounds:
    """One line of figure 3, round by round: the replay's rate (or the bare client's), the wrk
    rates just before and just after it, the CPU per row, and the machine's CPU steal over the
    round."""

    replay: list[float] = dataclasses.field(default_factory=list)
    wrk: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    cpu: list[float] = dataclasses.field(default_factory=list)  # µs a row, the replay's processes
    steal: list[float] = dataclasses.field(default_factory=list)  # share of the CPUs' time

    def ratios(self) -> list[float]:
        """Each round's replay ÷ the mean of the wrk runs around it: a slower or faster machine
        in the middle of a round moves both sides."""
        return [rate / ((a + b) / 2) for rate, (a, b) in zip(self.replay, self.wrk, strict=True)]

    def ratio(self) -> float:
        """The figure: the median of the rounds' ratios (a round whose machine changed speed
        between its sides does not carry the figure)."""
        return statistics.median(self.ratios())

    def reference(self) -> float:
        """wrk's median rate, a round's the mean of its two runs."""
        return statistics.median((a + b) / 2 for a, b in self.wrk)

    def rates(self, unit: str = "rows/s") -> str:
        """The ``rounds:`` line: each round's replay rate (in ``unit``), its wrk rates
        (before/after) and the CPU steal over it."""
        return (", ".join(f"{rate:,.0f}" for rate in self.replay) + f" {unit}; wrk before/after "
                + ", ".join(f"{a:,.0f}/{b:,.0f}" for a, b in self.wrk) + " req/s; CPU steal "
                + ", ".join(f"{share:.1%}" for share in self.steal))  # fmt: skip


def cpu_jiffies() -> tuple[int, int]:
    """``(steal, all)``: the machine's CPU time so far in clock ticks, all of it and the part the
    hypervisor gave this virtual machine's CPUs to other guests (``/proc/stat``'s first line)."""
    with open("/proc/stat", encoding="ascii") as fh:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, fh.readline().split()[1:9])
    return steal, user + nice + system + idle + iowait + irq + softirq + steal


def measure_round(
    line: Rounds, wrk_run: Callable[[], float], replay_run: Callable[[], tuple[float, float]]
) -> None:
    """One round of ``line``: wrk (``wrk_run()`` → req/s), the replay (``replay_run()`` →
    ``(rows/s, µs CPU a row)``), wrk again; and the CPU steal over the three."""
    steal, total = cpu_jiffies()
    before = wrk_run()
    rate, cpu_us = replay_run()
    after = wrk_run()
    steal_now, total_now = cpu_jiffies()
    line.replay.append(rate)
    line.wrk.append((before, after))
    line.cpu.append(cpu_us)
    line.steal.append((steal_now - steal) / max(total_now - total, 1))


def show_throughput(
    args: argparse.Namespace, size: dict[str, int], workdir: Path, model_port: int
) -> None:
    url = f"http://127.0.0.1:{model_port}/predict/"
    c, rows, seconds = args.concurrency, size["replay"], size["wrk_seconds"]
    stores = {store: STORE_GOALS[store] for store in args.stores}
    lines = {store: Rounds() for store in [*stores, BARE]}
    server_cpu: list[float] = []  # the PostgreSQL server's µs per row
    bodies = replay_bodies(rows, prefix_of(size["large"]), workdir)
    postgres = None
    if "postgresql" in stores:
        postgres = results_databases.start_postgres(
            local_services.free_port(), workdir / "logs" / "postgres.log"
        )

    def bare() -> tuple[float, float]:
        rate, cpu_seconds = bare_client(url, c, rows)
        return rate, cpu_seconds / rows * 1e6

    def replay_into(store: str) -> tuple[float, float]:
        with round_store(store, workdir, postgres) as (out_dir, results):
            mine = os.times()
            theirs = tree_cpu_seconds(postgres.pid) if store == "postgresql" else 0.0
            summary = replay_rows(rows, c, out_dir, prefix_of(size["large"]), results)
            cpu_us = cpu_seconds_since(mine) / rows * 1e6
            if store == "postgresql":
                server_cpu.append((tree_cpu_seconds(postgres.pid) - theirs) / rows * 1e6)
            written = records_in(results, out_dir)
        if summary["rows"] != rows or written != rows:
            raise RuntimeError(f"the replay into the {store} store recorded {summary['rows']:,} "
                               f"rows, wrote {written:,}, not {rows:,}")  # fmt: skip
        return summary["throughput_rows_per_second"], cpu_us

    try:
        for _ in range(size["rounds"]):  # alternated, so a busy moment hits both sides alike
            measure_round(lines[BARE], lambda: wrk(url, c, seconds, workdir), bare)
            for store in stores:
                measure_round(lines[store], lambda: wrk(url, c, seconds, workdir, bodies),
                              lambda store=store: replay_into(store))  # fmt: skip
    finally:
        if postgres is not None:
            postgres.stop()
    one_body = lines[BARE].reference()
    print(f"\n3. Replay throughput ÷ wrk per results store, concurrency {c}, model service "
          f"--workers {args.model_workers} (medians of {size['rounds']} alternated rounds; a "
          f"round: wrk POSTing the replay's {rows:,} rows' bodies for {seconds} s, those rows "
          "replayed into a fresh store, progress included, wrk again; its ratio: the replay ÷ "
          "the mean of its two wrk runs)")  # fmt: skip
    for store, goal in stores.items():
        line = lines[store]
        ours, reference = statistics.median(line.replay), line.reference()
        print(f"   {store:<10} ratio {line.ratio():5.2f}   (replay {ours:,.0f} rows/s; wrk "
              f"{reference:,.0f} req/s on the same rows; goal ≥ {goal}; "
              f"rounds {spread(line.ratios())})")  # fmt: skip
        print(f"              rounds: replay {line.rates()}")
        server = (f" + the PostgreSQL server's {statistics.median(server_cpu):,.0f} µs"
                  if store == "postgresql" else "")  # fmt: skip
        print("              CPU per row: the replay's processes "
              f"{statistics.median(line.cpu):,.0f} µs{server}")  # fmt: skip
        print(f"              ÷ wrk POSTing one normal row ({one_body:,.0f} req/s): "
              f"{ours / one_body:.2f}")  # fmt: skip
    print("   What limits it on this machine:")
    line = lines[BARE]
    print(f"   {BARE} ratio {line.ratio():5.2f}   (the replay's HTTP client alone, wrk's one "
          f"body {rows:,} times, nothing else: {statistics.median(line.replay):,.0f} req/s, "
          f"{statistics.median(line.cpu):,.0f} µs CPU a request; wrk {one_body:,.0f} req/s; "
          f"rounds {spread(line.ratios())})")  # fmt: skip
    print(f"              rounds: {line.rates('req/s')}")
    alone, shares = core_shares(size["spin_seconds"])
    low, high = min(shares), max(shares)
    print(f"   capacity: two CPU-bound processes at once get {low:.0%}–{high:.0%} of a core each "
          f"({alone:.0%} alone): what the client uses, the service loses")  # fmt: skip


def show_memory(args: argparse.Namespace, size: dict[str, int], workdir: Path, env: dict) -> None:
    c = args.concurrency
    base, big = size["memory_base"], size["memory_large"]
    tick(prefix_of(base), None)  # warm the row caches: memory of replaying, not of parsing
    tick(prefix_of(big), None)
    rss_base = peak_rss_of_replay(base, c, workdir, env, prefix_of(base))
    rss_big = peak_rss_of_replay(big, c, workdir, env, prefix_of(big))
    print(f"\n4. Replay memory: peak RSS replaying {big:,} rows ÷ {base:,} rows, the shard's "
          "process + its sending process (goal ≤ 1.2)")  # fmt: skip
    print(
        f"   ratio {rss_big / rss_base:5.2f}   ({rss_big / 2**20:.0f} MiB vs "
        f"{rss_base / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
