"""Blob storage I/O through Airflow's ``WasbHook``: list the CSV blobs, download one, its version.

Only called from inside tasks: the Azure SDK is imported lazily so that parsing a DAG file stays
cheap. Storage failures become a :class:`StorageError` whose message names the cause, the
container and the blob, never a credential (:func:`explain_storage_error`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook


def is_csv(name: str) -> bool:
    return name.lower().endswith(".csv")


def list_csv_blobs(hook: WasbHook, container: str, prefix: str) -> list[str]:
    """Every ``.csv`` blob under ``prefix``, recursively (no virtual folders), sorted by name."""
    names = hook.get_blobs_list_recursive(container_name=container, prefix=prefix or None)
    return sorted(name for name in names if is_csv(name))


def _is_blob_gone(exc: BaseException) -> bool:
    """A 404 for the blob itself (deleted), not for its whole container."""
    return getattr(exc, "error_code", None) != "ContainerNotFound"


def _version(properties: Any) -> dict[str, str]:
    modified = properties.last_modified
    return {
        "etag": str(properties.etag or ""),
        "last_modified": modified.isoformat() if modified is not None else "",
    }


def download_blob(hook: WasbHook, container: str, blob: str) -> tuple[bytes, dict[str, str]] | None:
    """The blob's bytes and version (``{"etag", "last_modified"}``), or ``None`` if it is gone.

    The version is the download's own answer (the SDK pins further chunk requests to its ETag),
    so bytes and version always belong together.
    """
    from azure.core.exceptions import ResourceNotFoundError

    try:
        download = hook.download(container_name=container, blob_name=blob)
        data = download.readall()
    except ResourceNotFoundError as exc:
        if not _is_blob_gone(exc):
            raise  # not one blob gone: the whole container is
        return None
    return data, _version(download.properties)


def blob_version(hook: WasbHook, container: str, blob: str) -> dict[str, str] | None:
    """The blob's version from one properties request (no download), or ``None`` if it is gone."""
    from azure.core.exceptions import ResourceNotFoundError

    client = hook.blob_service_client.get_blob_client(container=container, blob=blob)
    try:
        return _version(client.get_blob_properties())
    except ResourceNotFoundError as exc:
        if not _is_blob_gone(exc):
            raise
        return None


def account_name(hook: WasbHook, container: str, blob: str) -> str:
    """The storage account's name (part of a blob's identity in the row cache)."""
    return hook.blob_service_client.account_name


class StorageError(RuntimeError):
    """Storage could not be read; the message says why in words a user can act on."""


# Secrets an SDK message could echo (a SAS signature in a URL, a key in a connection string).
_SECRET = re.compile(r"(?i)\b(sig|accountkey|sharedaccesssignature|secret)=[^&;\s'\"]+")


def _redacted(text: str) -> str:
    return _SECRET.sub(lambda m: f"{m.group(1)}=***", text)


def explain_storage_error(
    exc: BaseException, container: str, conn_id: str, blob: str | None = None
) -> StorageError:
    """Turn an Azure SDK exception into a :class:`StorageError` naming the cause and where
    (container, and the blob when one was being read).

    Never includes credentials: the Azure messages name the account and the request, not the
    key, and anything that looks like a signature or key is masked anyway.
    """
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    where = f"(connection {conn_id!r})"
    target = f"blob {blob!r} in container {container!r}" if blob else f"container {container!r}"
    if isinstance(exc, ServiceRequestError):
        detail = _redacted(f"{type(exc).__name__}: {exc}")[:300]
        return StorageError(f"storage unreachable {where} while reading {target}: {detail}")
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "error_code", None) or status or "?"
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        # 403 AuthenticationFailed / AuthorizationFailure: a wrong key signs requests wrongly.
        return StorageError(
            f"storage authentication failed {where} for {target}: check the account key, SAS "
            f"token or permissions ({code})"
        )
    if isinstance(exc, ResourceNotFoundError):
        return StorageError(f"container {container!r} not found {where}")
    if isinstance(exc, HttpResponseError):
        return StorageError(f"storage request on {target} failed {where}: {code}")
    return StorageError(f"storage error on {target} {where}: {type(exc).__name__}")
