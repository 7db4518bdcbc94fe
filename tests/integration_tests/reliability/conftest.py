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
from tests.support.airflow_home import AIRFLOW_HOME
from tests.support.azurite import SECRET_ACCOUNT, AzuriteHandle, run_azurite


@pytest.fixture(scope="session")
def account_key() -> str:
    return base64.b64encode(secrets.token_bytes(64)).decode()


@pytest.fixture(scope="session")
def azurite(logs_dir: Path, account_key: str) -> Iterator[AzuriteHandle]:
    port = local_services.free_port()
    with run_azurite(
        AIRFLOW_HOME / "azurite-reliability",
        port,
        logs_dir / "azurite-reliability.log",
        account=SECRET_ACCOUNT,
        key=account_key,
    ) as handle:
        yield handle
