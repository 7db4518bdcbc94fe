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
        if self.cache is not None and name not in self._rows:
            self._rows[name] = self._load_cached(name)
        if name not in self._rows:
            try:
                data = blob_source.read_blob(self.hook, self.container, name)
            except Exception as exc:
                raise blob_source.explain_storage_error(exc, self.container, self.conn_id) from None
            self._rows[name] = None if data is None else blob_source.parse_csv(data)
        return self._rows[name]

    def _storage(self, call: Any) -> Any:
        try:
            return call()
        except Exception as exc:
            raise blob_source.explain_storage_error(exc, self.container, self.conn_id) from None

    def _load_cached(self, name: str) -> Sequence[dict[str, Any]] | None:
        """The rows through the local cache: one properties request, a download only if the
        blob changed (or the cache is cold), and then only the rows a caller indexes are read."""
        from include.painting_simulator import blob_cache

        def client() -> Any:
            service = self.hook.blob_service_client
            return service.get_blob_client(container=self.container, blob=name)

        return blob_cache.load_rows(
            self.cache, self._storage(client), blob_source.parse_csv, self._storage
        )


def resume_from(stored: dict[str, Any] | None, run_id: str) -> sequence.Position | None:
    """Where this run starts, from the stored ``painting_position``.

    The position records which run advanced it and where that run's window started: if this
    run is the one that advanced it (it is being re-run after a clear), it sends the same
    window again rather than the next one.
    """
    if stored and stored.get("run_id") == run_id:
        stored = stored.get("window_start")
    return sequence.Position.from_json(stored)


def stored_position(window: dict[str, Any], run_id: str) -> dict[str, Any]:
    """What ``advance_position`` stores once the window is recorded (see :func:`resume_from`)."""
    return {**window["next_position"], "run_id": run_id, "window_start": window["window_start"]}


def map_rows(rows: list[tuple[str, int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One item per row: ``{"source", "body"}``, or ``{"source", "raw", "error"}`` if unmappable."""
    items: list[dict[str, Any]] = []
    for blob, row, data in rows:
        source = {"blob": blob, "row": row}
        try:
            items.append({"source": source, "body": row_mapping.to_request_body(data)})
        except row_mapping.RowMappingError as exc:
            error = f"blob {blob!r} row {row}: {exc}"
            items.append({"source": source, "raw": data, "error": error})
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
    for warning in window.warnings:
        log.warning("%s", warning)
    (first_blob, first_row, _), (last_blob, last_row, _) = window.rows[0], window.rows[-1]
    log.info(
        "window of %d rows from %s row %d to %s row %d in %s/%s (%d blob(s))%s",
        len(window.rows), first_blob, first_row, last_blob, last_row, reader.container, prefix,
        len(names), "; wrapped to the first blob" if window.wrapped else "",
    )  # fmt: skip
    return {
        "items": map_rows(window.rows),
        "window_start": position.to_json() if position else None,
        "next_position": window.next_position.to_json(),
    }
