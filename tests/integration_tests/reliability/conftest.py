"""Fixtures of the reliability tests: Azurite with a secret account of its own.

The ``azurite`` fixture is overridden here: Azurite serves only a storage account of its own,
with a random key made for this session (``AZURITE_ACCOUNTS``), not the public development key,
so that grepping the logs for the key and the connection string means something. Every fixture of
the root conftest (``simulator``...) uses it for the tests in this directory.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import local_services
from tests.conftest import _AIRFLOW_HOME, AzuriteHandle

ACCOUNT = "paintingreliability"


@pytest.fixture(scope="session")
def account_key() -> str:
    return base64.b64encode(secrets.token_bytes(64)).decode()


@pytest.fixture(scope="session")
def azurite(logs_dir: Path, account_key: str) -> Iterator[AzuriteHandle]:
    port = local_services.free_port()
    service = local_services.azurite(
        _AIRFLOW_HOME / "azurite-reliability",
        port,
        logs_dir / "azurite-reliability.log",
        accounts={ACCOUNT: account_key},
    )
    with service:
        yield AzuriteHandle(
            service,
            local_services.azurite_connection_string(port, key=account_key, account=ACCOUNT),
        )


def secret_hits(text: str, account_key: str, connection_string: str) -> dict[str, int]:
    """How often the key and the connection string (and the key's URL-quoted form) appear."""
    from urllib.parse import quote

    needles = {
        "account key": account_key,
        "account key (URL-quoted)": quote(account_key, safe=""),
        "connection string": connection_string,
    }
    return {name: text.count(needle) for name, needle in needles.items() if needle in text}
