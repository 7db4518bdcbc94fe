"""The CSV format of the process data: bytes of a blob -> one entry per data row.

No storage and no Airflow here: :mod:`blob_storage` fetches the bytes, this module reads them,
:mod:`row_mapping` turns an entry into a request body. The row cache (:mod:`row_cache`) keys
its files by this module's code (:func:`format_fingerprint`): a change here rebuilds them.

**Which CSV files are accepted** (:func:`parse_csv`; the user-facing rules: ``docs/csv-input.md``):

* Encoding, decided per line: UTF-8 (a byte-order mark at the start is dropped); a line that is
  not valid UTF-8 is read as CP949, the encoding of Korean Windows exports (so a file made of
  concatenated UTF-8 and CP949 exports reads too). A data line that is neither becomes an error
  entry for its row naming the column; a header that is neither makes the file unreadable.
* The first non-blank line is the header. The delimiter is ``,``; a header that only has the
  required columns when split on ``;`` or a tab selects that delimiter instead, and so does
  Excel's ``sep=;`` first line. Values keep the text written in the file (quotes removed);
  converting numbers is :mod:`row_mapping`'s job.
* Blank lines and lines whose cells are all empty are not rows; rows are numbered from 0 in
  file order over the remaining lines. A row with more values than the header has columns is
  an error (which value is extra cannot be told); a shorter row has empty cells at its end.
* Column names are stripped of spaces; an optional column named twice gets ``.1``, ``.2`` (as
  pandas does); a required column named twice makes the file unreadable (ambiguous).

:func:`parse_csv` returns one JSON-serialisable dict per data row, in file order. A row that
cannot be read is still there, as an *error entry*: the row's raw values plus
``ERROR_KEY: reason``. A file that cannot be read at all (not text, a required column missing
or duplicated in the header) is ONE error entry with ``FILE_ERROR_KEY: True`` and no values: it
takes one place in the sequence, so the simulation records it once and moves on. Empty files
and files with a (valid) header but no data row have no entries at all (the sequence skips
them with a warning).
"""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

# The columns a header must have: the request body is made of them (see row_mapping).
MACHINE_ID = "machineId"
TIMESTAMP = "timeStamp"
THICKNESS = "Thick"
VOLTAGE = "PT_jo_V_1"
CURRENT = "PT_jo_A_Main_1"
TEMPERATURE = "PT_jo_TP"
REQUIRED_COLUMNS: tuple[str, ...] = (
    MACHINE_ID,
    TIMESTAMP,
    THICKNESS,
    VOLTAGE,
    CURRENT,
    TEMPERATURE,
)

# Reserved keys of an error entry in parse_csv's output (no real CSV header uses them).
ERROR_KEY = "__error__"
FILE_ERROR_KEY = "__file__"
RESERVED_KEYS = frozenset({ERROR_KEY, FILE_ERROR_KEY})

DELIMITERS = (",", ";", "\t")
FALLBACK_ENCODING = "cp949"
# Text of the file quoted in an error message is cut to this many characters.
SHOWN_CHARS = 80


@functools.cache
def format_fingerprint() -> str:
    """A hash of this module's code: the row cache's key for "parsed by this version".

    Only this module decides what an entry is, so only a change here makes cached entries stale;
    editing any other module (the dashboard, the replay) keeps every worker's row cache.
    """
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def missing_columns(header: list[str] | tuple[str, ...]) -> list[str]:
    """Required columns absent from a CSV header, in the order they are required."""
    present = set(header)
    return [column for column in REQUIRED_COLUMNS if column not in present]


