"""Turn the entries of a window into items: a request body per CSV row, or the error of the row.

The mapping is the original simulator's, field for field::

    machineId  <- "PAINT-" + machineId     timeStamp <- timeStamp (the string as written)
    thick      <- float(Thick)             voltage   <- float(PT_jo_V_1)
    current    <- float(PT_jo_A_Main_1)    temper    <- float(PT_jo_TP)
    issue      <- ""                       isSolved  <- False

Other columns are not sent. The optional column ``expected_issue`` is the verdict the row should
get (empty: normal; else an issue code): it becomes the item's ``expected`` (see
:mod:`records`), which the replay compares with the service's verdict.

A row that cannot be mapped (a required value missing, empty, not a finite number in ASCII
digits, or longer than ``MAX_VALUE_CHARS``) raises :class:`RowMappingError` naming the column;
:func:`to_items` turns that, and the error entries of :mod:`csv_format`, into error items
(``records.Item`` with ``raw`` and ``error``) that are recorded instead of sent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from include.painting_simulator import csv_format
from include.painting_simulator.records import Item

MACHINE_ID_PREFIX = "PAINT-"
# The optional column of the verdict a row is expected to get (docs/csv-input.md).
EXPECTED_ISSUE = "expected_issue"

# Request field <- CSV column, for the four process values sent as floats.
NUMERIC_FIELDS: dict[str, str] = {
    "thick": csv_format.THICKNESS,
    "voltage": csv_format.VOLTAGE,
    "current": csv_format.CURRENT,
    "temper": csv_format.TEMPERATURE,
}
# No real reading needs more; a longer value (a broken export, a 1 MB cell) is not sent.
MAX_VALUE_CHARS = 1000
# Raw values longer than this are cut in error items (a 1 MB cell must not reach a ledger).
SHOWN_VALUE_CHARS = 200


class RowMappingError(ValueError):
    """A row that cannot become a request body; ``column`` names the culprit."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"column {column!r}: {reason}")
        self.column = column
        self.reason = reason


def _text(row: Mapping[str, Any], column: str, strip: bool = True) -> str:
    if column not in row:
        raise RowMappingError(column, "missing")
    value = row[column]
    text = "" if value is None else str(value)
    if not text.strip():
        raise RowMappingError(column, "empty")
    if len(text) > MAX_VALUE_CHARS:
        raise RowMappingError(
            column, f"value is {len(text)} characters long (at most {MAX_VALUE_CHARS} are sent)"
        )
    return text.strip() if strip else text


def _number(row: Mapping[str, Any], column: str) -> float:
    """A number is ASCII digits with an optional sign, one ``.`` and an optional exponent
    (spaces around it allowed). ``float()`` alone also reads ``2_0.1`` (as 20.1) and other
    scripts' digits (Arabic-Indic ``١٩``): those are not numbers here."""
    text = _text(row, column)
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is None or not text.isascii() or "_" in text:
        raise RowMappingError(column, f"{text[:50]!r} is not a number")
    if not math.isfinite(number):
        # JSON has no NaN/Infinity: the service could not even parse the request.
        raise RowMappingError(column, f"{text[:50]!r} is not a finite number")
    return number


def to_request_body(row: Mapping[str, Any]) -> dict[str, Any]:
    """Map a CSV row (column -> text) to the ``POST /predict/`` body, or raise RowMappingError."""
    body: dict[str, Any] = {
        "machineId": MACHINE_ID_PREFIX + _text(row, csv_format.MACHINE_ID),
        # as written: the service parses it
        "timeStamp": _text(row, csv_format.TIMESTAMP, strip=False),
    }
    for field, column in NUMERIC_FIELDS.items():
        body[field] = _number(row, column)
    body["issue"] = ""
    body["isSolved"] = False
    return body


def _raw(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The CSV row as recorded with its error: reserved keys dropped, long values cut."""
    raw = {
        column: value[:SHOWN_VALUE_CHARS] + f"… ({len(value)} characters)"
        if isinstance(value, str) and len(value) > SHOWN_VALUE_CHARS
        else value
        for column, value in entry.items()
        if column not in csv_format.RESERVED_KEYS
    }
    return raw or None


def expected_issue(row: Mapping[str, Any]) -> tuple[bool, str | None]:
    """``(has an expectation, expected issue code or None for normal)`` of a CSV row, from its
    column ``expected_issue`` (or RowMappingError for a value too long to be a code)."""
    if EXPECTED_ISSUE not in row:
        return False, None
    text = "" if row[EXPECTED_ISSUE] is None else str(row[EXPECTED_ISSUE]).strip()
    if len(text) > MAX_VALUE_CHARS:
        raise RowMappingError(
            EXPECTED_ISSUE, f"value is {len(text)} characters long (an issue code is expected)"
        )
    return True, text or None


def to_item(blob: str, row: int, entry: Mapping[str, Any]) -> Item:
    """The item of one entry of :func:`csv_format.parse_csv`: its request body (and
    expectation), or the error of a row that could not be read (an error entry: its cells, the
    expectation too, cannot be trusted) or mapped, naming blob, row and column."""
    source = {"blob": blob, "row": row}
    unreadable = csv_format.row_error(entry)
    if unreadable is not None:
        reason, whole_file = unreadable
        where = (
            f"blob {blob!r} (whole file, not read)" if whole_file else f"blob {blob!r} row {row}"
        )
        return {"source": source, "raw": _raw(entry), "error": f"{where}: {reason}"}
    expectation: tuple[bool, str | None] = (False, None)  # a malformed one is not kept
    item: Item
    try:
        expectation = expected_issue(entry)
        item = {"source": source, "body": to_request_body(entry)}
    except RowMappingError as exc:
        item = {"source": source, "raw": _raw(entry), "error": f"blob {blob!r} row {row}: {exc}"}
    if expectation[0]:
        item["expected"] = expectation[1]
    return item


def to_items(rows: Iterable[tuple[str, int, Mapping[str, Any]]]) -> list[Item]:
    """One item per ``(blob, row, entry)`` of a window, in order."""
    return [to_item(blob, row, entry) for blob, row, entry in rows]
