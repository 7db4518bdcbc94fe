"""Read the ledgers for the anomaly dashboard: newest records first, and counts per minute.

The ledgers only grow (one JSON line per row, appended through the results writer), and after
months of simulation they hold millions of lines. Two ways of reading keep the dashboard fast:

* :func:`newest_records` reads a ledger **from its end**, block by block, and stops as soon as
  it has the page it was asked for: the cost depends on the page, not on the file.
* :class:`LedgerIndex` keeps **counts per minute** (per issue code and per machine for
  anomalies, per run) together with the byte offset it has consumed. Each refresh reads only
  the lines appended since; a file that shrank or was replaced (rotation) is indexed again.
  Minutes more than 8 days before **now** are folded into hours, so the index of years of
  ledger stays small. Ages are measured from the clock, never from the ledger: a record
  stamped in the future (a machine with a wrong clock, a hand-edited ledger) cannot fold the
  present away; :meth:`LedgerSet.summary` counts such records apart (``future``).

The index also keeps, per minute, the **shadow figures** of rows that carry a ``candidate``
(:func:`model_checks.shadow_outcome`: compared, agreed, candidate errors; those of triggered
runs per run too) and the newest disagreements (a bounded list); :meth:`LedgerSet.shadow`
leaves out the rows of replay runs (a ``run_id`` of ``painting_replay_summary.jsonl``, read
incrementally too; a scheduled run is never a replay's), and :meth:`LedgerSet.replay_reports`
reads that file from its end.

Run failures are counted from their own ledger (``painting_run_failures.jsonl``); a failure
record that an earlier version left in ``painting_errors.jsonl`` is counted as a run failure
too, never as an error row. Lines are read defensively: future fields are ignored; a line that
is not a record (:func:`read_line`: a JSON object with an ISO-8601 ``timestamp``) is counted as
skipped by the index and left out of the table alike, never fatal. A torn last line (a writer
still appending) is left for the next refresh.

No Airflow here: the dashboard plugin resolves the output directory and calls this module.
"""

from __future__ import annotations

import bisect
import json
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

from include.painting_simulator.dashboard.answers import (
    buckets,
    kind_counts,
    label,
    minute_of,
    now_minute,
    shadow_answer,
    shadow_labels,
    summary_answer,
)
from include.painting_simulator.dashboard.model_checks import replay_report
from include.painting_simulator.records import AGREED, CANDIDATE_ERROR, is_row_record
from include.painting_simulator.settings import (
    LEDGER_FILES,
    REPLAY_SUMMARY_FILE,
    RUN_FAILURES_LEDGER,
    SCHEDULED_RUN_PREFIX,
)

# Counts are kept per minute for the 8 days before now, per hour before that.
MINUTE_DETAIL = 8 * 24 * 60
BLOCK_SIZE = 1 << 16
# Per-run counts are kept for the most recent runs only (the dashboard shows the last run).
MAX_RUNS = 1000
# The newest disagreements each row ledger keeps for the dashboard's table.
MAX_DISAGREEMENTS = 500


