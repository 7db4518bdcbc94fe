"""`make run` (python -m scripts.run_local) reports a taken port by service and number, and a
stop that SIGINT alone could not finish names the processes still running."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.local_services import AirflowStandalone, free_port

REPO = Path(__file__).resolve().parents[2]


def run_local(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m scripts.run_local`` (make run) for one that stops before starting anything."""
    return subprocess.run(
        [sys.executable, "-m", "scripts.run_local"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "service"),
    [
        ("PAINTING_AZURITE_PORT", "Azurite (blob storage)"),
        ("PAINTING_MODEL_PORT", "reference model service"),
        ("PAINTING_CANDIDATE_PORT", "candidate model service"),
        ("PAINTING_AIRFLOW_PORT", "Airflow UI"),
    ],
)
def test_a_taken_port_is_reported_by_name_without_a_traceback(variable, service):
    names = ("PAINTING_AZURITE_PORT", "PAINTING_MODEL_PORT", "PAINTING_CANDIDATE_PORT")
    ports = {name: str(free_port()) for name in names}
    ports["PAINTING_AIRFLOW_PORT"] = str(free_port())
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        env = {**os.environ, **ports, variable: str(taken)}
        result = run_local(env)
    assert result.returncode == 1
    assert f"{service} cannot start: port {taken} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_shadow_setting_that_is_neither_on_nor_off_is_named():
    result = run_local({**os.environ, "PAINTING_SHADOW": "maybe"})
    assert result.returncode == 1
    assert "PAINTING_SHADOW='maybe' is neither 1 (start the candidate) nor 0" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def make_dry_run(target: str) -> str:
    """The commands ``make <target>`` would run on a fresh machine (-B: as if nothing is built)."""
    result = subprocess.run(
        ["make", "--dry-run", "--always-make", target],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_make_run_installs_only_the_venv_and_azurite_no_debian_packages():
    commands = make_dry_run("run")
    assert "pip install" in commands
    assert "npm ci" in commands
    assert "install_system_packages.sh" not in commands, "make run must not need root"


@pytest.mark.parametrize("target", ["test", "bench"])
def test_make_test_and_bench_install_the_debian_packages(target):
    assert "scripts/install_system_packages.sh" in make_dry_run(target)


def test_make_test_fast_lints_and_runs_only_the_unit_dag_validation_and_layout_tests():
    commands = make_dry_run("test-fast").splitlines()
    assert ".venv/bin/ruff check ." in commands
    assert ".venv/bin/ruff format --check ." in commands
    pytest_runs = [c for c in commands if " -m pytest" in c]
    assert pytest_runs == [
        ".venv/bin/python -m pytest tests/unit_tests tests/dag_validation_tests tests/layout_tests"
    ]
    assert not any("install_system_packages" in c or "npm ci" in c for c in commands)


def wait_for(ready: Path, timeout: float = 30.0) -> None:
    """Until a stand-in has written ``ready`` (it has set its signal handlers)."""
    deadline = time.monotonic() + timeout
    while not ready.exists():
        assert time.monotonic() < deadline, f"the stand-in did not write {ready} in {timeout:.0f} s"
        time.sleep(0.05)


# A stand-in for airflow standalone whose group outlives SIGINT: a process and its child.
# The child writes the file named by argv[1] once both ignore SIGINT (the parent sets
# SIG_IGN before it starts the child).
STUBBORN = (
    "import signal, subprocess, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "subprocess.Popen([sys.executable, '-c', 'import pathlib, signal, sys, time; "
    "signal.signal(signal.SIGINT, signal.SIG_IGN); pathlib.Path(sys.argv[1]).touch(); "
    "time.sleep(120)  # child', sys.argv[1]]); time.sleep(120)"
)


def test_a_stop_that_sigint_could_not_finish_names_what_was_still_running(tmp_path):
    standalone = AirflowStandalone({}, free_port(), tmp_path / "standalone.log")
    ready = tmp_path / "child-ready"
    standalone.process = subprocess.Popen(
        [sys.executable, "-c", STUBBORN, str(ready)], start_new_session=True
    )
    pid = standalone.process.pid
    try:
        wait_for(ready)
        assert standalone.stop(grace=1.0) is False
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    assert len(standalone.lingering) == 2, standalone.lingering
    assert standalone.lingering[0].startswith(f"{pid} "), standalone.lingering
    assert "# child" in standalone.lingering[1], standalone.lingering


# A stand-in for airflow standalone whose component misses the first SIGTERM: on SIGINT the
# parent sends SIGTERM to its child (as standalone does) and waits for it; the child (named like
# standalone's dag-processor) stops on its second SIGTERM only, and has a child of its own that
# is no component (it must not be sent anything). It writes $READY when set up. SIGINT gets its
# default handler back: a suite run in the background (CI) hands its children an ignored one.
MISSES_FIRST_SIGTERM = (
    "import os, pathlib, signal, subprocess, sys, time; seen = []\n"
    "def on_term(signum, frame):\n"
    "    seen.append(signum)\n"
    "    if len(seen) > 1: raise SystemExit(0)\n"
    "signal.signal(signal.SIGTERM, on_term)\n"
    "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "pathlib.Path(os.environ['READY']).touch()\n"
    "try:\n"
    "    while True: time.sleep(0.1)\n"
    "finally:\n"
    "    grandchild.kill()\n"
)
STANDALONE_STAND_IN = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    f"child = subprocess.Popen([sys.executable, '-c', {MISSES_FIRST_SIGTERM!r}, "
    "'airflow', 'dag-processor'])\n"
    "try:\n"
    "    while True: time.sleep(0.1)\n"
    "except KeyboardInterrupt:\n"
    "    child.terminate(); child.wait()\n"
)


def test_a_component_that_missed_standalones_sigterm_gets_it_again(tmp_path):
    """An Airflow 3.3.2 component can miss standalone's SIGTERM (see
    ``COMPONENT_RESEND_SECONDS``): the stop sends it again, and the stop stays clean.

    A stand-in, because a real component misses it only by chance (a SIGTERM that lands while
    it forks), not on demand."""
    standalone = AirflowStandalone({}, free_port(), tmp_path / "standalone.log")
    ready = tmp_path / "component-ready"
    standalone.process = subprocess.Popen(
        [sys.executable, "-c", STANDALONE_STAND_IN],
        env={**os.environ, "READY": str(ready)},
        start_new_session=True,
    )
    pid = standalone.process.pid
    try:
        wait_for(ready)
        assert standalone.stop(grace=10.0, resend=1.0) is True, standalone.lingering
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    assert len(standalone.resent) == 1, standalone.resent
    assert "on_term" in standalone.resent[0], standalone.resent  # the child, not the grandchild
    assert standalone.lingering == []
