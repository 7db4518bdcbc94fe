"""The rows of a container's CSV blobs for one task: listed, fetched, parsed, each at most once.

The one way the simulator and the replay read their input: :class:`BlobRows` lists the ``.csv``
blobs under a prefix and hands out each blob's entries (:class:`csv_format.Entries`) in one
straight path — ask storage for the blob's version, take the parsed rows from the worker's row
cache when that version is cached, else download, parse and cache them. Storage failures are
raised as :class:`blob_storage.StorageError` naming the container and the blob.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from include.painting_simulator import blob_storage, csv_format
from include.painting_simulator.sequence import NoRowsError

if TYPE_CHECKING:
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    from include.painting_simulator.row_cache import RowCache

Entries = Sequence[dict[str, Any]]
T = TypeVar("T")


class BlobRows:
    """The CSV blobs of one container, each read and parsed at most once per task."""

    def __init__(
        self, hook: WasbHook, container: str, conn_id: str, cache: RowCache | None = None
    ) -> None:
        self.hook, self.container, self.conn_id = hook, container, conn_id
        self._rows: dict[str, Entries | None] = {}
        # ETag and last-modified time of each blob read, stored with the position so that the
        # next run can tell that the blob it continues in was overwritten.
        self.versions: dict[str, dict[str, str]] = {}
        # With a cache, a blob whose ETag is unchanged is not downloaded again: see row_cache.
        self.cache = cache

    def list_csv(self, prefix: str) -> list[str]:
        """The ``.csv`` blobs under ``prefix``, sorted; :class:`NoRowsError` if there is none."""
        try:
            names = blob_storage.list_csv_blobs(self.hook, self.container, prefix)
        except Exception as exc:
            raise blob_storage.explain_storage_error(exc, self.container, self.conn_id) from None
        if not names:
            raise NoRowsError(
                f"no .csv blob under {self.container}/{prefix} (connection {self.conn_id!r})"
            )
        return names

    def load(self, name: str) -> Entries | None:
        """The blob's entries, or None if it disappeared since it was listed."""
        if name not in self._rows:
            loaded = self._read(name)
            if loaded is None:
                self._rows[name] = None
            else:
                self._rows[name], self.versions[name] = loaded
        return self._rows[name]

    def version(self, name: str) -> dict[str, str] | None:
        """``{"etag", "last_modified"}`` of ``name`` as this task read it (None if not read)."""
        return self.versions.get(name)

    def _storage(self, call: Callable[[WasbHook, str, str], T], blob: str) -> T:
        try:
            return call(self.hook, self.container, blob)
        except Exception as exc:
            raise blob_storage.explain_storage_error(
                exc, self.container, self.conn_id, blob=blob
            ) from None

    def _read(self, name: str) -> tuple[Entries, dict[str, str]] | None:
        if self.cache is None:
            fresh = self._download(name)
            return None if fresh is None else (fresh[0].entries(), fresh[1])
        # One properties request; the download only if this version is not cached yet.
        current = self._storage(blob_storage.blob_version, name)
        if current is None:
            return None
        account = self._storage(blob_storage.account_name, name)
        identity = self.cache.identity(account, self.container, name)
        cached = self.cache.open(identity, current["etag"])
        if cached is not None:
            return cached, current
        fresh = self._download(name)
        if fresh is None:
            return None
        indexed, version, size = fresh
        return self.cache.keep(identity, version["etag"], indexed, size=size), version

    def _download(self, name: str) -> tuple[csv_format.Indexed, dict[str, str], int] | None:
        """The blob's records (:func:`csv_format.index_csv`), its version and size in bytes, or
        None if it is gone. The version is the download's own: bytes and ETag belong together."""
        downloaded = self._storage(blob_storage.download_blob, name)
        if downloaded is None:
            return None
        data, version = downloaded
        return csv_format.index_csv(data), version, len(data)