def lines_backwards(path: str, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """Yield the complete lines of ``path``, last first (a torn last line is not yielded)."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed in finally: this is a generator)
    except FileNotFoundError:
        return
    try:
        pos = fh.seek(0, os.SEEK_END)
        tail = b""
        torn = True  # until we know the file ends with a newline
        while pos > 0:
            start = max(0, pos - block_size)
            fh.seek(start)
            chunk = fh.read(pos - start) + tail
            pos = start
            parts = chunk.split(b"\n")
            tail = parts[0]  # may continue in the previous block
            for line in reversed(parts[1:]):
                if torn:  # after the last newline: b"" or a line still being written
                    torn = False
                    continue
                if line.strip():
                    yield line
        if tail.strip() and not torn:
            yield tail
    finally:
        fh.close()


def parse_record(line: bytes) -> dict[str, Any] | None:
    """The record on one ledger line, or None if it is not a JSON object."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def newest_records(path: str, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """Row records ``offset`` .. ``offset + limit - 1`` counted from the newest, newest first.

    Only lines the index counts as rows are listed (:func:`read_line`): a line that is not a
    record is neither a row of the page nor counted in ``offset``, so the pages add up to the
    index's total.
    """
    records: list[dict[str, Any]] = []
    if limit <= 0:
        return records
    decoder = _decoder()
    skip = offset
    for raw in lines_backwards(path):
        line = read_line(raw, decoder)
        if line is None or not line.is_row:
            continue
        if skip:
            skip -= 1
            continue
        record = parse_record(raw)
        if record is not None:  # always, once read_line took it (kept for the type checker)
            records.append(record)
        if len(records) >= limit:
            break
    return records


def _bump(table: dict[int, dict[str, int]], minute: int, name: Any) -> None:
    if name.__class__ is not str or not name:
        name = label(name)
    counts = table.get(minute)
    if counts is None:
        table[minute] = {name: 1}
    else:
        counts[name] = counts.get(name, 0) + 1


class Line(NamedTuple):
    """What the index and the table need of one ledger line that is a record."""

    minute: int  # of its ``timestamp`` (UTC)
    timestamp: str
    run_id: Any
    issue: Any
    machine: Any
    is_row: bool  # False: a run's failure record (records.is_row_record)
    candidate: tuple[Any, Any] | None = None  # the candidate's (kind, issue), if the row has one


def read_line(line: bytes, decoder: Any) -> Line | None:
    """The record on one ledger line; None if the line is not a record.

    The dashboard's one definition of "a record", used by the index (counts, ``skipped_lines``)
    and by the recent-anomalies table (:func:`newest_records`): a JSON object whose
    ``timestamp`` is an ISO-8601 time. A record is a row unless it has a ``record_type``
    (:func:`records.is_row_record`): a run's failure record, which is not a row.
    """
    import msgspec

    try:
        row = decoder.decode(line)
        prediction, data = row.prediction, row.original_data
        issue = prediction.issue if prediction else None
        machine = (prediction.machineId if prediction else None) or (
            data.machineId if data else None
        )
        timestamp, run_id = row.timestamp, row.run_id
        is_row = row.record_type is msgspec.UNSET  # no record_type key: is_row_record's rule
        verdict = row.candidate
        candidate = None if verdict is None else (verdict.kind, verdict.issue)
    except msgspec.ValidationError:
        # An unexpected shape (e.g. a list where a record was expected): the slow path.
        record = parse_record(line)
        if record is None:
            return None
        prediction = record.get("prediction") if isinstance(record.get("prediction"), dict) else {}
        data = record.get("original_data") if isinstance(record.get("original_data"), dict) else {}
        issue, machine = (
            prediction.get("issue"),
            prediction.get("machineId") or data.get("machineId"),
        )
        timestamp, run_id = record.get("timestamp"), record.get("run_id")
        is_row = is_row_record(record)
        verdict = record.get("candidate")
        candidate = (
            (verdict.get("kind"), verdict.get("issue")) if isinstance(verdict, dict) else None
        )
    except msgspec.DecodeError:
        return None
    minute = minute_of(timestamp)
    if minute is None:
        return None
    return Line(minute, timestamp, run_id, issue, machine, is_row, candidate)


@cache
def _decoder() -> Any:
    """A msgspec decoder that reads only the fields the index needs (the rest is skipped)."""
    import msgspec

    reading = msgspec.defstruct("Reading", [("issue", Any, None), ("machineId", Any, None)])
    verdict = msgspec.defstruct("Verdict", [("kind", Any, None), ("issue", Any, None)])
    row = msgspec.defstruct(
        "Row",
        [
            ("timestamp", Any, None),
            ("run_id", Any, None),
            ("prediction", reading | None, None),
            ("original_data", reading | None, None),
            ("record_type", Any, msgspec.UNSET),  # absent vs null, as is_row_record
            ("candidate", verdict | None, None),
        ],
    )
    return msgspec.json.Decoder(row)


@dataclass
class LedgerIndex:
    """Counts per minute of one ledger, brought up to date incrementally by :meth:`refresh`."""

    path: str
    kind: str | None = None  # the row kind of the ledger (production's verdict on its rows)
    # Runs known to be replays (shared with the LedgerSet): their shadow figures are dropped
    # when their minutes are folded into hours.
    replay_runs: set[str] = field(default_factory=set)
    offset: int = 0  # bytes consumed (always at a line boundary)
    file_id: tuple[int, int] | None = None  # (device, inode) of the file indexed
    lines: int = 0
    skipped: int = 0
    run_failures: int = 0  # failure records (record_type), which are not rows
    minutes: dict[int, int] = field(default_factory=dict)
    keys: list[int] = field(default_factory=list)  # the minutes, sorted (for range queries)
    issues: dict[int, dict[str, int]] = field(default_factory=dict)
    machines: dict[int, dict[str, int]] = field(default_factory=dict)
    runs: OrderedDict[str, int] = field(default_factory=OrderedDict)
    # Rows with a candidate: minute -> [compared, agreed, candidate errors] of scheduled runs
    # (a replay has no schedule) and, once folded into hours, of every run but replays'; ...
    shadow: dict[int, list[int]] = field(default_factory=dict)
    # ... and minute -> run_id -> the same, of the other runs (triggered: maybe a replay's).
    shadow_runs: dict[int, dict[str, list[int]]] = field(default_factory=dict)
    # The newest disagreements of scheduled runs, and apart those of triggered runs (a replay's
    # many cannot push the simulator's out).
    disagreements: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=MAX_DISAGREEMENTS)
    )
    triggered_disagreements: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=MAX_DISAGREEMENTS)
    )
    newest: str | None = None  # timestamp of the last record indexed
    # Minutes before this one are kept per hour (keyed by the hour's first minute).
    hourly_before: int = 0

    def reset(self) -> None:
        self.__init__(self.path, self.kind, self.replay_runs)  # type: ignore[misc]

    def refresh(self, block_size: int = 1 << 20, now: int | None = None) -> int:
        """Index the lines appended since the last call; return how many were read.

        ``now`` (minutes since the epoch, default: the clock) is where the 8 days of
        per-minute detail are measured from."""
        now = now_minute() if now is None else now
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self.file_id is not None:
                self.reset()
            return 0
        file_id = (stat.st_dev, stat.st_ino)
        if file_id != self.file_id or stat.st_size < self.offset:
            self.reset()  # rotated, replaced or truncated: start over
            self.file_id = file_id
        if stat.st_size == self.offset:
            self._compact(now)  # nothing new, but time went on
            return 0
        decoder = _decoder()
        read = 0
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            while True:
                block = fh.read(block_size)
                if not block:
                    break
                end = block.rfind(b"\n")
                if end < 0:
                    if len(block) < block_size:
                        break  # a torn last line: wait for its newline
                    block_size *= 2  # a line longer than a block
                    fh.seek(self.offset)
                    continue
                for line in block[: end + 1].splitlines():
                    if line.strip():
                        self._add(line, decoder)
                        read += 1
                self.offset += end + 1
                fh.seek(self.offset)
                self._compact(now)  # as it goes: a first pass over years stays small
        return read

    def _compact(self, now: int) -> None:
        """Fold minutes older than ``MINUTE_DETAIL`` before ``now`` into hours.

        Per-minute detail is only needed by the short ranges; years of ledger kept per minute
        would cost gigabytes. Ranges reaching further back use buckets of an hour or more.
        The cut-off follows the clock only: the newest record may be stamped in the future.
        """
        if not self.keys:
            return
        cutoff = now - MINUTE_DETAIL
        cutoff -= cutoff % 60
        if cutoff <= self.hourly_before:
            return
        low = bisect.bisect_left(self.keys, self.hourly_before)
        high = bisect.bisect_left(self.keys, cutoff)
        segment = self.keys[low:high]
        for minute in segment:
            hour = minute - minute % 60
            if hour == minute:
                continue
            self.minutes[hour] = self.minutes.get(hour, 0) + self.minutes.pop(minute)
            for table in (self.issues, self.machines):
                counts = table.pop(minute, None)
                if counts:
                    merged = table.setdefault(hour, {})
                    for name, n in counts.items():
                        merged[name] = merged.get(name, 0) + n
        self._fold_shadow(segment)
        self.keys[low:high] = sorted({minute - minute % 60 for minute in segment})
        self.hourly_before = cutoff

    def _fold_shadow(self, segment: list[int]) -> None:
        """Fold the shadow figures of ``segment``'s minutes into their hours. Per-run detail
        is for telling replay runs apart: here they are dropped (long finished, their figures
        are in their reports) and the other runs merged with the scheduled ones."""
        for minute in segment:
            figures = self.shadow.pop(minute, None)
            runs = self.shadow_runs.pop(minute, {})
            if figures is None and not runs:
                continue
            merged = self.shadow.setdefault(minute - minute % 60, [0, 0, 0])
            for part in (figures, *(f for r, f in runs.items() if r not in self.replay_runs)):
                for i, n in enumerate(part or ()):
                    merged[i] += n

    def _add(self, raw: bytes, decoder: Any) -> None:
        line = read_line(raw, decoder)
        if line is None:
            self.skipped += 1
            return
        minute, timestamp, run_id, issue, machine, is_row, candidate = line
        if not is_row:
            self.run_failures += 1  # not a row: never counted as an error row
            return
        self.lines += 1
        if minute < self.hourly_before:  # a late record for a period already kept per hour
            minute -= minute % 60
        minutes = self.minutes
        seen = minutes.get(minute)
        if seen is None:
            minutes[minute] = 1
            if not self.keys or minute > self.keys[-1]:
                self.keys.append(minute)  # the usual case: records arrive in time order
            else:
                bisect.insort(self.keys, minute)
        else:
            minutes[minute] = seen + 1
        if issue is not None:  # an anomaly (only the anomaly ledger carries a prediction)
            _bump(self.issues, minute, issue)
        if machine is not None:
            _bump(self.machines, minute, machine)
        if run_id.__class__ is str:
            runs = self.runs
            if run_id in runs and next(reversed(runs)) == run_id:
                runs[run_id] += 1  # the run being read (the usual case): no reordering
            else:
                runs[run_id] = runs.pop(run_id, 0) + 1
                if len(runs) > MAX_RUNS:
                    runs.popitem(last=False)
        if candidate is not None:
            self._add_shadow(raw, line, minute)
        if self.newest is None or timestamp > self.newest:
            self.newest = timestamp

    def _add_shadow(self, raw: bytes, line: Line, minute: int) -> None:
        """Count a row with a candidate (:func:`shadow_outcome`); keep it if they disagree."""
        kind, issue = line.candidate  # type: ignore[misc]
        production, candidate, outcome = shadow_labels(self.kind, line.issue, kind, issue)
        if outcome is None:
            return
        run_id = line.run_id
        kept = self.disagreements
        if run_id.__class__ is str and run_id.startswith(SCHEDULED_RUN_PREFIX):
            figures = self.shadow.get(minute)  # a scheduled run: never a replay's
            if figures is None:
                figures = self.shadow[minute] = [0, 0, 0]
        else:  # a triggered run: maybe a replay's, told apart at answering
            kept = self.triggered_disagreements
            runs = self.shadow_runs.setdefault(minute, {})
            key = run_id if run_id.__class__ is str else label(run_id)
            figures = runs.get(key)
            if figures is None:
                figures = runs[key] = [0, 0, 0]
        if outcome == CANDIDATE_ERROR:
            figures[2] += 1
            return
        figures[0] += 1
        if outcome == AGREED:
            figures[1] += 1
            return
        record = parse_record(raw) or {}
        source = record.get("source") if isinstance(record.get("source"), dict) else {}
        kept.append(
            {
                "timestamp": line.timestamp,
                "machine": line.machine,
                "blob": source.get("blob"),
                "row": source.get("row"),
                "production": production,
                "candidate": candidate,
                "run_id": run_id,
            }
        )

    def shadow_figures(self, minute: int) -> tuple[list[int] | None, dict[str, list[int]]]:
        """The shadow figures of one minute: of scheduled (and folded) runs, and per other run."""
        return self.shadow.get(minute), self.shadow_runs.get(minute, {})

    def minutes_in(self, start: int | None, end: int | None) -> list[int]:
        """The minutes ``start`` <= m < ``end`` (None: open) that hold records."""
        low = 0 if start is None else bisect.bisect_left(self.keys, start)
        high = len(self.keys) if end is None else bisect.bisect_left(self.keys, end)
        return self.keys[low:high]

    def count(self, start: int | None = None, end: int | None = None) -> int:
        """Records in minutes ``start`` <= m < ``end`` (None: open)."""
        return sum(self.minutes[m] for m in self.minutes_in(start, end))

    def breakdown(self, table: str, start: int | None, end: int | None) -> dict[str, int]:
        """Counts by issue code (``table="issues"``) or machine (``"machines"``) in the range."""
        totals: dict[str, int] = {}
        table_ = getattr(self, table)
        for minute in self.minutes_in(start, end):
            for name, n in table_.get(minute, {}).items():
                totals[name] = totals.get(name, 0) + n
        return totals


@dataclass
class SummaryIndex(LedgerIndex):
    """The replay runs of ``painting_replay_summary.jsonl`` (one summary a line), incrementally:
    their ``run_id`` s join ``replay_runs``. A line without a ``run_id`` is skipped."""

    def _add(self, raw: bytes, decoder: Any) -> None:
        record = parse_record(raw)
        run_id = record.get("run_id") if record is not None else None
        if run_id.__class__ is not str:
            self.skipped += 1
            return
        self.lines += 1
        self.replay_runs.add(run_id)  # type: ignore[arg-type]


class LedgerSet:
    """The three row ledgers and the failure ledger of one output directory, indexed for the
    dashboard (thread-safe).

    The first pass over big ledgers takes seconds (about 8 s per million lines), so it runs in
    a background thread: until it is done, :meth:`ready` says how far it got and requests are
    answered at once instead of waiting. Later refreshes read only the new lines, inline.
    """

    def __init__(self, output_dir: str, clock: Callable[[], int] = now_minute) -> None:
        self.output_dir = output_dir
        self.clock = clock  # now, in minutes: the fold of old minutes is measured from it
        self.replay_runs: set[str] = set()  # of the summaries: their rows are no shadow data
        self.indexes = {
            kind: LedgerIndex(os.path.join(output_dir, name), kind, self.replay_runs)
            for kind, name in LEDGER_FILES.items()
        }
        self.failures = LedgerIndex(os.path.join(output_dir, RUN_FAILURES_LEDGER))
        # First in refreshes: a replay's runs are known before its minutes are folded.
        self.summaries = SummaryIndex(
            os.path.join(output_dir, REPLAY_SUMMARY_FILE), replay_runs=self.replay_runs
        )
        self._lock = threading.Lock()
        self._built = threading.Event()
        self._builder: threading.Thread | None = None
        self._builder_lock = threading.Lock()  # not _lock: the builder holds that one

    def refresh(self) -> None:
        now = self.clock()  # taken as each request is answered
        with self._lock:
            for index in self._all():
                index.refresh(now=now)

    def _all(self) -> list[LedgerIndex]:
        return [self.summaries, *self.indexes.values(), self.failures]

    def _build(self) -> None:
        try:
            self.refresh()
        finally:
            self._built.set()

    def ready(self, wait: float = 1.0) -> bool:
        """Start the first pass if needed, wait up to ``wait`` s for it; True once it is done
        (and then bring the index up to date)."""
        if not self._built.is_set():
            with self._builder_lock:
                if self._builder is None:
                    self._builder = threading.Thread(
                        target=self._build, name=f"ledger-index {self.output_dir}", daemon=True
                    )
                    self._builder.start()
            if not self._built.wait(wait):
                return False
        self.refresh()
        return True

    def progress(self) -> float:
        """Share of the ledgers' bytes indexed so far (0..1)."""
        done = total = 0
        for index in self._all():
            try:
                size = os.path.getsize(index.path)
            except OSError:
                continue
            done, total = done + min(index.offset, size), total + size
        return round(done / total, 3) if total else 1.0

    def recent(self, kind: str, limit: int, offset: int = 0, wait: float = 1.0) -> dict[str, Any]:
        """A page of the newest records of one ledger, with the ledger's total (None while
        the first pass is still counting: the page itself does not wait for it)."""
        index = self.indexes[kind]
        return {
            "total": index.lines if self.ready(wait) else None,
            "offset": offset,
            "limit": limit,
            "records": newest_records(index.path, limit, offset),
        }

    def run_counts(self, run_id: str) -> dict[str, int]:
        """How many records a run wrote to each ledger (for the most recent runs)."""
        with self._lock:
            return {kind: index.runs.get(run_id, 0) for kind, index in self.indexes.items()}

    def summary(self, start: int | None, end: int, wait: float = 1.0) -> dict[str, Any]:
        """Counts, anomaly rate, timeline and breakdowns for minutes ``start`` <= m < ``end``;
        ``{"indexing": progress}`` while the first pass over the ledgers is still running.

        ``end`` is the minute after now (the plugin's clock at answering). Records stamped at
        ``end`` or later are in the future: counted in ``future``, and, when ``start`` is None
        ("all"), in the counts and breakdowns too, but never in the timeline, which ends now.
        """
        if not self.ready(wait):
            return {"indexing": {"progress": self.progress()}}
        with self._lock:
            everything = start is None
            anomalies = self.indexes["anomaly"]
            start, width, starts = self._buckets(start, end)
            timeline = {b: kind_counts() for b in starts}
            counts = kind_counts()
            for kind, index in self.indexes.items():
                for minute in index.minutes_in(start, end):
                    n = index.minutes[minute]
                    counts[kind] += n
                    timeline[minute - minute % width][kind] += n
            future = {kind: index.count(end, None) for kind, index in self.indexes.items()}
            if everything:
                counts = {kind: n + future[kind] for kind, n in counts.items()}
            until = None if everything else end
            return summary_answer(
                start, end, width, counts=counts, timeline=timeline,
                by_issue=anomalies.breakdown("issues", start, until),
                by_machine=anomalies.breakdown("machines", start, until),
                totals={kind: index.lines for kind, index in self.indexes.items()},
                future=future,
                skipped=sum(index.skipped for index in self.indexes.values()),
                run_failures=sum(index.run_failures for index in self._all()),
                newest=max((i.newest for i in self.indexes.values() if i.newest), default=None),
            )  # fmt: skip

    def _buckets(self, start: int | None, end: int) -> tuple[int, int, range]:
        """:func:`answers.buckets` from the first minute any row ledger holds."""
        firsts = [i.keys[0] for i in self.indexes.values() if i.keys]
        return buckets(start, min(firsts) if firsts else None, end)

    def shadow(self, start: int | None, end: int, wait: float = 1.0) -> dict[str, Any]:
        """Shadow mode's agreement for minutes ``start`` <= m < ``end`` (None: everything), in
        the summary's buckets: rows compared, agreed, disagreed, candidate errors and the
        agreement rate, per bucket and in all. Rows of replay runs are left out (counted in
        ``replay_rows_left_out``); records stamped in the future count as in :meth:`summary`.
        """
        if not self.ready(wait):
            return {"indexing": {"progress": self.progress()}}
        with self._lock:
            everything = start is None
            start, width, starts = self._buckets(start, end)
            timeline = {b: [0, 0, 0] for b in starts}
            counts, left_out = [0, 0, 0], 0
            for index in self.indexes.values():
                for minute in index.minutes_in(start, None if everything else end):
                    scheduled, runs = index.shadow_figures(minute)
                    parts = [scheduled] if scheduled else []
                    for run_id, figures in runs.items():
                        if run_id in self.replay_runs:
                            left_out += figures[0] + figures[2]
                        else:
                            parts.append(figures)
                    bucket = timeline.get(minute - minute % width) if minute < end else None
                    for figures in parts:
                        for i, n in enumerate(figures):
                            counts[i] += n
                            if bucket is not None:
                                bucket[i] += n
        return shadow_answer(start, end, width, counts, timeline, left_out)

    def disagreements(self, limit: int, wait: float = 1.0) -> dict[str, Any]:
        """The newest rows on which production and the candidate gave different verdicts,
        newest first (replay runs left out; each ledger keeps its ``MAX_DISAGREEMENTS`` newest of
        scheduled runs and, apart, of triggered runs).
        """
        if not self.ready(wait):
            return {"indexing": {"progress": self.progress()}, "records": []}
        with self._lock:
            rows = [
                row
                for index in self.indexes.values()
                for kept in (index.disagreements, index.triggered_disagreements)
                for row in kept
                if row["run_id"] not in self.replay_runs
            ]
        rows.sort(key=lambda row: str(row["timestamp"]), reverse=True)
        return {"indexing": None, "limit": limit, "records": rows[:limit]}

    def replay_reports(self, limit: int, wait: float = 1.0) -> dict[str, Any]:
        """The newest replay reports (:func:`model_checks.replay_report`), newest first, read
        from the end of ``painting_replay_summary.jsonl``; ``total`` = reports in the file
        (None while the first pass is still counting)."""
        reports: list[dict[str, Any]] = []
        for raw in lines_backwards(self.summaries.path):
            if len(reports) >= limit:
                break
            record = parse_record(raw)
            if record is not None and record.get("run_id").__class__ is str:
                reports.append(replay_report(record))
        total = self.summaries.lines if self.ready(wait) else None
        return {"total": total, "limit": limit, "reports": reports}


_SETS: dict[str, LedgerSet] = {}
_SETS_LOCK = threading.Lock()


def ledger_set(output_dir: str) -> LedgerSet:
    """The process-wide :class:`LedgerSet` of ``output_dir`` (its index survives requests)."""
    with _SETS_LOCK:
        if output_dir not in _SETS:
            _SETS[output_dir] = LedgerSet(output_dir)
        return _SETS[output_dir]
