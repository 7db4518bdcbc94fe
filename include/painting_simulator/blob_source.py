"""Read the simulator's CSV blobs from Azure Blob Storage through Airflow's ``WasbHook``.

Only called from inside tasks: pandas and the Azure SDK are imported lazily so that parsing a
DAG file stays cheap.

Encoding policy: UTF-8 (a byte-order mark is accepted and dropped); if the bytes are not valid
UTF-8 they are read as CP949, the encoding of Korean Windows exports. Every value is kept as the
text written in the file; converting numbers is the job of :mod:`row_mapping`.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook


def is_csv(name: str) -> bool:
    return name.lower().endswith(".csv")


def list_csv_blobs(hook: WasbHook, container: str, prefix: str) -> list[str]:
    """Every ``.csv`` blob under ``prefix``, recursively (no virtual folders), sorted by name."""
    names = hook.get_blobs_list_recursive(container_name=container, prefix=prefix or None)
    return sorted(name for name in names if is_csv(name))


def read_blob(hook: WasbHook, container: str, blob: str) -> bytes | None:
    """The blob's bytes, or ``None`` if it no longer exists."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return hook.download(container_name=container, blob_name=blob).readall()
    except ResourceNotFoundError:
        return None


def decode(data: bytes) -> str:
    """UTF-8 (BOM dropped), falling back to CP949 for Korean Windows exports."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp949")


def parse_csv(data: bytes) -> list[dict[str, Any]]:
    """Parse CSV bytes into rows of column -> text (header on the first line)."""
    import pandas as pd

    text = decode(data)
    if not text.strip():
        return []
    frame = pd.read_csv(
        io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=True
    )
    return frame.to_dict(orient="records")


class StorageError(RuntimeError):
    """Storage could not be read; the message says why in words a user can act on."""


def explain_storage_error(exc: BaseException, container: str, conn_id: str) -> StorageError:
    """Turn an Azure SDK exception into a :class:`StorageError` naming the cause.

    Never includes credentials: the Azure messages name the account and the request, not the key.
    """
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    where = f"(connection {conn_id!r})"
    if isinstance(exc, ServiceRequestError):
        return StorageError(f"storage unreachable {where}: {type(exc).__name__}: {exc}")
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "error_code", None) or status or "?"
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        # 403 AuthenticationFailed / AuthorizationFailure: a wrong key signs requests wrongly.
        return StorageError(
            f"storage authentication failed {where}: check the account key, SAS token or "
            f"permissions ({code})"
        )
    if isinstance(exc, ResourceNotFoundError):
        return StorageError(f"container {container!r} not found {where}")
    if isinstance(exc, HttpResponseError):
        return StorageError(f"storage request on container {container!r} failed {where}: {code}")
    return StorageError(f"storage error on container {container!r} {where}: {type(exc).__name__}")
