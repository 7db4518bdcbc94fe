"""A worker-local cache of parsed CSV blobs on disk, so that a tick reads only its window.

Airflow tasks are short-lived processes: without a cache every tick would download and parse the
whole blob again. Here the entries :func:`csv_format.parse_csv` returned are kept on local disk,
keyed by the blob (account, container, name), its ETag and the CSV format's code
(:func:`csv_format.format_fingerprint`: a change to any other module keeps the cache). A tick asks
storage for the blob's properties (one request per blob it touches) and, if the ETag is the
cached one, reads only the rows of its window. The first tick after a blob changes downloads and
parses it once (the ETag is taken from that download's own answer, so a blob replaced between
the two requests is never cached under the wrong ETag).

:class:`blob_rows.BlobRows` decides when to read and when to build; this module only stores and
reads. Rows are stored opaquely, exactly as ``parse_csv`` returned them (JSON-serialisable
dicts, reserved keys included): this module never parses CSV.

One file per blob version, ``<blob key>-<version key>.rows``::

    row 0 as JSON\\n row 1 as JSON\\n ...          JSON lines, in order
    offsets                                       n + 1 little-endian uint64: start of each line,
                                                  then the end of the last one
    trailer                                       MAGIC, n, length of the JSON lines (uint64s)

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
import itertools
import json
import logging
import os
import struct
import sys
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from include.painting_simulator.csv_format import format_fingerprint

log = logging.getLogger("painting_simulator")

ENV_CACHE_DIR = "PAINTING_CACHE_DIR"
DEFAULT_CACHE_SUBDIR = "painting_cache"
SUFFIX = ".rows"
MAGIC = b"PAINTRW1"
TRAILER = struct.Struct("<8sQQ")  # magic, row count, length of the JSON lines
OFFSET = struct.Struct("<Q")
# Rows decoded per disk read: a window of ten rows costs one small read, a replay streams.
BLOCK_ROWS = 256

Row = dict[str, Any]


def default_cache_dir(environ: Any = os.environ) -> str:
    """``PAINTING_CACHE_DIR``, else ``$AIRFLOW_HOME/painting_cache`` (local to each worker)."""
    configured = (environ.get(ENV_CACHE_DIR) or "").strip()
    if configured:
        return configured
    home = environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    return os.path.join(home, DEFAULT_CACHE_SUBDIR)


class CacheFileInvalid(Exception):
    """A cache file is truncated or not in the expected format (it is rebuilt)."""


class CachedRows(Sequence[Row]):
    """The rows of one cached blob, read lazily: ``len()``, ``rows[i]`` and ``rows[a:b]``
    read only the offsets and lines they need."""

    def __init__(self, path: str) -> None:
        self.path = path
        # The open descriptor pins this version even if a builder renames a new one over it.
        self._file = open(path, "rb")  # noqa: SIM115 (lives as long as the sequence)
        try:
            self._count, self._data_len = self._validate()
        except BaseException:
            self._file.close()
            raise
        self._offsets_at = self._data_len
        self._block_start = 0
        self._block: list[bytes] = []

    def _validate(self) -> tuple[int, int]:
        fd = self._file.fileno()
        size = os.fstat(fd).st_size
        if size < TRAILER.size:
            raise CacheFileInvalid(f"{self.path}: {size} bytes, shorter than the trailer")
        magic, count, data_len = TRAILER.unpack(os.pread(fd, TRAILER.size, size - TRAILER.size))
        if magic != MAGIC or size != data_len + OFFSET.size * (count + 1) + TRAILER.size:
            raise CacheFileInvalid(f"{self.path}: not a complete rows file")
        first = OFFSET.unpack(os.pread(fd, OFFSET.size, data_len))[0]
        last = OFFSET.unpack(os.pread(fd, OFFSET.size, data_len + OFFSET.size * count))[0]
        if first != 0 or last != data_len:
            raise CacheFileInvalid(f"{self.path}: offsets do not match the data")
        return count, data_len

    def close(self) -> None:
        self._file.close()

    def __len__(self) -> int:
        return self._count

    def _lines(self, start: int, stop: int) -> list[bytes]:
        """The JSON lines of rows ``start`` to ``stop - 1`` (two reads: offsets, then data)."""
        if start >= stop:
            return []
        fd = self._file.fileno()
        raw = os.pread(fd, OFFSET.size * (stop - start + 1), self._offsets_at + OFFSET.size * start)
        offsets = array("Q")
        offsets.frombytes(raw)
        base = offsets[0]
        data = os.pread(fd, offsets[-1] - base, base)
        return [data[a - base : b - base] for a, b in itertools.pairwise(offsets)]

    def _row(self, index: int) -> Row:
        if not self._block_start <= index < self._block_start + len(self._block):
            self._block_start = index
            self._block = self._lines(index, min(self._count, index + BLOCK_ROWS))
        return json.loads(self._block[index - self._block_start])

    @overload
    def __getitem__(self, index: int) -> Row: ...
    @overload
    def __getitem__(self, index: slice) -> list[Row]: ...
    def __getitem__(self, index: int | slice) -> Row | list[Row]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._count)
            if step != 1:
                return [self._row(i) for i in range(start, stop, step)]
            return [json.loads(line) for line in self._lines(start, stop)]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"row {index} out of range (0..{self._count - 1}) in {self.path}")
        return self._row(index)

    def __iter__(self) -> Iterator[Row]:
        for start in range(0, self._count, BLOCK_ROWS):
            yield from self[start : start + BLOCK_ROWS]


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

    def store(self, identity: str, etag: str, rows: Iterable[Row]) -> CachedRows:
        """Write the rows of this version (atomically) and drop the blob's older versions."""
        path = self.path(identity, etag)
        os.makedirs(self.directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".build-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                offsets = array("Q", [0])
                position = 0
                for row in rows:
                    line = json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
                    data = line.encode()
                    fh.write(data)
                    position += len(data)
                    offsets.append(position)
                if sys.byteorder != "little":  # the format is little-endian everywhere
                    offsets.byteswap()
                fh.write(offsets.tobytes())
                fh.write(TRAILER.pack(MAGIC, len(offsets) - 1, position))
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

    def keep(self, identity: str, etag: str, rows: list[Row], size: int) -> Sequence[Row]:
        """Store freshly parsed rows and return them as read from the cache; when the cache
        cannot be written (a full disk, an unwritable directory) the tick goes on with the rows
        in memory."""
        log.info(
            "caching the rows of %s (%d bytes, ETag %s) in %s", identity, size, etag, self.directory
        )
        try:
            return self.store(identity, etag, rows)
        except OSError as exc:
            log.warning("row cache not writable, keeping the rows in memory (%s)", exc)
            return rows
