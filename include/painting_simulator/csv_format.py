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

**Two steps, so that a tick reads only its window.** :func:`index_csv` (the cold path, once per
blob version) finds the data records: a vectorised path (numpy over the bytes) for the files
nearly every export is (UTF-8, no quote character in the rows, ``\n`` or ``\r\n`` line ends:
each line is a record), the line-by-line path through the csv module for every other file.
:class:`Entries` turns records into entries only when they are read, with the csv module's
reader (or ``str.split``, which gives the same fields for unquoted lines), so both paths and
every tick apply one set of rules; the row cache (:mod:`row_cache`) stores the index.

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
import contextlib
import csv
import functools
import hashlib
import io
import itertools
import re
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

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
NUL_BYTES = "contains NUL bytes: not a CSV text file (a spreadsheet or UTF-16?)"


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


# ---------------------------------------------------------------------------------------------
# The cold path: a blob's bytes -> its data records, indexed (Indexed); and back to entries.


@dataclass(frozen=True)
class Header:
    """What turns a data record into an entry: the column names and the delimiter; or the reason
    the whole file cannot be read (then the blob has exactly one entry: that error)."""

    columns: tuple[str, ...] = ()
    delimiter: str = ","
    file_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "delimiter": self.delimiter,
                "file_error": self.file_error}  # fmt: skip

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Header:
        return cls(tuple(value["columns"]), value["delimiter"], value["file_error"])


@dataclass(frozen=True)
class Indexed:
    """A blob's data records as :func:`index_csv` found them, not yet split into values.

    ``text`` is the UTF-8 text of the non-blank data records back to back (blank lines and the
    header left out); record ``i`` is ``text[starts[i]:starts[i + 1]]``; ``undecodable[i]`` is 1
    when a line of record ``i`` was neither UTF-8 nor CP949 (its bad bytes are U+FFFD in
    ``text``). :meth:`entries` gives the entries, parsing only the records that are read.
    """

    header: Header
    text: bytes = b""
    starts: Sequence[int] = (0,)
    undecodable: bytes = b""
    path: str = "lines"  # which path indexed it: "vectorised" or "lines" (for the log)

    def __len__(self) -> int:
        return 1 if self.header.file_error is not None else len(self.starts) - 1

    def entries(self) -> Entries:
        return _IndexedEntries(self)


EMPTY = Indexed(Header())


@contextlib.contextmanager
def _field_limit(chars: int) -> Iterator[None]:
    """The csv module's per-field limit (128 KiB) raised to ``chars``: a long value is judged per
    row (row_mapping), not refused by the reader; the process-wide limit is restored."""
    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(old_limit, chars + 1))
    try:
        yield
    finally:
        csv.field_size_limit(old_limit)


def _find_header(
    lines: list[str], undecodable: set[int]
) -> tuple[int, str, list[str]] | str | None:
    """``(lines up to the end of the header record, delimiter, header fields)``; the reason if
    the header cannot be read; None if there is no header (only blank lines, a ``sep=`` line)."""
    non_blank = (n for n, line in enumerate(lines) if line.strip())
    at = next(non_blank, None)
    if at is None:
        return None
    excel_hint = re.fullmatch(r"sep=(.)", lines[at].strip("\r\n"))
    if excel_hint:  # Excel's "sep=;" line names the delimiter; the header follows it
        at = next(non_blank, None)
        if at is None:
            return None
    if at in undecodable:
        return "the header line is neither UTF-8 nor CP949 text"
    delimiter = excel_hint.group(1) if excel_hint else _choose_delimiter(lines[at])
    # The header record may go on over the next lines (a quoted line break).
    reader = csv.reader(itertools.islice(lines, at, None), delimiter=delimiter)
    try:
        fields = next(reader)
    except csv.Error:
        fields = []
    return at + reader.line_num, delimiter, fields


def index_csv(data: bytes, *, vectorised: bool = True) -> Indexed:
    """The data records of a blob, found once (the cold path; see the module doc). Never raises
    for bad content. ``vectorised=False`` takes the line-by-line path for every file (tests)."""
    with _field_limit(len(data)):
        indexed = _index_clean(data) if vectorised else None
        return indexed if indexed is not None else _index_lines(*decode_lines(data))


