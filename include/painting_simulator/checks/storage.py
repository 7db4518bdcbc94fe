"""What the storage check concludes: request options, causes of failure, the CSV listing.

Plain Python for ``check_azure_storage_connection`` (its sensor: :mod:`.storage_sensor`); the
Azure SDK's exception types are imported only when a failure is explained.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from include.painting_simulator import settings
from include.painting_simulator.blob_storage import StorageError, explain_storage_error, is_csv
from include.painting_simulator.checks.sensor_base import CheckFailed, missing_connection

FIRST_BLOBS_SHOWN = 5


def storage_request_options(limit: float | None = None) -> dict[str, Any]:
    """Azure SDK per-request options: one attempt, bounded waits (at most ``limit`` seconds).

    Without them an unreachable endpoint costs about a minute per request (the SDK retries three
    times with back-off 15 s, 18 s, 24 s); the sensor's own pokes are the retries here.
    """
    bound = max(limit, 1.0) if limit is not None else math.inf
    return {
        "retry_total": 0,
        "connection_timeout": min(10.0, bound),
        "read_timeout": min(30.0, bound),
    }


def storage_endpoint(url: str) -> str:
    """``scheme://host:port/account`` of a storage client URL, without any SAS query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def storage_failure(
    exc: BaseException, container: str, prefix: str, conn_id: str, endpoint: str | None
) -> CheckFailed:
    """The cause of a failed storage request, in words; never the credentials."""
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    if isinstance(exc, CheckFailed):
        return exc
    if missing := missing_connection(exc, conn_id):
        return missing
    where = f" at {endpoint}" if endpoint else ""
    if isinstance(exc, ServiceResponseError):
        return CheckFailed(
            f"storage{where} did not answer in time (connection {conn_id!r}): {type(exc).__name__}",
            wait=True,
        )
    if isinstance(exc, ServiceRequestError):
        return CheckFailed(
            f"{explain_storage_error(exc, container, conn_id)} — is the storage service running"
            f"{where}, and are host and port in the connection right?",
            wait=True,
        )
    if isinstance(exc, ValueError):  # the SDK's "Connection string is either blank or malformed"
        return CheckFailed(f"connection {conn_id!r} is not a usable storage connection: {exc}")
    explained: StorageError = explain_storage_error(exc, container, conn_id)
    message = str(explained)
    if message.startswith("container "):
        message += f" — create it, or set the Variable {settings.VAR_CONTAINER}"
    return CheckFailed(f"{message}; endpoint {endpoint}" if endpoint else message)


def no_blobs(container: str, prefix: str, conn_id: str) -> str:
    return (
        f"no CSV under prefix {prefix!r} in container {container!r} (connection {conn_id!r}): "
        f"nothing is stored under it — upload the CSV files there, or set the Variable "
        f"{settings.VAR_PREFIX}"
    )


@dataclass(frozen=True)
class BlobInfo:
    """What the check shows of one blob."""

    name: str
    size: int
    last_modified: datetime | None


def summarize_csv_blobs(
    blobs: Iterable[BlobInfo], container: str, prefix: str, conn_id: str
) -> tuple[list[BlobInfo], list[str]]:
    """The CSV blobs sorted by name and the lines to log; :class:`CheckFailed` if there is none."""
    everything = sorted(blobs, key=lambda blob: blob.name)
    csvs = [blob for blob in everything if is_csv(blob.name)]
    if not csvs:
        others = ", ".join(blob.name for blob in everything[:FIRST_BLOBS_SHOWN])
        raise CheckFailed(
            f"no CSV under prefix {prefix!r} in container {container!r} (connection "
            f"{conn_id!r}): {len(everything)} other blob(s) ({others}) but no .csv — upload the "
            f"CSV files there, or set the Variable {settings.VAR_PREFIX}"
        )
    shown = csvs[:FIRST_BLOBS_SHOWN]
    which = f"the first {len(shown)}" if len(shown) < len(csvs) else "all"
    lines = [
        f"{len(csvs)} CSV blob(s) under prefix {prefix!r} in container {container!r} "
        f"(connection {conn_id!r}); {which} by name:"
    ]
    for blob in shown:
        modified = blob.last_modified.isoformat() if blob.last_modified else "unknown"
        lines.append(f"  {blob.name}  {blob.size:,} bytes  last modified {modified}")
    return csvs, lines
