"""One simulator run's window: the body of the ``pull_window`` task.

:func:`read_window` reads top to bottom as the task does: list the CSV blobs
(:mod:`blob_rows`), find where this run starts (:mod:`sequence`: the stored position or
``start_row``), take ``batch_size`` rows, turn them into items (:mod:`row_mapping`). The result
is the XCom the downstream tasks read: ``{"items", "window_start", "next_position"}``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from include.painting_simulator import row_mapping, sequence

if TYPE_CHECKING:
    from include.painting_simulator.blob_rows import BlobRows

log = logging.getLogger("painting_simulator")


def read_window(
    reader: BlobRows,
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
        position = sequence.resume_from(stored, run_id)
    window = sequence.take_window(names, position, batch_size, reader.load)
    if start_row is None and position is not None:
        change = sequence.version_change(
            sequence.start_json(stored, run_id), reader.version(position.blob)
        )
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
        "items": row_mapping.to_items(window.rows),
        "window_start": sequence.versioned(position, reader.version(position.blob))
        if position
        else None,
        "next_position": sequence.versioned(
            window.next_position, reader.version(window.next_position.blob)
        ),
    }