def _index_lines(lines: list[str], undecodable: set[int]) -> Indexed:
    """Any file, line by line through the csv module: the reference path."""
    if not any(line.strip() for line in lines):
        return EMPTY
    if any("\x00" in line for line in lines):
        return Indexed(Header(file_error=NUL_BYTES))
    found = _find_header(lines, undecodable)
    if found is None:
        return EMPTY
    if isinstance(found, str):
        return Indexed(Header(file_error=found))
    consumed, delimiter, header = found
    columns, problem = _column_names(header)
    body = lines[consumed:]
    records: list[tuple[int, int]] = []  # line ranges in body of the non-blank records
    reader = csv.reader(body, delimiter=delimiter)
    while True:
        start = reader.line_num
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error:  # kept: reading it again gives its error entry
            fields = None
        if fields is None or not _is_blank(fields):
            records.append((start, reader.line_num))
    if problem:  # even without data rows: a line that is not a header is worth an error
        return Indexed(Header(file_error=f"{problem}; its {len(records)} data row(s) are not sent"))
    parts: list[bytes] = []
    starts = array("Q", [0])
    flags = bytearray(len(records))
    position = 0
    for number, (first, stop) in enumerate(records):
        part = "".join(body[first:stop]).encode("utf-8")
        parts.append(part)
        position += len(part)
        starts.append(position)
        if undecodable and any(consumed + n in undecodable for n in range(first, stop)):
            flags[number] = 1
    return Indexed(Header(tuple(columns), delimiter), b"".join(parts), starts, bytes(flags))


VECTORISED = "vectorised"
# Header lines searched by the vectorised path before it leaves the file to the line path.
HEAD_LINES, HEAD_CHARS = 64, 1 << 16


def _index_clean(data: bytes) -> Indexed | None:
    """The vectorised path, for the files nearly every export is: UTF-8, no quote character in
    the data rows, line ends ``\\n`` or ``\\r\\n``. Every line is then one record, so the index
    is the positions of the line ends (numpy), and only lines without a visible character are
    looked at in Python (are all their cells empty?). None: not such a file (the line path)."""
    if data.startswith(codecs.BOM_UTF8):  # dropped, as decode_lines drops it
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or text.isspace():
        return EMPTY
    if "\x00" in text:
        return Indexed(Header(file_error=NUL_BYTES))
    # The head: the first lines, of which only the last may be cut short.
    head = list(itertools.islice(io.StringIO(text[:HEAD_CHARS], newline=""), HEAD_LINES))
    found = _find_header(head, set())
    cut = len(head) == HEAD_LINES or len(text) > HEAD_CHARS  # the file goes on after the head
    if found is None or isinstance(found, str) or (cut and found[0] >= len(head)):
        return None  # only blank lines in the head, or a header as long as it: line path
    consumed, delimiter, header = found
    columns, problem = _column_names(header)
    if problem or not delimiter.isascii() or delimiter in '"\r\n':
        return None  # the line path counts the rows the error names
    body = data[len("".join(head[:consumed]).encode("utf-8")) :]
    if b'"' in body:
        return None  # a quoted value may span lines
    if not body:
        return Indexed(Header(tuple(columns), delimiter), path=VECTORISED)
    import numpy as np

    buf = np.frombuffer(body, dtype=np.uint8)
    if b"\r" in body:  # CRLF is one line end, but a lone CR ends a line too
        returns = np.flatnonzero(buf == ord("\r"))
        if returns[-1] == len(buf) - 1 or (buf[returns + 1] != ord("\n")).any():
            return None
    ends = np.flatnonzero(buf == ord("\n")) + 1
    if not len(ends) or ends[-1] != len(buf):  # a last line without a line end
        ends = np.append(ends, len(buf))
    starts = np.concatenate(([0], ends[:-1]))
    # A byte that str.strip() never removes and that is not the delimiter makes a line a row:
    # nearly every line starts with one; the others are looked at byte by byte (numpy), and
    # those without any such byte cell by cell (Python).
    visible = np.zeros(256, dtype=bool)
    visible[[*range(0x21, 0x7F), *range(0x00, 0x09), *range(0x0E, 0x1C)]] = True
    visible[ord(delimiter)] = False
    keep = visible[buf[starts]]
    if not keep.all():
        keep = np.logical_or.reduceat(visible[buf], starts)
    for line in np.flatnonzero(~keep):  # blank, or only spaces, delimiters and non-ASCII text
        fields = next(csv.reader([body[starts[line] : ends[line]].decode()], delimiter=delimiter))
        keep[line] = not _is_blank(fields)
    if keep.all():
        kept_text, kept_starts = body, np.append(starts, len(buf))
    else:
        lengths = ends - starts
        kept_text = buf[np.repeat(keep, lengths)].tobytes()
        kept_starts = np.concatenate(([0], np.cumsum(lengths[keep])))
    count = len(kept_starts) - 1
    header = Header(tuple(columns), delimiter)
    return Indexed(header, kept_text, kept_starts, bytes(count), path=VECTORISED)


# ---------------------------------------------------------------------------------------------
# Reading entries back: records -> entries, a block at a time (every tick, from the row cache)

# Records parsed per read: a window of ten rows parses one small block, a replay streams.
BLOCK_ROWS = 256


