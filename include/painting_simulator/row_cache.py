"""A worker-local cache of parsed CSV blobs on disk, so that a tick reads only its window.

Airflow tasks are short-lived processes: without a cache every tick would download and parse the
whole blob again. Here the index :func:`csv_format.index_csv` made of a blob (its data records
as UTF-8 text, where each starts) is kept on local disk, keyed by the blob (account, container,
name), its ETag and the CSV format's code (:func:`csv_format.format_fingerprint`: a change to
any other module keeps the cache). A tick asks storage for the blob's properties (one request
per blob it touches) and, if the ETag is the cached one, reads and parses only the records of
its window (:class:`csv_format.Entries`). The first tick after a blob changes downloads and
indexes it once (the ETag is taken from that download's own answer, so a blob replaced between
the two requests is never cached under the wrong ETag).

:class:`blob_rows.BlobRows` decides when to read and when to build; this module only stores and
reads. It never parses CSV: records are stored as ``index_csv`` found them and turned into
entries by ``csv_format``.

One file per blob version, ``<blob key>-<version key>.rows``::

    records       the UTF-8 text of the data records, back to back
    starts        n + 1 little-endian uint64: start of each record, then the end of the last
    undecodable   n bytes: 1 where a line of the record was neither UTF-8 nor CP949
    header        JSON: columns, delimiter, the whole-file error if any
    trailer       MAGIC, n, length of the records, length of the header (uint64s)

It is written to a temporary file in the same directory and renamed into place, so concurrent
builders (several task processes on one worker) never see each other's half-written files, and a
reader keeps the version it opened even if it is replaced. A file that is truncated or not in this
format is ignored and rebuilt; wiping the directory only costs a rebuild. Each worker builds its
own cache (``PAINTING_CACHE_DIR``, default ``$AIRFLOW_HOME/painting_cache``).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import struct
import sys
import tempfile
from array import array
from collections.abc import Sequence
from typing import Any

from include.painting_simulator import csv_format
from include.painting_simulator.csv_format import format_fingerprint

log = logging.getLogger("painting_simulator")

ENV_CACHE_DIR = "PAINTING_CACHE_DIR"
DEFAULT_CACHE_SUBDIR = "painting_cache"
SUFFIX = ".rows"
MAGIC = b"PAINTRW2"
TRAILER = struct.Struct("<8sQQQ")  # magic, record count, length of the text, of the header
OFFSET = struct.Struct("<Q")

Entries = csv_format.Entries


def default_cache_dir(environ: Any = os.environ) -> str:
    """``PAINTING_CACHE_DIR``, else ``$AIRFLOW_HOME/painting_cache`` (local to each worker)."""
    configured = (environ.get(ENV_CACHE_DIR) or "").strip()
    if configured:
        return configured
    home = environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    return os.path.join(home, DEFAULT_CACHE_SUBDIR)


class CacheFileInvalid(Exception):
    """A cache file is truncated or not in the expected format (it is rebuilt)."""


class CachedRows(csv_format.Entries):
    """The entries of one cached blob, read lazily: ``len()``, ``rows[i]`` and ``rows[a:b]``
    read (three ``pread`` calls) and parse only the records they need."""

    def __init__(self, path: str) -> None:
        self.path = path
        # The open descriptor pins this version even if a builder renames a new one over it.
        self._file = open(path, "rb")  # noqa: SIM115 (lives as long as the sequence)
        try:
            header, count = self._validate()
        except BaseException:
            self._file.close()
            raise
        super().__init__(header, count)

    def _validate(self) -> tuple[csv_format.Header, int]:
        fd = self._file.fileno()
        size = os.fstat(fd).st_size
        if size < TRAILER.size:
            raise CacheFileInvalid(f"{self.path}: {size} bytes, shorter than the trailer")
        magic, count, text_len, header_len = TRAILER.unpack(
            os.pread(fd, TRAILER.size, size - TRAILER.size)
        )
        self._starts_at = text_len
        self._flags_at = text_len + OFFSET.size * (count + 1)
        header_at = self._flags_at + count
        if magic != MAGIC or size != header_at + header_len + TRAILER.size:
            raise CacheFileInvalid(f"{self.path}: not a complete rows file")
        first = OFFSET.unpack(os.pread(fd, OFFSET.size, self._starts_at))[0]
        last = OFFSET.unpack(os.pread(fd, OFFSET.size, self._starts_at + OFFSET.size * count))[0]
        if first != 0 or last != text_len:
            raise CacheFileInvalid(f"{self.path}: offsets do not match the data")
        try:
            header = csv_format.Header.from_json(json.loads(os.pread(fd, header_len, header_at)))
        except (ValueError, KeyError, TypeError) as exc:
            raise CacheFileInvalid(f"{self.path}: unreadable header ({exc})") from None
        return header, count

    def close(self) -> None:
        self._file.close()

    def _records(self, start: int, stop: int) -> tuple[bytes, Sequence[int], bytes]:
        fd = self._file.fileno()
        raw = os.pread(fd, OFFSET.size * (stop - start + 1), self._starts_at + OFFSET.size * start)
        offsets = array("Q")
        offsets.frombytes(raw)
        if sys.byteorder != "little":
            offsets.byteswap()
        base = offsets[0]
        text = os.pread(fd, offsets[-1] - base, base)
        flags = os.pread(fd, stop - start, self._flags_at + start)
        return text, [offset - base for offset in offsets], flags


class RowCache:
    """Cached rows of blob versions in one local directory (created on first write)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    @staticmethod
    def identity(account: str, container: str, blob: str) -> str:
        """What names one blob in the cache: account, container and blob name."""
        return f"{account}/{container}/{blob}"

    def _blob_key(self, identity: str) -> str:
        return hashlib.sha256(identity.encode()).hexdigest()[:32]

    def path(self, identity: str, etag: str) -> str:
        """Where the rows of this version of the blob live (``identity`` names the blob)."""
        version = hashlib.sha256(f"{etag}\0{format_fingerprint()}".encode()).hexdigest()[:16]
        return os.path.join(self.directory, f"{self._blob_key(identity)}-{version}{SUFFIX}")

    def open(self, identity: str, etag: str) -> CachedRows | None:
        """The cached rows of this version, or ``None`` (missing, partial or corrupt: rebuild)."""
        path = self.path(identity, etag)
        try:
            return CachedRows(path)
        except FileNotFoundError:
            return None
        except OSError as exc:  # e.g. an unreadable directory: work without the cache
            log.warning("row cache not readable, reading the blob (%s)", exc)
            return None
        except CacheFileInvalid as exc:
            log.warning("rebuilding the row cache of a blob: %s", exc)
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            return None

    def store(self, identity: str, etag: str, indexed: csv_format.Indexed) -> CachedRows:
        """Write the records of this version (atomically) and drop the blob's older versions."""
        path = self.path(identity, etag)
        os.makedirs(self.directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".build-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                count = len(indexed.starts) - 1
                if len(indexed.undecodable) != count or indexed.starts[-1] != len(indexed.text):
                    raise ValueError("the index does not match its text")
                fh.write(indexed.text)
                fh.write(_little_endian_uint64(indexed.starts))
                fh.write(indexed.undecodable)
                header = json.dumps(indexed.header.to_json(), ensure_ascii=False).encode()
                fh.write(header)
                fh.write(TRAILER.pack(MAGIC, count, len(indexed.text), len(header)))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            raise
        for older in glob.glob(os.path.join(self.directory, self._blob_key(identity) + "-*")):
            if older != path:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(older)
        return CachedRows(path)

    def keep(self, identity: str, etag: str, indexed: csv_format.Indexed, size: int) -> Entries:
        """Store a freshly indexed blob and return its entries as read from the cache; when the
        cache cannot be written (a full disk, an unwritable directory) the tick goes on with the
        index in memory."""
        log.info(
            "caching the rows of %s (%d bytes, ETag %s) in %s", identity, size, etag, self.directory
        )
        try:
            return self.store(identity, etag, indexed)
        except OSError as exc:
            log.warning("row cache not writable, keeping the rows in memory (%s)", exc)
            return indexed.entries()


def _little_endian_uint64(values: Sequence[int]) -> bytes:
    """``values`` as little-endian uint64s (a numpy array from the vectorised path, else ints)."""
    if hasattr(values, "dtype"):
        import numpy as np

        return np.asarray(values, dtype="<u8").tobytes()
    out = array("Q", values)
    if sys.byteorder != "little":  # the format is little-endian everywhere
        out.byteswap()
    return out.tobytes()
