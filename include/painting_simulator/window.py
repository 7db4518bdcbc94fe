"""Pull one run's window: list the CSV blobs, find the start, take the rows, map them.

:func:`read_window` is the body of the DAG's ``pull_window`` task, kept here so that the DAG
file stays wiring. Storage is reached through :class:`BlobReader` (a ``WasbHook`` in the DAG).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from include.painting_simulator import blob_source, row_mapping, sequence

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    from include.painting_simulator.blob_cache import BlobCache

log = logging.getLogger("painting_simulator")


class BlobReader:
    """The CSV blobs of one container, each read and parsed at most once per task."""

    def __init__(
        self, hook: WasbHook, container: str, conn_id: str, cache: BlobCache | None = None
    ) -> None:
        self.hook, self.container, self.conn_id = hook, container, conn_id
        self._rows: dict[str, Sequence[dict[str, Any]] | None] = {}
        # ETag and last-modified time of each blob read, stored with the position so that the
        # next run can tell that the blob it continues in was overwritten.
        self.versions: dict[str, dict[str, str]] = {}
        # With a cache, a blob whose ETag is unchanged is not downloaded again: see blob_cache.
        self.cache = cache

    def list_csv(self, prefix: str) -> list[str]:
        try:
            names = blob_source.list_csv_blobs(self.hook, self.container, prefix)
        except Exception as exc:
            raise blob_source.explain_storage_error(exc, self.container, self.conn_id) from None
        if not names:
            raise sequence.NoRowsError(
                f"no .csv blob under {self.container}/{prefix} (connection {self.conn_id!r})"
            )
        return names

    def load(self, name: str) -> Sequence[dict[str, Any]] | None:
        """The blob's rows, or None if it disappeared since it was listed."""
        if name not in self._rows:
            loaded = self._load_cached(name) if self.cache is not None else self._download(name)
            if loaded is None:
                self._rows[name] = None
            else:
                self._rows[name], self.versions[name] = loaded
        return self._rows[name]

    def _storage(self, call: Any, blob: str) -> Any:
        try:
            return call()
        except Exception as exc:
            raise blob_source.explain_storage_error(
                exc, self.container, self.conn_id, blob=blob
            ) from None

    def _download(self, name: str) -> tuple[list[dict[str, Any]], dict[str, str]] | None:
        downloaded = self._storage(
            lambda: blob_source.download_blob(self.hook, self.container, name), name
        )
        if downloaded is None:
            return None
        data, version = downloaded
        return blob_source.parse_csv(data), version

    def _load_cached(self, name: str) -> tuple[Sequence[dict[str, Any]], dict[str, str]] | None:
        """The rows through the local cache: one properties request, a download only if the
        blob changed (or the cache is cold), and then only the rows a caller indexes are read."""
        from include.painting_simulator import blob_cache

        account = self._storage(lambda: self.hook.blob_service_client.account_name, name)
        return blob_cache.load_rows(
            self.cache,
            f"{account}/{self.container}/{name}",
            lambda: self._storage(
                lambda: blob_source.blob_version(self.hook, self.container, name), name
            ),
            lambda: self._storage(
                lambda: blob_source.download_blob(self.hook, self.container, name), name
            ),
            blob_source.parse_csv,
        )


def _start_json(stored: dict[str, Any] | None, run_id: str) -> dict[str, Any] | None:
    if stored and stored.get("run_id") == run_id:
        return stored.get("window_start")
    return stored


def resume_from(stored: dict[str, Any] | None, run_id: str) -> sequence.Position | None:
    """Where this run starts, from the stored ``painting_position``.

    The position records which run advanced it and where that run's window started: if this
    run is the one that advanced it (it is being re-run after a clear), it sends the same
    window again rather than the next one.
    """
    return sequence.Position.from_json(_start_json(stored, run_id))


def _version(reader: Any, blob: str) -> dict[str, str] | None:
    """``{"etag", "last_modified"}`` of ``blob`` as this run read it (test readers have none)."""
    return getattr(reader, "versions", {}).get(blob)