def _entry(fields: list[str], header: Header, undecodable: int) -> dict[str, Any]:
    """The entry of one data record: its values by column, or an error entry."""
    columns = header.columns
    if len(fields) == len(columns) and not undecodable:  # nearly every row
        return dict(zip(columns, fields, strict=True))
    values = dict(zip(columns, fields, strict=False))
    if len(fields) < len(columns):  # a short row has empty cells at its end
        values.update(dict.fromkeys(columns[len(fields) :], ""))
    extra = fields[len(columns) :]
    if extra and not _is_blank(extra):
        values[ERROR_KEY] = (
            f"{len(fields)} values where the header has {len(columns)} columns "
            f"(an unquoted {header.delimiter!r} in a value?)"
        )
    elif undecodable:
        bad = [column for column, value in values.items() if "\ufffd" in value]
        where = f"column {bad[0]!r}" if bad else "the line"
        values[ERROR_KEY] = f"{where}: neither UTF-8 nor CP949 text"
    return values


def _one_record(text: str, delimiter: str) -> list[str] | str:
    """The fields of one record, or the csv module's complaint about it."""
    try:
        return next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
    except csv.Error as exc:
        return str(exc)


def _split_unquoted(block: str, delimiter: str) -> list[list[str] | str]:
    """The records of ``block`` split by ``str.split`` when that is what the csv module would
    do (no quote character, every line ending in ``\\n`` or ``\\r\\n``), else ``[]``."""
    if '"' in block:
        return []
    if "\r" in block:
        block = block.replace("\r\n", "\n")
        if "\r" in block:  # a lone CR ends a record too
            return []
    lines = block.split("\n")
    if lines[-1] == "":  # after the last line end
        lines.pop()
    return [line.split(delimiter) for line in lines]


def parse_records(
    header: Header, text: bytes, offsets: Sequence[int], flags: bytes
) -> list[dict[str, Any]]:
    """The entries of consecutive records: their text, the record starts in it (and its end),
    their undecodable flags."""
    block = text.decode("utf-8")
    records: list[list[str] | str] = _split_unquoted(block, header.delimiter)
    with _field_limit(len(block)):
        try:
            records = records or list(
                csv.reader(io.StringIO(block, newline=""), delimiter=header.delimiter)
            )
        except csv.Error:
            records = []
        if len(records) != len(flags):  # a record the csv module refuses: one at a time
            records = [
                _one_record(text[a:b].decode("utf-8"), header.delimiter)
                for a, b in itertools.pairwise(offsets)
            ]
    return [
        {ERROR_KEY: f"cannot be read as CSV: {fields}"}
        if isinstance(fields, str)
        else _entry(fields, header, flag)
        for fields, flag in zip(records, flags, strict=True)
    ]


class Entries(Sequence[dict[str, Any]]):
    """The entries of one blob (see :func:`parse_csv`), parsed from its records as they are read:
    ``len()``, ``entries[i]`` and ``entries[a:b]`` parse only the records they need."""

    def __init__(self, header: Header, count: int) -> None:
        self.header = header
        self._count = 1 if header.file_error is not None else count
        self._block_start = 0
        self._block: list[dict[str, Any]] = []

    def _records(self, start: int, stop: int) -> tuple[bytes, Sequence[int], bytes]:
        """Text of records ``start`` .. ``stop - 1``, their starts in it (and its end), flags."""
        raise NotImplementedError

    def _parse(self, start: int, stop: int) -> list[dict[str, Any]]:
        if start >= stop:
            return []
        if self.header.file_error is not None:
            return [file_error(self.header.file_error)]
        return parse_records(self.header, *self._records(start, stop))

    def __len__(self) -> int:
        return self._count

    def _entry_at(self, index: int) -> dict[str, Any]:
        if not self._block_start <= index < self._block_start + len(self._block):
            self._block_start = index
            self._block = self._parse(index, min(self._count, index + BLOCK_ROWS))
        return self._block[index - self._block_start]

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._count)
            if step != 1:
                return [self._entry_at(i) for i in range(start, stop, step)]
            return self._parse(start, stop)
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"row {index} out of range (0..{self._count - 1})")
        return self._entry_at(index)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for start in range(0, self._count, BLOCK_ROWS):
            yield from self._parse(start, min(self._count, start + BLOCK_ROWS))


class _IndexedEntries(Entries):
    """The entries of an :class:`Indexed` held in memory."""

    def __init__(self, indexed: Indexed) -> None:
        super().__init__(indexed.header, len(indexed.starts) - 1)
        self.indexed = indexed

    def _records(self, start: int, stop: int) -> tuple[bytes, Sequence[int], bytes]:
        starts = self.indexed.starts
        base = int(starts[start])
        offsets = [int(offset) - base for offset in starts[start : stop + 1]]
        text = self.indexed.text[base : base + offsets[-1]]
        return text, offsets, self.indexed.undecodable[start:stop]


def parse_csv(data: bytes) -> list[dict[str, Any]]:
    """One dict per data row (column -> text as written), in file order; rows and files that
    cannot be read are error entries (see the module doc). Never raises for bad content."""
    return list(index_csv(data).entries())
