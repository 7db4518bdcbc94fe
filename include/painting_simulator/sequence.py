"""Which rows a run sends: the sequence of all CSV rows, and the stored position in it.

All ``.csv`` blobs under the prefix, sorted by name, form one sequence. A position is
``(blob name, 0-based data row in that blob)``, not a global row number, so that a blob added
later simply joins the sequence where its name sorts, and a blob that disappears is skipped.
Each run takes the next ``batch_size`` rows; a window may span blobs and wraps from the end of
the last blob to the start of the first. A window never holds the same row twice: if the whole
sequence is shorter than the batch, the window is the whole sequence.

Rows are loaded through a callback (``load(blob) -> rows or None if the blob is gone``) so the
arithmetic is independent of storage and unit-tested on lists.

The simulator stores its position in the Variable ``painting_position`` (only its
``advance_position`` task writes it): ``{blob, row, etag, last_modified, run_id, window_start}``,
see :func:`stored_position` and :func:`resume_from`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]
Loader = Callable[[str], "Sequence[Row] | None"]


class NoRowsError(RuntimeError):
    """The sequence is empty: no CSV blob under the prefix has a data row."""


@dataclass(frozen=True)
class Position:
    """Where the next window starts: ``row`` of ``blob`` (may equal its length: blob done)."""

    blob: str
    row: int

    def to_json(self) -> dict[str, Any]:
        return {"blob": self.blob, "row": self.row}

    @classmethod
    def from_json(cls, value: Any) -> Position | None:
        """Parse the stored form; ``None``/empty means "start of the sequence"."""
        if not value:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("blob"), str):
            raise ValueError(f"stored position {value!r} is not {{'blob': name, 'row': n}}")
        row = value.get("row", 0)
        if not isinstance(row, int) or isinstance(row, bool) or row < 0:
            raise ValueError(f"stored position {value!r} has an invalid row")
        return cls(value["blob"], row)


@dataclass
class Window:
    """The rows of one run, where the next run starts, and what was noticed on the way."""

    rows: list[tuple[str, int, Row]]  # (blob, 0-based data row, row)
    next_position: Position
    warnings: list[str] = field(default_factory=list)
    wrapped: bool = False


def _start(names: Sequence[str], position: Position | None, warnings: list[str]) -> tuple[int, int]:
    if position is None:
        return 0, 0
    if position.blob in names:
        return names.index(position.blob), position.row
    # The blob we were in is gone: continue with the next name after it.
    index = bisect.bisect_right(list(names), position.blob) % len(names)
    warnings.append(
        f"blob {position.blob!r} of the stored position is no longer under the prefix; "
        f"continuing with {names[index]!r}"
    )
    return index, 0


def take_window(
    names: Sequence[str], position: Position | None, batch_size: int, load: Loader
) -> Window:
    """Take the next ``batch_size`` rows of the sequence formed by ``names`` (sorted here)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    names = sorted(names)
    if not names:
        raise NoRowsError("no CSV blob under the prefix")
    warnings: list[str] = []
    index, row = _start(names, position, warnings)
    taken: list[tuple[str, int, Row]] = []
    seen: set[tuple[str, int]] = set()
    no_rows: set[str] = set()
    wrapped = False
    empty_streak = 0  # consecutive blobs that gave no row: a full lap of them means no data
    end = Position(names[index], row)
    while len(taken) < batch_size and empty_streak <= len(names):
        name = names[index]
        rows = load(name)
        if rows is None:
            warnings.append(f"blob {name!r} disappeared before it could be read; skipped")
        elif not rows and name not in no_rows:
            no_rows.add(name)
            warnings.append(f"blob {name!r} has no data rows (empty or a header only); skipped")
        count = len(rows or ())
        if row < count:
            empty_streak = 0
            lapped = False
            stop = min(count, row + batch_size - len(taken))
            for i in range(row, stop):
                if (name, i) in seen:  # back where the window started: the sequence is
                    lapped, stop = True, i  # shorter than the batch
                    break
                seen.add((name, i))
                taken.append((name, i, rows[i]))  # type: ignore[index]
            row = stop
            end = Position(name, row)
            if lapped or len(taken) >= batch_size:
                break
        else:
            empty_streak += 1
        index = (index + 1) % len(names)
        row = 0
        wrapped = wrapped or index == 0
    if not taken:
        raise NoRowsError(f"none of the {len(names)} CSV blob(s) under the prefix has a data row")
    return Window(taken, end, warnings, wrapped)


def locate(names: Sequence[str], start_row: int, load: Loader) -> Position:
    """The position of global row ``start_row`` (0-based, wrapping) in the sequence."""
    if start_row < 0:
        raise ValueError(f"start_row must be 0 or more, got {start_row}")
    names = sorted(names)
    counts = [(name, len(load(name) or ())) for name in names]
    total = sum(count for _, count in counts)
    if total == 0:
        raise NoRowsError("no CSV blob under the prefix has a data row")
    offset = start_row % total
    for name, count in counts:
        if offset < count:
            return Position(name, offset)
        offset -= count
    raise AssertionError("unreachable: offset is below the total")


# ---------------------------------------------------------------------------------------------
# The stored position (Variable painting_position)


def start_json(stored: dict[str, Any] | None, run_id: str) -> dict[str, Any] | None:
    """The stored JSON this run starts from: the window start when this run stored it."""
    if stored and stored.get("run_id") == run_id:
        return stored.get("window_start")
    return stored


def resume_from(stored: dict[str, Any] | None, run_id: str) -> Position | None:
    """Where this run starts, from the stored ``painting_position``.

    The position records which run advanced it and where that run's window started: if this
    run is the one that advanced it (it is being re-run after a clear), it sends the same
    window again rather than the next one.
    """
    return Position.from_json(start_json(stored, run_id))


def versioned(position: Position, version: dict[str, str] | None) -> dict[str, Any]:
    """The position's JSON plus the version (``{"etag", "last_modified"}``) of its blob as this
    run read it, if known.

    Extra keys: ``Position.from_json`` ignores them, and a position stored without them (by an
    older version) simply skips the change check.
    """
    return {**position.to_json(), **(version or {})}


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