def _versioned(position: sequence.Position, reader: Any) -> dict[str, Any]:
    """The position's JSON plus the version of its blob as this run read it (if known).

    Extra keys: ``Position.from_json`` ignores them, and a position stored without them (by an
    older version) simply skips the change check.
    """
    return {**position.to_json(), **(_version(reader, position.blob) or {})}


def version_change(start: dict[str, Any] | None, current: dict[str, Any] | None) -> str | None:
    """A message if the blob of a stored position was overwritten since it was stored."""
    if not start or not current or not start.get("etag"):
        return None
    if start["etag"] == current.get("etag"):
        return None
    return (
        f"blob {start['blob']!r} was overwritten since the position was stored "
        f"(ETag {start['etag']} -> {current.get('etag')}, last modified "
        f"{start.get('last_modified')} -> {current.get('last_modified')}); the sequence goes on "
        f"by position: row {start.get('row', 0)} of its new content"
    )


def stored_position(window: dict[str, Any], run_id: str) -> dict[str, Any]:
    """What ``advance_position`` stores once the window is recorded (see :func:`resume_from`)."""
    return {**window["next_position"], "run_id": run_id, "window_start": window["window_start"]}


# Raw values longer than this are cut in error records (a 1 MB cell must not reach a ledger).
SHOWN_VALUE_CHARS = 200


def _raw(data: dict[str, Any]) -> dict[str, Any] | None:
    """The CSV row as recorded with its error: reserved keys dropped, long values cut."""
    raw = {
        column: value[:SHOWN_VALUE_CHARS] + f"… ({len(value)} characters)"
        if isinstance(value, str) and len(value) > SHOWN_VALUE_CHARS
        else value
        for column, value in data.items()
        if column not in blob_source.RESERVED_KEYS
    }
    return raw or None


def map_rows(rows: list[tuple[str, int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One item per row: ``{"source", "body"}``, or ``{"source", "raw", "error"}`` if the row
    could not be read (an error entry of :func:`blob_source.parse_csv`) or mapped."""
    items: list[dict[str, Any]] = []
    for blob, row, data in rows:
        source = {"blob": blob, "row": row}
        unreadable = blob_source.row_error(data)
        if unreadable is not None:
            reason, whole_file = unreadable
            where = (
                f"blob {blob!r} (whole file, not read)"
                if whole_file
                else f"blob {blob!r} row {row}"
            )
            items.append({"source": source, "raw": _raw(data), "error": f"{where}: {reason}"})
            continue
        try:
            items.append({"source": source, "body": row_mapping.to_request_body(data)})
        except row_mapping.RowMappingError as exc:
            error = f"blob {blob!r} row {row}: {exc}"
            items.append({"source": source, "raw": _raw(data), "error": error})
    return items


def read_window(
    reader: BlobReader,
    prefix: str,
    batch_size: int,
    *,
    start_row: int | None,
    stored: dict[str, Any] | None,
    run_id: str,
) -> dict[str, Any]:
    """The window of this run, as the XCom the downstream tasks read."""
    names = reader.list_csv(prefix)
    if start_row is not None:
        position: sequence.Position | None = sequence.locate(names, start_row, reader.load)
        log.info("start_row=%s is %s row %s", start_row, position.blob, position.row)
    else:
        position = resume_from(stored, run_id)
    window = sequence.take_window(names, position, batch_size, reader.load)
    if start_row is None and position is not None:
        change = version_change(_start_json(stored, run_id), _version(reader, position.blob))
        if change:
            rows = reader.load(position.blob)
            window.warnings.insert(0, f"{change} (now {len(rows or ())} row(s))")
    for warning in window.warnings:
        log.warning("container %r: %s", reader.container, warning)
    (first_blob, first_row, _), (last_blob, last_row, _) = window.rows[0], window.rows[-1]
    log.info(
        "window of %d rows from %s row %d to %s row %d in %s/%s (%d blob(s))%s",
        len(window.rows), first_blob, first_row, last_blob, last_row, reader.container, prefix,
        len(names), "; wrapped to the first blob" if window.wrapped else "",
    )  # fmt: skip
    return {
        "items": map_rows(window.rows),
        "window_start": _versioned(position, reader) if position else None,
        "next_position": _versioned(window.next_position, reader),
    }
