"""JSON-lines ledger files in one directory, with exactly-once appends under a file lock.

The mechanics of the JSON-lines results store (:mod:`results` decides what goes where). Every
row of every window lands in exactly one row ledger: ``painting_issue_logs.jsonl``
(anomalies), ``painting_normal_logs.jsonl`` or ``painting_errors.jsonl``. A row record is keyed
by ``(run_id, source.blob, source.row)``; a failure record, in ``painting_run_failures.jsonl``,
by ``(run_id, task_id, try_number)``.

Airflow retries tasks, and a worker can die between writing a ledger and reporting success, so
an append must be idempotent: :meth:`Ledgers.append_once` writes only the records whose key is
not already in any ledger for that run. To find them without reading whole ledgers, a small
receipts file remembers, per run, the byte offset where the run first wrote to each ledger; a
retry scans only from there. The receipt is written *before* the lines, so a crash in between
costs a short scan, never a duplicate. All of this happens under an exclusive file lock, so
several workers sharing the output directory (a mounted volume) cannot interleave lines.

Row ledgers hold row records only. Ledgers written by earlier versions may still hold failure
records in ``painting_errors.jsonl`` (``"record_type": "run_failure"``): the key scan skips them.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from include.painting_simulator.records import EncodedBody, is_row_record
from include.painting_simulator.settings import (
    LEDGER_FILES,
    REPLAY_SUMMARY_FILE,
    RUN_FAILURES_LEDGER,
)

# What makes a failure record or a replay summary unique in its file.
FAILURE_KEY = ("run_id", "task_id", "try_number")
SUMMARY_KEY = ("run_id",)
RECEIPTS_FILE = ".painting_ledger_receipts.json"
LOCK_FILE = ".painting_ledger.lock"
# Receipts are only needed while a run can still be retried; keep the most recent ones.
MAX_RECEIPTS = 2000


# json.dumps(..., ensure_ascii=False) builds an encoder per call; one encoder does the same.
encode_json = json.JSONEncoder(ensure_ascii=False).encode


def json_line(record: dict[str, Any]) -> str:
    """A record as one ledger line, without its newline (the results database stores the same
    text, so that its export is byte for byte what this module writes): exactly
    ``json.dumps(record, ensure_ascii=False)``. A row record whose ``original_data`` (its last
    key, :func:`records.row_record`) is an :class:`records.EncodedBody` reuses the body's text."""
    data = record.get("original_data")
    if type(data) is not EncodedBody or next(reversed(record)) != "original_data":
        return encode_json(record)
    head = encode_json({key: value for key, value in record.items() if key != "original_data"})
    return f'{head[:-1]}, "original_data": {data.text}}}' if len(head) > 2 else (
        f'{{"original_data": {data.text}}}'
    )  # fmt: skip


def _key(record: dict[str, Any]) -> tuple[str, int]:
    return record["source"]["blob"], record["source"]["row"]


