"""`make bench` still works: its smoke run (tiny sizes) prints every figure, and its count of the
PostgreSQL server's CPU survives a backend that ends while it is read.

The replay figure has one line per results store (the JSON-lines files, PostgreSQL, SQLite),
each with its ratio (wrk POSTing the same rows), both sides, its goal, the spread of its rounds,
its ratio to wrk's one normal body and the CPU per row, and the
lines of what limits it: the replay's HTTP client alone ÷ wrk, and the machine's capacity.

The figures themselves are not asserted: timings belong in the benchmark's output, not in tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# The results stores of the replay figure and their goals (issue 12: ≥ 0.8 for the database).
STORE_GOALS = {"files": "0.9", "postgresql": "0.8", "sqlite": "0.8"}


def test_the_bench_smoke_run_prints_every_ratio(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "scripts.bench", "--smoke", "--workdir", str(tmp_path / "bench")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    out = result.stdout
    dag_files = sorted(path.name for path in (REPO / "dags").glob("*.py"))
    sections = {
        "1. DAG parse": [*dag_files, "empty DAG + WasbPrefixSensor", "empty DAG + HttpSensor"],
        "2. Tick cost": ["warm ratio", "cold ratio", "pandas.read_csv", "rounds"],
        "3. Replay throughput ÷ wrk": ["rows/s", "req/s", "rounds"],
        "4. Replay memory": ["MiB"],
    }
    for heading, details in sections.items():
        section = out.split(heading, 1)[-1].split("\n\n", 1)[0]
        assert heading in out, out
        for detail in details:
            assert detail in section, section
    replay = out.split("3. Replay throughput ÷ wrk", 1)[-1].split("\n\n", 1)[0]
    for store, goal in STORE_GOALS.items():
        line = (rf"^   {store} +ratio +\d+\.\d\d +\(replay [\d,]+ rows/s; wrk [\d,]+ req/s "
                rf"on the same rows; goal ≥ {re.escape(goal)}; "
                rf"rounds \d+\.\d\d–\d+\.\d\d\)$")  # fmt: skip
        assert re.search(line, replay, re.MULTILINE), replay
        one_body = r"\n +÷ wrk POSTing one normal row \([\d,]+ req/s\): \d+\.\d\d$"
        assert re.search(rf"^   {store} +ratio .*\n.*\n.*CPU per row.*{one_body}", replay,
                         re.MULTILINE), replay  # fmt: skip
        # Each round: the replay, wrk just before and just after it, the CPU steal over it.
        rates = (r"\n +rounds: replay [\d,]+ rows/s; wrk before/after [\d,]+/[\d,]+ req/s; "
                 r"CPU steal \d+\.\d%$")  # fmt: skip
        assert re.search(rf"^   {store} +ratio .*{rates}", replay, re.MULTILINE), replay
        cpu = r"\n +CPU per row: the replay's processes [\d,]+ µs"
        assert re.search(rf"^   {store} +ratio .*\n.*{cpu}", replay, re.MULTILINE), replay
    assert "the PostgreSQL server's" in replay, replay
    # What limits the replay: its HTTP client alone ÷ wrk, and the machine's capacity.
    assert re.search(r"^   bare client ratio +\d+\.\d\d +\(the replay's HTTP client alone.* [\d,]+ "
                     r"µs CPU a request; wrk [\d,]+ req/s; rounds \d+\.\d\d–\d+\.\d\d\)$",
                     replay, re.MULTILINE), replay  # fmt: skip
    assert re.search(r"^   capacity: two CPU-bound processes at once get \d+%–\d+% of a core each "
                     r"\(\d+% alone\)", replay, re.MULTILINE), replay  # fmt: skip
    # Each DAG file, the warm and the cold tick, the replay ÷ wrk per store, the bare client and
    # the memory: each a number.
    n_ratios = len(dag_files) + 2 + len(STORE_GOALS) + 1 + 1
    assert len(re.findall(r"ratio\s+\d+\.\d\d\b", out)) == n_ratios, out
    # Every ratio but the memory's (one run each side) with the spread of its rounds.
    assert len(re.findall(r"rounds \d+\.\d\d–\d+\.\d\d\)", out)) == n_ratios - 1, out
    assert not (tmp_path / "bench").exists()  # the smoke run cleans up after itself


def test_server_cpu_counts_on_when_a_process_ends_while_it_is_read(monkeypatch):
    """A PostgreSQL backend that ends between the open of its ``/proc/<pid>/stat`` and the read
    (the read fails with ESRCH) is skipped: it stopped a ``make bench`` run once. The process is
    real and really ends; only the moment is forced, by ending it from inside ``open``."""
    from scripts import bench, local_services

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    real_open = open

    def open_then_end(path, *args, **kwargs):
        handle = real_open(path, *args, **kwargs)
        if path == f"/proc/{child.pid}/stat":
            child.kill()
            child.wait()
        return handle

    monkeypatch.setattr(local_services, "open", open_then_end, raising=False)
    try:
        assert bench.tree_cpu_seconds(child.pid) == 0.0
    finally:
        child.kill()
        child.wait()


def test_a_rounds_ratio_is_its_replay_over_the_wrk_runs_around_it_and_the_figure_their_median():
    """The replay figure pairs each replay with the wrk runs just before and after it: a round
    where the machine slowed (here the third: wrk ran at 120 before and after, the replay got
    80) does not carry the figure, as it did when the figure was the ratio of the medians
    (80 / 100 = 0.80 here)."""
    from scripts import bench

    wrk = [(100.0, 100.0), (50.0, 50.0), (120.0, 120.0), (100.0, 50.0)]
    line = bench.Rounds(replay=[90.0, 45.0, 80.0, 60.0], wrk=wrk)
    assert line.ratios() == pytest.approx([0.9, 0.9, 2 / 3, 0.8])
    assert line.ratio() == pytest.approx(0.85)
    assert line.reference() == pytest.approx(87.5)


def test_a_round_runs_wrk_then_the_replay_then_wrk_and_counts_the_cpu_steal_over_them(
    monkeypatch,
):
    """The machine's counters are read for real once; for the share, ``cpu_jiffies`` is replaced
    by known counts: a hypervisor's steal cannot be made to happen on demand."""
    from scripts import bench

    steal, total = bench.cpu_jiffies()  # this machine's /proc/stat
    assert 0 <= steal <= total
    assert total > 0
    order: list[str] = []
    wrk_rates = iter([1000.0, 800.0])
    jiffies = iter([(10, 1000), (30, 2000)])  # 20 of 1,000 ticks stolen during the round
    monkeypatch.setattr(bench, "cpu_jiffies", lambda: next(jiffies))

    def wrk_run() -> float:
        order.append("wrk")
        return next(wrk_rates)

    def replay_run() -> tuple[float, float]:
        order.append("replay")
        return 810.0, 55.0

    line = bench.Rounds()
    bench.measure_round(line, wrk_run, replay_run)
    assert order == ["wrk", "replay", "wrk"]
    assert (line.replay, line.wrk, line.cpu) == ([810.0], [(1000.0, 800.0)], [55.0])
    assert line.steal == [pytest.approx(0.02)]
    assert line.ratios() == pytest.approx([0.9])
    assert line.rates() == "810 rows/s; wrk before/after 1,000/800 req/s; CPU steal 2.0%"
