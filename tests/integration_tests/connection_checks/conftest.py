"""Fixtures for the connection-check DAGs: run one with dag.test(), and small real HTTP servers.

The tiny servers started here (``tests.support.http_servers``) are real (a socket, HTTP over
TCP) and stand in only for answers the reference model service cannot be made to give on
demand: an unhealthy ``/health``, a ``/predict/`` that breaks the contract, a service that
accepts connections but never answers.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts import local_services
from tests.support.check_dags import CheckDags, Storage


@pytest.fixture
def checks(
    airflow_db: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> CheckDags:
    caplog.set_level("INFO")
    return CheckDags(caplog, capfd)


@pytest.fixture
def storage(azurite: Any, monkeypatch: pytest.MonkeyPatch) -> Storage:
    """The storage check pointed at real Azurite, in a fresh container of its own."""
    container = f"check-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_PAINTING_BLOB_STORAGE",
        json.dumps(local_services.wasb_connection(azurite.connection_string)),
    )
    monkeypatch.setenv("AIRFLOW_VAR_PAINTING_CONTAINER", container)
    return Storage(azurite, container, monkeypatch)


@pytest.fixture
def use_model_service(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the connection ``painting_model_service`` at a port, or at a whole base URL."""

    def use(port: int | None = None, *, base_url: str | None = None) -> None:
        if base_url is not None:
            value = json.dumps({"conn_type": "http", "host": base_url})
        else:
            value = json.dumps(local_services.http_connection(port))
        monkeypatch.setenv("AIRFLOW_CONN_PAINTING_MODEL_SERVICE", value)

    return use


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel completes the handshake) but never
    answers: a service that hangs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A free port where nothing listens: connections are refused."""
    return local_services.free_port()
