"""Azurite for the tests: started for a ``with`` block, stopped by PID, and its blobs.

Handles are made by the ``azurite`` fixtures (the session's one in the root conftest, the one
with a secret account of its own in ``integration_tests/reliability/``) and by tests that need
an Azurite of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scripts import local_services

# The storage account of the reliability tests' Azurite: the only one it serves, with a random
# key made for the session instead of the public development key.
SECRET_ACCOUNT = "paintingreliability"


@dataclass
class AzuriteHandle:
    service: local_services.ServiceProcess
    connection_string: str

    def upload(self, container: str, blobs: dict[str, bytes]) -> None:
        local_services.upload_blobs(self.connection_string, container, blobs)

    def delete(self, container: str, blob: str) -> None:
        from azure.storage.blob import BlobServiceClient

        client = BlobServiceClient.from_connection_string(self.connection_string)
        client.get_container_client(container).delete_blob(blob)


@contextmanager
def run_azurite(
    location: Path, port: int, log_path: Path, *, account: str | None = None, key: str = ""
) -> Iterator[AzuriteHandle]:
    """Azurite on ``port`` (blobs kept in ``location``, its output in ``log_path``) for the
    ``with`` block, then stopped by PID. With ``account``: that account alone, with ``key``,
    instead of the development account and its public key."""
    if account is None:
        service = local_services.azurite(location, port, log_path)
        connection_string = local_services.azurite_connection_string(port)
    else:
        service = local_services.azurite(location, port, log_path, accounts={account: key})
        connection_string = local_services.azurite_connection_string(port, key=key, account=account)
    with service:
        yield AzuriteHandle(service, connection_string)
