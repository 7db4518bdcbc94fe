"""`make bench` still works: its smoke run (tiny sizes) prints every figure.

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
    # Each DAG file, the warm and the cold tick, the replay ÷ wrk and the memory: each a number.
    assert len(re.findall(r"ratio\s+\d+\.\d\d\b", out)) == len(dag_files) + 4, out
    # Every ratio but the memory's (one run each side) with the spread of its rounds.
    assert len(re.findall(r"rounds \d+\.\d\d–\d+\.\d\d\)", out)) == len(dag_files) + 3, out
    assert not (tmp_path / "bench").exists()  # the smoke run cleans up after itself