def _decode_line(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode(FALLBACK_ENCODING)
    except UnicodeDecodeError:
        return None


def decode_lines(data: bytes) -> tuple[list[str], set[int]]:
    """The lines of ``data`` (line endings kept) and the 0-based numbers of the lines that are
    neither UTF-8 nor CP949 (those are decoded with U+FFFD for the bad bytes)."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:  # the common case in one C call
        return list(io.StringIO(data.decode("utf-8"), newline="")), set()
    except UnicodeDecodeError:
        pass
    lines: list[str] = []
    undecodable: set[int] = set()
    # CP949's second bytes are never CR or LF, so the byte lines are the text lines.
    for number, raw in enumerate(data.splitlines(keepends=True)):
        text = _decode_line(raw)
        if text is None:
            undecodable.add(number)
            text = raw.decode(FALLBACK_ENCODING, errors="replace")
        lines.append(text)
    return lines, undecodable


def decode(data: bytes) -> str:
    """The text of ``data`` under the encoding policy (see the module doc).

    Raises ``UnicodeDecodeError`` if a line is neither UTF-8 nor CP949.
    """
    lines, undecodable = decode_lines(data)
    if undecodable:
        first = min(undecodable)
        raise UnicodeDecodeError(
            "utf-8/cp949", data, 0, len(data), f"line {first + 1} is neither UTF-8 nor CP949"
        )
    return "".join(lines)


def _shown(text: str) -> str:
    text = text.strip()
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…")


def file_error(reason: str) -> dict[str, Any]:
    """The single entry of a file that cannot be read at all."""
    return {ERROR_KEY: reason, FILE_ERROR_KEY: True}


def row_error(entry: Mapping[str, Any]) -> tuple[str, bool] | None:
    """``(reason, whole file?)`` if ``entry`` (from :func:`parse_csv`) is an error entry."""
    reason = entry.get(ERROR_KEY)
    if reason is None:
        return None
    return str(reason), bool(entry.get(FILE_ERROR_KEY))


def _is_blank(fields: list[str]) -> bool:
    return all(not field.strip() for field in fields)


def _choose_delimiter(header_line: str) -> str:
    for delimiter in DELIMITERS:
        names = {name.strip() for name in next(csv.reader([header_line], delimiter=delimiter))}
        if all(column in names for column in REQUIRED_COLUMNS):
            return delimiter
    return DELIMITERS[0]


def _records(lines: list[str], delimiter: str) -> Iterator[tuple[list[str] | None, str, range]]:
    """``(fields or None, csv error, 0-based line numbers)`` per record, blank ones included."""
    reader = csv.reader(lines, delimiter=delimiter)
    while True:
        start = reader.line_num
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield None, str(exc), range(start, reader.line_num)
            continue
        yield fields, "", range(start, reader.line_num)


def _column_names(header: list[str]) -> tuple[list[str], str | None]:
    """Unique column names (like pandas: an empty name is ``Unnamed: i``, a repeated optional
    column gets ``.1``, ``.2``), or an error if a required column is missing or repeated."""
    names = [name.strip() or f"Unnamed: {i}" for i, name in enumerate(header)]
    missing = missing_columns(names)
    if missing:
        listed = ", ".join(repr(column) for column in missing)
        return [], (
            f"required column(s) {listed} missing from the header "
            f"{_shown(','.join(names))} (the delimiter is ',', or ';' or tab when the header "
            f"only makes sense with it)"
        )
    repeated = [column for column in REQUIRED_COLUMNS if names.count(column) > 1]
    if repeated:
        listed = ", ".join(f"{column!r} ({names.count(column)} times)" for column in repeated)
        return (
            [],
            f"required column(s) {listed} repeated in the header: which one holds the value is "
            "ambiguous",
        )
    unique: list[str] = []
    for name in names:
        candidate, n = name, 0
        while candidate in unique:
            n += 1
            candidate = f"{name}.{n}"
        unique.append(candidate)
    return unique, None


def parse_csv(data: bytes) -> list[dict[str, Any]]:
    """One dict per data row (column -> text as written), in file order; rows and files that
    cannot be read are error entries (see the module doc). Never raises for bad content."""
    lines, undecodable = decode_lines(data)
    if not any(line.strip() for line in lines):
        return []
    if any("\x00" in line for line in lines):
        return [file_error("contains NUL bytes: not a CSV text file (a spreadsheet or UTF-16?)")]
    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(old_limit, len(data) + 1))  # a long value is judged per row
    try:
        return _parse_lines(lines, undecodable)
    finally:
        csv.field_size_limit(old_limit)


def _parse_lines(lines: list[str], undecodable: set[int]) -> list[dict[str, Any]]:
    non_blank = (i for i, line in enumerate(lines) if line.strip())
    header_at = next(non_blank)
    excel_hint = re.fullmatch(r"sep=(.)", lines[header_at].strip("\r\n"))
    if excel_hint:  # Excel's "sep=;" line names the delimiter; the header follows it
        header_at = next(non_blank, None)
        if header_at is None:
            return []
    if header_at in undecodable:
        return [file_error("the header line is neither UTF-8 nor CP949 text")]
    delimiter = excel_hint.group(1) if excel_hint else _choose_delimiter(lines[header_at])
    records = _records(lines[header_at:], delimiter)
    header, _, _ = next(records)
    columns, problem = _column_names(header or [])
    entries: list[dict[str, Any]] = []
    rows: list[tuple[list[str] | None, str, range]] = [
        record for record in records if record[0] is None or not _is_blank(record[0])
    ]
    if problem:  # even without data rows: a line that is not a header is worth an error
        return [file_error(f"{problem}; its {len(rows)} data row(s) are not sent")]
    for fields, csv_problem, line_numbers in rows:
        if fields is None:
            entries.append({ERROR_KEY: f"cannot be read as CSV: {csv_problem}"})
            continue
        extra = fields[len(columns) :]
        values = dict(zip(columns, fields, strict=False))
        values.update({column: "" for column in columns[len(fields) :]})
        if extra and not _is_blank(extra):
            values[ERROR_KEY] = (
                f"{len(fields)} values where the header has {len(columns)} columns "
                f"(an unquoted {delimiter!r} in a value?)"
            )
        elif any(header_at + n in undecodable for n in line_numbers):
            bad = [column for column, value in values.items() if "\ufffd" in value]
            where = f"column {bad[0]!r}" if bad else "the line"
            values[ERROR_KEY] = f"{where}: neither UTF-8 nor CP949 text"
        entries.append(values)
    return entries
