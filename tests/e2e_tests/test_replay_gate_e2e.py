"""The release gate in CI, for real: the shell script of docs/replay.md against a running Airflow.

The script is taken from the docs page itself (the bash block after the ``replay-gate-script``
marker), not from a copy, and run with ``bash`` and ``curl``/``jq`` against ``airflow
standalone`` (REST API, scheduler, LocalExecutor), Azurite holding the sample CSV and the real
reference model service: a gate that passes exits 0, one that fails exits 1, naming it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts import local_services
from tests.support.dag_runs import read_jsonl
from tests.support.standalone import Standalone, standalone_with_sample

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "replay.md"
MARKER = "<!-- replay-gate-script"


def gate_script() -> str:
    """The bash block that follows the marker in docs/replay.md."""
    text = DOC.read_text(encoding="utf-8")
    assert MARKER in text, f"{DOC} lost its {MARKER} marker"
    match = re.search(r"```bash\n(.*?)```", text[text.index(MARKER) :], re.DOTALL)
    assert match, f"no bash block after the {MARKER} marker of {DOC}"
    return match.group(1)


@pytest.fixture
def airflow(
    tmp_path: Path, azurite: Any, model_service: local_services.ServiceProcess
) -> Iterator[tuple[Standalone, Path]]:
    with standalone_with_sample(tmp_path, azurite, model_service.port) as running:
        server, _ = running
        server.wait_for(
            "a healthy Airflow (scheduler, dag-processor)",
            lambda: server.healthy(("metadatabase", "scheduler", "dag_processor")),
            timeout=120,
        )
        server.log_in()
        server.wait_for(
            "the dag-processor to register painting_replay",
            lambda: server.try_request("GET", "/api/v2/dags/painting_replay"),
            timeout=90,
        )
        yield running


def run_gate(server: Standalone, conf: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "AIRFLOW_URL": server.base_url,
        "AIRFLOW_TOKEN": server.token or "",
        "REPLAY_CONF": json.dumps(conf),
        "POLL_SECONDS": "2",
    }
    return subprocess.run(
        ["bash", "-c", gate_script()], env=env, capture_output=True, text=True, timeout=300
    )


def test_the_documented_ci_job_passes_a_good_gate_and_fails_a_bad_one(airflow):
    server, output_dir = airflow
    rows = {"rows": 300, "concurrency": 4}

    good = run_gate(server, {**rows, "thresholds": {"error_rate": 0, "expected_accuracy": 1}})

    assert good.returncode == 0, good.stdout + good.stderr
    assert "✓ error_rate 0 (limit 0)" in good.stdout
    assert "✓ expected_accuracy 1 (limit 1)" in good.stdout
    assert re.search(r"painting_replay run manual__\S+: success\n\Z", good.stdout), good.stdout

    # No service answers in 0 ms: the p95 limit fails the gate, the error rate still passes.
    bad = run_gate(server, {**rows, "thresholds": {"latency_p95_ms": 0, "error_rate": 0}})

    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert re.search(r"✗ latency_p95_ms [0-9.]+ \(limit 0\)", bad.stdout), bad.stdout
    assert "✓ error_rate 0 (limit 0)" in bad.stdout
    assert bad.stdout.rstrip().endswith(": failed")
    summaries = read_jsonl(output_dir / "painting_replay_summary.jsonl")
    assert [s["passed"] for s in summaries] == [True, False]
    assert all(s["rows"] == 300 for s in summaries)

    # A malformed limit: the run fails at plan_shards, before any row, and so does the job.
    malformed = run_gate(server, {**rows, "thresholds": {"p95": 1}})

    assert malformed.returncode == 1, malformed.stdout + malformed.stderr
    assert "no summary: the run failed before summarize" in malformed.stdout
    assert len(read_jsonl(output_dir / "painting_replay_summary.jsonl")) == 2

    # Stop only once no task is in flight (see test_scheduler_e2e): the runs are all finished.
    from scripts import run_local

    server.wait_for(
        "no task instance queued or running",
        lambda: run_local.active_tasks(server.base_url, server.token) == 0,
        timeout=120,
    )
