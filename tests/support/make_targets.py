"""Running the Makefile's ``make airflow ARGS=...`` from tests, and reading its JSON listings."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def make_airflow(env: dict[str, str], args: str, timeout: float = 180) -> str:
    """``make airflow ARGS=<args>`` in ``env``; its standard output (fails the test if it fails)."""
    result = subprocess.run(
        ["make", "--no-print-directory", "airflow", f"ARGS={args}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def json_listing(stdout: str) -> list[dict[str, Any]]:
    """The JSON line of an ``--output json`` listing; [] when the CLI printed a message instead
    (such as "No paused DAGs were found")."""
    listed = next((line for line in stdout.splitlines() if line.startswith("[")), "[]")
    return json.loads(listed)