def _row_records(path: str, offset: int = 0) -> Iterator[dict[str, Any]]:
    """The row records of a ledger file from byte ``offset``; a missing file has none."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            for line in fh:
                if not line.endswith(b"\n"):
                    continue  # a torn last line from a killed writer: not written
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                # An earlier version's failure record in the error ledger: not a row.
                if isinstance(record, dict) and is_row_record(record):
                    yield record
    except FileNotFoundError:
        return


class Ledgers:
    """The ledgers in one output directory (created on first use)."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir

    def path(self, kind: str) -> str:
        """The row ledger of ``kind`` (anomaly, normal, error)."""
        return os.path.join(self.output_dir, LEDGER_FILES[kind])

    @property
    def failures_path(self) -> str:
        """The ledger of failure records."""
        return os.path.join(self.output_dir, RUN_FAILURES_LEDGER)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self.output_dir, exist_ok=True)
        with open(os.path.join(self.output_dir, LOCK_FILE), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load_receipts(self) -> dict[str, dict[str, int]]:
        try:
            with open(os.path.join(self.output_dir, RECEIPTS_FILE), encoding="utf-8") as fh:
                receipts = json.load(fh)
        except FileNotFoundError:
            return {}
        except ValueError:
            # A torn receipts file (crash mid-replace cannot happen: we rename atomically);
            # be safe anyway and fall back to scanning nothing rather than failing the run.
            return {}
        return receipts if isinstance(receipts, dict) else {}

    def _save_receipts(self, receipts: dict[str, dict[str, int]]) -> None:
        if len(receipts) > MAX_RECEIPTS:
            receipts = dict(list(receipts.items())[-MAX_RECEIPTS:])
        path = os.path.join(self.output_dir, RECEIPTS_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(receipts, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def _keys_written(self, run_id: str, offsets: dict[str, int]) -> set[tuple[str, int]]:
        keys: set[tuple[str, int]] = set()
        for kind, offset in offsets.items():
            rows = _row_records(self.path(kind), offset)
            keys.update(_key(r) for r in rows if r.get("run_id") == run_id)
        return keys

    def _trim_torn_tail(self, path: str) -> None:
        """Cut a partial last line left by a writer killed mid-append."""
        try:
            with open(path, "rb+") as fh:
                size = fh.seek(0, os.SEEK_END)
                if size == 0:
                    return
                fh.seek(size - 1)
                if fh.read(1) == b"\n":
                    return
                chunk = 1 << 16
                pos = size
                while pos > 0:
                    start = max(0, pos - chunk)
                    fh.seek(start)
                    data = fh.read(pos - start)
                    cut = data.rfind(b"\n")
                    if cut >= 0:
                        fh.truncate(start + cut + 1)
                        return
                    pos = start
                fh.truncate(0)
        except FileNotFoundError:
            return

    def append_once(
        self,
        kind: str,
        run_id: str,
        records: Iterable[dict[str, Any]],
        receipt: str | None = None,
    ) -> int:
        """Append the records not yet written for ``run_id`` (in any ledger); return how many.

        ``receipt`` (default: the run id) names the receipt a retry scans from: a run that
        writes many batches (a replay) gives each batch its own, so a batch never rescans the
        run's earlier ones.
        """
        records = list(records)
        if not records:
            return 0
        path = self.path(kind)
        receipt = receipt or run_id
        with self._locked():
            # First cut what a killed writer left half-written, then see what is really there.
            self._trim_torn_tail(path)
            receipts = self._load_receipts()
            offsets = receipts.get(receipt, {})
            done = self._keys_written(run_id, offsets) if offsets else set()
            fresh = []
            for record in records:  # a key twice in one call is written once, as any retry
                if (key := _key(record)) not in done:
                    done.add(key)
                    fresh.append(record)
            if not fresh:
                return 0
            if kind not in offsets:
                offsets[kind] = os.path.getsize(path) if os.path.exists(path) else 0
                receipts.pop(receipt, None)
                receipts[receipt] = offsets  # most recent last, for trimming
                self._save_receipts(receipts)
            payload = "".join(json_line(r) + "\n" for r in fresh)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            return len(fresh)

    def read(self, kind: str) -> Iterator[dict[str, Any]]:
        """Every row record of the ledger of ``kind``, in file order, without taking the lock: a
        torn last line (a writer mid-append or killed) and a failure record are skipped."""
        return _row_records(self.path(kind))

    def append_failure(self, record: dict[str, Any]) -> bool:
        """Append a failure record (see :mod:`failures`) unless one with the same run, task and
        try is already in the failure ledger; True if written."""
        return self._append_unique(self.failures_path, record, FAILURE_KEY)

    @property
    def summaries_path(self) -> str:
        """The file of replay summaries."""
        return os.path.join(self.output_dir, REPLAY_SUMMARY_FILE)

    def append_summary(self, summary: dict[str, Any]) -> bool:
        """Append a replay's summary unless its run already has one (a retried final task)."""
        return self._append_unique(self.summaries_path, summary, SUMMARY_KEY)

    def _append_unique(self, path: str, record: dict[str, Any], key: tuple[str, ...]) -> bool:
        """Append ``record`` unless a line with the same ``key`` fields is in ``path``.

        Scans the whole file: failures and summaries are few, and the file holds nothing else.
        """
        wanted = tuple(record.get(name) for name in key)
        with self._locked():
            self._trim_torn_tail(path)
            try:
                with open(path, "rb") as fh:
                    for line in fh:
                        try:
                            existing = json.loads(line)
                        except ValueError:
                            continue
                        if tuple(existing.get(name) for name in key) == wanted:
                            return False
            except FileNotFoundError:
                pass
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json_line(record) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            return True
