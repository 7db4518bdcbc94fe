"""Turn one CSV row of process data into the model service's request body.

The mapping is the original simulator's, field for field::

    machineId  <- "PAINT-" + machineId     timeStamp <- timeStamp (the string as written)
    thick      <- float(Thick)             voltage   <- float(PT_jo_V_1)
    current    <- float(PT_jo_A_Main_1)    temper    <- float(PT_jo_TP)
    issue      <- ""                       isSolved  <- False

Other columns are ignored. A row that cannot be mapped (a required value missing, empty, not a
finite number, or longer than ``MAX_VALUE_CHARS``) raises :class:`RowMappingError` naming the
column, so the caller can record it instead of sending it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MACHINE_ID_PREFIX = "PAINT-"

# Request field <- CSV column, for the four process values sent as floats.
NUMERIC_FIELDS: dict[str, str] = {
    "thick": "Thick",
    "voltage": "PT_jo_V_1",
    "current": "PT_jo_A_Main_1",
    "temper": "PT_jo_TP",
}
REQUIRED_COLUMNS: tuple[str, ...] = ("machineId", "timeStamp", *NUMERIC_FIELDS.values())
# No real reading needs more; a longer value (a broken export, a 1 MB cell) is not sent.
MAX_VALUE_CHARS = 1000


class RowMappingError(ValueError):
    """A row that cannot become a request body; ``column`` names the culprit."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"column {column!r}: {reason}")
        self.column = column
        self.reason = reason


def missing_columns(header: list[str] | tuple[str, ...]) -> list[str]:
    """Required columns absent from a CSV header, in the order they are required."""
    present = set(header)
    return [column for column in REQUIRED_COLUMNS if column not in present]


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
    text = _text(row, column)
    try:
        number = float(text)
    except ValueError:
        raise RowMappingError(column, f"{text[:50]!r} is not a number") from None
    if not math.isfinite(number):
        # JSON has no NaN/Infinity: the service could not even parse the request.
        raise RowMappingError(column, f"{text[:50]!r} is not a finite number")
    return number


def to_request_body(row: Mapping[str, Any]) -> dict[str, Any]:
    """Map a CSV row (column -> text) to the ``POST /predict/`` body, or raise RowMappingError."""
    body: dict[str, Any] = {
        "machineId": MACHINE_ID_PREFIX + _text(row, "machineId"),
        "timeStamp": _text(row, "timeStamp", strip=False),  # as written: the service parses it
    }
    for field, column in NUMERIC_FIELDS.items():
        body[field] = _number(row, column)
    body["issue"] = ""
    body["isSolved"] = False
    return body
