"""The stack's ``airflow standalone`` on 127.0.0.1, driven through its REST API like a user.

Started and stopped by :class:`scripts.local_services.AirflowStandalone` (like a Ctrl-C, then
what is left by process group); its environment comes from ``local_services.standalone_env``.
:func:`standalone_with_sample` is the e2e tests' whole setup: the sample in a fresh container of
Azurite, the model service, a running standalone, and the check that it stopped on SIGINT.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scripts import local_services
from tests.support.airflow_api import AirflowApi

HOST = "127.0.0.1"


class Standalone(AirflowApi, local_services.AirflowStandalone):
    """The stack's ``airflow standalone``, driven through its REST API like a user in the UI."""

    def __init__(self, env: dict[str, str], port: int, home: Path, log_path: Path) -> None:
        super().__init__(env, port, log_path, HOST)
        self.home = home
        self.token: str | None = None


@contextlib.contextmanager
def standalone_with_sample(
    tmp_path: Path, azurite: Any, model_port: int, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[Standalone, Path]]:
    """A running ``airflow standalone`` wired to Azurite (the sample CSV in a container of its
    own) and the model service on ``model_port``: ``(server, output dir)``. On the way out it
    is stopped, and it must have stopped on SIGINT alone."""
    home, output_dir = tmp_path / "airflow", tmp_path / "painting_logs"
    home.mkdir()
    container = f"e2e-{uuid.uuid4().hex[:12]}"
    azurite.upload(
        container,
        {"painting-process-equipment/painting_sample.csv": local_services.SAMPLE_CSV.read_bytes()},
    )
    port = local_services.free_port()
    env = local_services.standalone_env(
        home, port, azurite.connection_string, model_port, container, output_dir, HOST
    )
    env.update(extra_env or {})
    server = Standalone(env, port, home, tmp_path / "standalone.log")
    server.start()
    try:
        yield server, output_dir
    finally:
        stopped_on_sigint = server.stop()
    assert stopped_on_sigint, (
        "processes of airflow standalone were still running 60s after SIGINT (killed): "
        f"{'; '.join(server.lingering)}; standalone log:\n{server.log_tail()}"
    )
