"""The dashboard benchmark on the results database still works: a small run prints every line.

``python -m scripts.benchmark_dashboard --store postgresql`` with 2,000 rows (its default is
10,000,000: the lead's measurement, docs/performance.md): its own PostgreSQL, filled through the
real writer, served by a real ``airflow api-server``. Asserted: the fill-rate line and one line
per endpoint (summary and shadow for every range the dashboard offers) with its median, max, and
a ✓ or ✗ against the goal, each a number; and that the dashboard's totals are the rows written.
The timings themselves are not asserted: they belong in the benchmark's output, not in tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from scripts import local_services
from scripts.benchmark_dashboard import GOAL_MS, TOTALS_MISMATCH, dashboard_ranges

pytestmark = pytest.mark.integration

REPO = local_services.REPO
ROWS = 2_000


def test_the_dashboard_benchmark_on_postgresql_prints_every_endpoint_against_the_goal():
    command = [sys.executable, "-m", "scripts.benchmark_dashboard", "--store", "postgresql",
               "--rows", str(ROWS), "--batch", "200", "--repeat", "2"]  # fmt: skip
    result = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout
    fill = re.search(rf"filled .*: {ROWS:,} rows .* [\d.]+ s, [\d,]+ rows/s;", out)
    assert fill, out + result.stderr[-3000:]
    paths = [
        *(f"/painting/api/summary?range={name}" for name in dashboard_ranges()),
        *(f"/painting/api/shadow?range={name}" for name in dashboard_ranges()),
        "/painting/api/shadow/disagreements?limit=20",
        "/painting/api/anomalies/recent?limit=20",
        "/painting/api/anomalies/recent?limit=20&offset=10000",
        "/painting/api/replays/recent?limit=10",
    ]
    assert f"goal ≤ {GOAL_MS:.0f} ms" in out, out
    for path in paths:
        line = rf"^  {re.escape(path)} +\d+\.\d ms +\d+\.\d ms  [✓✗]$"
        assert re.search(line, out, re.MULTILINE), (path, out)
    assert re.search(rf"^\d+ of {len(paths)} endpoints within", out, re.MULTILINE), out
    assert TOTALS_MISMATCH not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 0, out[-2000:] + result.stderr[-3000:]
    assert "the answers' totals are the rows written ✓" in out, out
