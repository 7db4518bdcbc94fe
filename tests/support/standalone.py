"""The stack's ``airflow standalone`` on 127.0.0.1, driven through its REST API like a user.

Started and stopped by :class:`scripts.local_services.AirflowStandalone` (like a Ctrl-C, then
what is left by process group); its environment comes from ``local_services.standalone_env``.
"""

from __future__ import annotations

from pathlib import Path

from scripts import local_services
from tests.support.airflow_api import AirflowApi

HOST = "127.0.0.1"


class Standalone(AirflowApi, local_services.AirflowStandalone):
    """The stack's ``airflow standalone``, driven through its REST API like a user in the UI."""

    def __init__(self, env: dict[str, str], port: int, home: Path, log_path: Path) -> None:
        super().__init__(env, port, log_path, HOST)
        self.home = home
        self.token: str | None = None
