"""Which rows a replay sends: the whole sequence's size, the shards, and the items chunk by chunk.

Rows are the simulator's sequence (all ``.csv`` blobs under the prefix, sorted by name), read
through :class:`blob_rows.BlobRows` and turned into items by :mod:`row_mapping`, exactly as a
simulator window is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from include.painting_simulator import row_mapping, sequence
from include.painting_simulator.records import Item

if TYPE_CHECKING:
    from include.painting_simulator.blob_rows import BlobRows

log = logging.getLogger("painting_simulator")

# Rows read, sent and recorded at a time: memory stays flat whatever the range.
CHUNK_ROWS = 5000


def count_rows(reader: BlobRows, prefix: str) -> int:
    """Rows of the whole sequence (builds the row cache of every blob on a cold worker)."""
    return sum(len(reader.load(name) or ()) for name in reader.list_csv(prefix))


def plan_shards(total: int, start_row: int, rows: int | None, shards: int) -> list[dict[str, int]]:
    """Split rows ``start_row .. start_row + rows - 1`` (default: to the end) into ``shards``
    contiguous ranges of nearly equal size."""
    if start_row < 0 or shards < 1 or (rows is not None and rows < 1):
        raise ValueError(f"start_row={start_row}, rows={rows}, shards={shards}: out of range")
    if start_row >= total:
        raise ValueError(f"start_row={start_row} is past the end of the sequence ({total} rows)")
    available = total - start_row
    count = available if rows is None else rows
    if count > available:
        raise ValueError(
            f"start_row={start_row} + rows={rows} goes past the end of the sequence "
            f"({total} rows); at most {available} rows from there"
        )
    shards = min(shards, count)
    base, extra = divmod(count, shards)
    specs, row = [], start_row
    for shard in range(shards):
        size = base + (shard < extra)
        specs.append({"shard": shard, "shards": shards, "start_row": row, "rows": size})
        row += size
    return specs


def iter_chunks(
    reader: BlobRows, prefix: str, start_row: int, rows: int, chunk_rows: int = CHUNK_ROWS
) -> Iterator[tuple[int, list[Item]]]:
    """``(global row of the chunk's first row, items)`` for the range, ``chunk_rows`` at a time;
    items as the simulator's window builds them (a body, or the error of an unmappable row)."""
    names = reader.list_csv(prefix)
    position: sequence.Position | None = sequence.locate(names, start_row, reader.load)
    first, left = start_row, rows
    while left > 0:
        window = sequence.take_window(names, position, min(chunk_rows, left), reader.load)
        for warning in window.warnings:
            log.warning("%s", warning)
        yield first, row_mapping.to_items(window.rows)
        first += len(window.rows)
        left -= len(window.rows)
        position = window.next_position
