"""The three JSON-lines ledgers and their exactly-once append.

Every row of every window lands in exactly one ledger: ``painting_issue_logs.jsonl``
(anomalies), ``painting_normal_logs.jsonl`` or ``painting_errors.jsonl``. A record is keyed by
``(run_id, source.blob, source.row)``.

Airflow retries tasks, and a worker can die between writing a ledger and reporting success, so
an append must be idempotent: :meth:`Ledgers.append_once` writes only the records whose key is
not already in any ledger for that run. To find them without reading whole ledgers, a small
receipts file remembers, per run, the byte offset where the run first wrote to each ledger; a
retry scans only from there. The receipt is written *before* the lines, so a crash in between
costs a short scan, never a duplicate. All of this happens under an exclusive file lock, so
several workers sharing the output directory (a mounted volume) cannot interleave lines.

The error ledger also holds *failure records* (``"record_type": "run_failure"``: a run failed;
see :mod:`alerts`); row records have no ``record_type``. Readers that count rows skip them
(:func:`is_row_record`).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from include.painting_simulator.settings import (
    ANOMALY_LEDGER,
    ERROR_LEDGER,
    NORMAL_LEDGER,
    SERVICE_NAME,
)

# ``record_type`` of a failure record in the error ledger (row records have no record_type).
RUN_FAILURE = "run_failure"
LEDGER_FILES = {"anomaly": ANOMALY_LEDGER, "normal": NORMAL_LEDGER, "error": ERROR_LEDGER}
RECEIPTS_FILE = ".painting_ledger_receipts.json"
LOCK_FILE = ".painting_ledger.lock"
# Receipts are only needed while a run can still be retried; keep the most recent ones.
MAX_RECEIPTS = 2000


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_record(
    result: dict[str, Any], run_id: str, logged_at: str | None = None
) -> dict[str, Any]:
    """The ledger record for one row's result (see the README's "Results" section)."""
    record: dict[str, Any] = {
        "timestamp": logged_at or utc_now(),
        "service_name": SERVICE_NAME,
        "run_id": run_id,
        "source": {"blob": result["source"]["blob"], "row": result["source"]["row"]},
    }
    if result["kind"] == "anomaly":
        record["prediction"] = result["prediction"]
    elif result["kind"] == "error":
        record["error"] = result["error"]
        if result.get("status") is not None:
            record["status"] = result["status"]
    record["original_data"] = result["original_data"]
    return record


def _key(record: dict[str, Any]) -> tuple[str, int]:
    return record["source"]["blob"], record["source"]["row"]


class Ledgers:
    """The ledgers in one output directory (created on first use)."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir

    def path(self, kind: str) -> str:
        return os.path.join(self.output_dir, LEDGER_FILES[kind])

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
            try:
                with open(self.path(kind), "rb") as fh:
                    fh.seek(offset)
                    for line in fh:
                        if not line.endswith(b"\n"):
                            continue  # a torn last line from a killed writer: not written
                        try:
                            record = json.loads(line)
                        except ValueError:
                            continue
                        # Failure records (record_type) share the error ledger: not rows.
                        if record.get("run_id") == run_id and "record_type" not in record:
                            keys.add(_key(record))
            except FileNotFoundError:
                continue
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
            fresh = [r for r in records if _key(r) not in done]
            if not fresh:
                return 0
            if kind not in offsets:
                offsets[kind] = os.path.getsize(path) if os.path.exists(path) else 0
                receipts.pop(receipt, None)
                receipts[receipt] = offsets  # most recent last, for trimming
                self._save_receipts(receipts)
            payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in fresh)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            return len(fresh)

    def append_failure(self, record: dict[str, Any]) -> bool:
        """Append a failure record (see :mod:`alerts`) unless one with the same run, task and try
        is already in the error ledger; True if written.

        Scans the whole error ledger: failures are rare, and a run's receipt may not exist.
        """
        path = self.path("error")
        key = _failure_key(record)
        with self._locked():
            self._trim_torn_tail(path)
            try:
                with open(path, "rb") as fh:
                    for line in fh:
                        if RUN_FAILURE.encode() not in line:
                            continue  # cheap skip of row records
                        try:
                            existing = json.loads(line)
                        except ValueError:
                            continue
                        if existing.get("record_type") == RUN_FAILURE and (
                            _failure_key(existing) == key
                        ):
                            return False
            except FileNotFoundError:
                pass
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            return True


def _failure_key(record: dict[str, Any]) -> tuple[Any, Any, Any]:
    return record.get("run_id"), record.get("task_id"), record.get("try_number")


def is_row_record(record: dict[str, Any]) -> bool:
    """True for a row's record; False for a failure record (``record_type`` set)."""
    return "record_type" not in record


def record_results(
    ledgers: Ledgers, kind: str, run_id: str, results: Iterable[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """Write the results of one kind to their ledger; return (records, how many were new)."""
    logged_at = utc_now()
    records = [make_record(r, run_id, logged_at) for r in results if r["kind"] == kind]
    return records, ledgers.append_once(kind, run_id, records)


def describe_anomaly(record: dict[str, Any]) -> str:
    """One readable task-log line per anomaly: machine, time, issue, and where the row came from."""
    prediction = record.get("prediction") or {}
    data = record.get("original_data") or {}
    return (
        f"ANOMALY {prediction.get('issue', '?')} machine={data.get('machineId', '?')} "
        f"time={data.get('timeStamp', '?')} thick={data.get('thick')} "
        f"voltage={data.get('voltage')} current={data.get('current')} temper={data.get('temper')} "
        f"({record['source']['blob']} row {record['source']['row']})"
    )


def describe_error(record: dict[str, Any]) -> str:
    """One readable task-log line per error record."""
    status = f" status={record['status']}" if "status" in record else ""
    return (
        f"ERROR {record['source']['blob']} row {record['source']['row']}{status}: {record['error']}"
    )


def describe_failure(record: dict[str, Any]) -> str:
    """One readable log line per failure record."""
    return (
        f"RUN FAILED {record['run_id']} task {record['task_id']} "
        f"(try {record['try_number']}): {record['error']}"
    )
