"""Start and stop the services of the local stack: Azurite and the reference model service.

Used by ``make run`` (:mod:`scripts.run_local`) and by the test fixtures, so tests run against
exactly what users run. Every process is started in its own session and stopped by its PID
(never by name), and binds to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CSV = REPO / "include" / "sample_data" / "painting_sample.csv"
AZURITE_BLOB = REPO / "node_modules" / ".bin" / "azurite-blob"

# Azurite's well-known development account: public, documented by Microsoft, not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


class PortInUseError(RuntimeError):
    """A service cannot start because its port is taken (the message names both)."""


class ServiceStartError(RuntimeError):
    """A service exited or did not become ready; the message carries the end of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_port_free(name: str, port: int, host: str = "127.0.0.1") -> None:
    """Raise :class:`PortInUseError` naming the service and the port if the port is taken."""
    if not port_is_free(port, host):
        raise PortInUseError(
            f"{name} cannot start: port {port} on {host} is already in use "
            f"(stop what is using it, e.g. `ss -ltnp 'sport = :{port}'` shows it)"
        )


def tcp_ready(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        return False

    return check


def http_ready(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    return check


class ServiceProcess:
    """One long-running child process with a readiness check and a PID-based stop."""

    def __init__(
        self,
        name: str,
        command: list[str],
        port: int,
        ready: Callable[[], bool],
        log_path: Path,
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        cwd: Path = REPO,
    ) -> None:
        self.name, self.command, self.port, self.host = name, command, port, host
        self.ready, self.log_path, self.env, self.cwd = ready, log_path, env, cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        check_port_free(self.name, self.port, self.host)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,  # our own process group: Ctrl-C is ours to forward
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceStartError(
                    f"{self.name} exited with code {self.process.returncode} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self.ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise ServiceStartError(
            f"{self.name} was not ready on {self.host}:{self.port} after {timeout:.0f}s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 15.0, sig: int = signal.SIGTERM) -> None:
        """Signal our child's process group (by its PID), wait, then kill what is left."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def azurite(
    location: Path,
    port: int,
    log_path: Path,
    host: str = "127.0.0.1",
    accounts: dict[str, str] | None = None,
) -> ServiceProcess:
    """Azurite's blob service (installed from npm into ``node_modules`` by ``make``).

    ``accounts`` ({name: base64 key}) replaces the development account (``AZURITE_ACCOUNTS``).
    """
    if not AZURITE_BLOB.exists():
        raise ServiceStartError(f"{AZURITE_BLOB} is missing: run `make install` (npm ci)")
    location.mkdir(parents=True, exist_ok=True)
    command = [
        str(AZURITE_BLOB),
        "--blobHost", host, "--blobPort", str(port), "--location", str(location),
        "--skipApiVersionCheck", "--disableTelemetry", "--loose",
    ]  # fmt: skip
    env = None
    if accounts:
        env = {**os.environ, "AZURITE_ACCOUNTS": ";".join(f"{n}:{k}" for n, k in accounts.items())}
    return ServiceProcess(
        "Azurite (blob storage)", command, port, tcp_ready(host, port), log_path, env=env
    )


def azurite_connection_string(
    port: int, host: str = "127.0.0.1", key: str = AZURITE_KEY, account: str = AZURITE_ACCOUNT
) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
        f"BlobEndpoint=http://{host}:{port}/{account};"
    )


def wasb_connection(connection_string: str) -> dict[str, Any]:
    """The ``painting_blob_storage`` connection for a storage connection string."""
    return {"conn_type": "wasb", "extra": {"connection_string": connection_string}}


def http_connection(port: int, host: str = "127.0.0.1") -> dict[str, Any]:
    """The ``painting_model_service`` connection for a model service on ``host:port``."""
    return {"conn_type": "http", "host": host, "port": port, "schema": "http"}


def airflow_env(home: Path, api_port: int, host: str = "127.0.0.1") -> dict[str, str]:
    """The environment of an Airflow of this package: this repo's DAGs, plugins and ``include``,
    no examples, small parallelism, the api-server (and its execution API) on ``host:api_port``.
    """
    env = os.environ.copy()
    bin_dir = str(Path(sys.executable).parent)  # `airflow standalone` runs `airflow` from PATH
    env.update(
        {
            "PATH": os.pathsep.join(filter(None, [bin_dir, env.get("PATH")])),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",  # log files show lines as they come
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__API__HOST": host,
            "AIRFLOW__API__PORT": str(api_port),
            # Task processes reach the api-server's execution API here (default: localhost:8080).
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{host}:{api_port}/execution/",
        }
    )
    return env


def model_service(
    port: int,
    log_path: Path,
    data: Path | None = SAMPLE_CSV,
    extra_args: Iterable[str] = (),
    host: str = "127.0.0.1",
    name: str = "reference model service",
) -> ServiceProcess:
    """The reference model service (``python -m include.model_service``); ``name`` is what
    messages call it (``make run``'s candidate is one too)."""
    command = [sys.executable, "-m", "include.model_service", "--host", host, "--port", str(port)]
    command += ["--data", str(data)] if data is not None else ["--no-model"]
    command += list(extra_args)
    return ServiceProcess(name, command, port, http_ready(f"http://{host}:{port}/health"), log_path)


def simulator_env(
    connection_string: str,
    model_port: int,
    container: str,
    output_dir: Path,
    host: str = "127.0.0.1",
) -> dict[str, str]:
    """The simulator's connections and Variables as ``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*``."""
    return {
        "AIRFLOW_CONN_PAINTING_BLOB_STORAGE": json.dumps(wasb_connection(connection_string)),
        "AIRFLOW_CONN_PAINTING_MODEL_SERVICE": json.dumps(http_connection(model_port, host)),
        "AIRFLOW_VAR_PAINTING_CONTAINER": container,
        "AIRFLOW_VAR_PAINTING_OUTPUT_DIR": str(output_dir),
    }


def standalone_env(
    home: Path,
    api_port: int,
    connection_string: str,
    model_port: int,
    container: str,
    output_dir: Path,
    host: str = "127.0.0.1",
) -> dict[str, str]:
    """The environment of an ``airflow standalone`` of the tests: :func:`airflow_env`, the
    simulator's connections and Variables, and free ports for Airflow's log servers (they bind
    every interface, so the defaults would collide with a running ``make run``)."""
    env = airflow_env(home, api_port, host)
    env.update(
        {
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            **simulator_env(connection_string, model_port, container, output_dir, host),
        }
    )
    return env


def upload_blobs(
    connection_string: str, container: str, blobs: dict[str, bytes], overwrite: bool = True
) -> None:
    """Create ``container`` if needed and upload ``{blob name: bytes}``."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string)
    client = service.get_container_client(container)
    with contextlib.suppress(ResourceExistsError):
        client.create_container()
    for name, data in blobs.items():
        client.upload_blob(name, data, overwrite=overwrite)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (the first: field 3, the
    state), or None when the process is gone (before the open, or during the read: ESRCH)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _group_members(pgid: int) -> list[tuple[int, int, list[str]]]:
    """The live processes of process group ``pgid`` (zombies left out), each as its PID, its
    parent's PID and its argv, by PID."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (stat := proc_stat(entry.name)) is None:
            continue
        if int(stat[2]) != pgid or stat[0] == "Z":  # fields 5 and 3: process group, state
            continue
        try:
            argv = (entry / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:  # ended meanwhile
            continue
        parent = int(stat[1])  # field 4
        found.append((int(entry.name), parent, [arg.decode(errors="replace") for arg in argv]))
    return sorted(found)


def group_processes(pgid: int) -> list[str]:
    """The live processes of process group ``pgid``, each as ``"<pid> <command line>"``
    (zombies left out): what kept a group from stopping."""
    return [_described(pid, argv) for pid, _parent, argv in _group_members(pgid)]


def _described(pid: int, argv: list[str]) -> str:
    return f"{pid} {' '.join(argv)[:200]}"


# An Airflow 3.3.2 component can miss the SIGTERM that standalone sends it on Ctrl-C, once:
# standalone sends it one SIGTERM, and the component's handler (log, then ``sys.exit``) can be
# undone while the component forks (a dag-processor its parse processes, a scheduler its
# executor's workers). One way, shown with a plain script (4 missed in 120): CPython drops the
# exception that a signal handler raises inside an ``os.register_at_fork`` callback (logging
# has them), "Exception ignored in ...", and the process goes on. Seen in CI (a dag-processor,
# then a scheduler) and reproduced: a SIGTERM timed to a dag-processor's start of its parse
# processes was missed 4 times in 16 (the handler still installed: the next SIGTERM stopped it
# cleanly).
COMPONENT_RESEND_SECONDS = 20.0


class AirflowStandalone:
    """``airflow standalone`` (scheduler, dag-processor, api-server, triggerer) in its own
    process group, stopped like a Ctrl-C.

    Two facts shape this: standalone stops its components only on SIGINT, and a process started
    in the background inherits an *ignored* SIGINT, so the default handler is restored before
    exec. SIGINT goes to standalone alone (interrupting the whole group at once can deadlock the
    scheduler's executor workers), and SIGTERM again to a component that missed standalone's;
    only what is still alive after the grace period gets SIGTERM, then SIGKILL, by process
    group.
    """

    def __init__(self, env: dict[str, str], port: int, log_path: Path, host: str = "127.0.0.1"):
        self.env, self.port, self.log_path, self.host = env, port, log_path, host
        self.base_url = f"http://{host}:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        # What was still running when SIGINT's grace ran out (:meth:`stop`), for its message.
        self.lingering: list[str] = []
        # Each component that was sent SIGTERM again during the grace (:meth:`stop`).
        self.resent: list[str] = []

    def start(self) -> AirflowStandalone:
        def restore_default_signals() -> None:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "airflow", "standalone"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env=self.env,
                start_new_session=True,
                preexec_fn=restore_default_signals,
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def health(self) -> dict:
        """``/api/v2/monitor/health``, or ``{}`` while the api-server is not answering."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=2) as r:
                return json.load(r)
        except (OSError, ValueError):
            return {}

    def healthy(self, components: Iterable[str] = ("metadatabase", "scheduler")) -> bool:
        health = self.health()
        return all(health.get(c, {}).get("status") == "healthy" for c in components)

    def wait_healthy(self, timeout: float, components: Iterable[str] = ("scheduler",)) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                code = self.process.returncode if self.process else None
                raise ServiceStartError(
                    f"airflow standalone exited ({code}) while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self.healthy(components):
                return
            time.sleep(1)
        raise ServiceStartError(
            f"Airflow was not healthy at {self.base_url} after {timeout:.0f}s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 60.0, resend: float = COMPONENT_RESEND_SECONDS) -> bool:
        """Stop everything; True if it stopped without being killed, False if it had to be.

        Without a kill means on SIGINT to standalone, which sends SIGTERM to its components,
        and a SIGTERM again, every ``resend`` seconds of the grace, to each component still
        running (see :data:`COMPONENT_RESEND_SECONDS`; :attr:`resent` names them).
        """
        process, self.process = self.process, None
        if process is None:
            return True
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
            if process.poll() is not None and not _group_alive(process.pid):
                return sig == signal.SIGINT
            if sig == signal.SIGTERM:
                self.lingering = group_processes(process.pid)
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGINT:
                    os.kill(process.pid, sig)
                else:
                    os.killpg(process.pid, sig)
            deadline = time.monotonic() + wait
            next_resend = time.monotonic() + resend
            while time.monotonic() < deadline:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.5)
                if process.poll() is not None and not _group_alive(process.pid):
                    return sig == signal.SIGINT
                if sig == signal.SIGINT and time.monotonic() >= next_resend:
                    self._terminate_components(process.pid)
                    next_resend += resend
        return False

    def _terminate_components(self, pid: int) -> None:
        """SIGTERM to each of standalone's (``pid``) own children still running: its
        components (recorded in :attr:`resent`)."""
        for child, parent, argv in _group_members(pid):
            if parent == pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGTERM)
                    self.resent.append(_described(child, argv))
