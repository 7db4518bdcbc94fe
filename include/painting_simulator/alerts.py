"""Failure records: why a run failed, in the error ledger and the task log, in one line.

Two Airflow callbacks of the simulator DAG call this module (the DAG file holds only the wiring):

* :func:`record_task_failure`, the tasks' ``on_failure_callback``. Airflow calls it in the task's
  own process when a task fails for good (after its retries; ``on_retry_callback`` is for the
  tries before), with the exception: the record names the run, the task, the try and the cause
  (``ExceptionType: message``), and the same line goes to that task's log.
* :func:`record_run_failure`, the DAG's ``on_failure_callback``, called once per failed run
  (by the dag-processor, or in-process under ``dag.test()``), after the task callback. Airflow
  gives it the failed task but no exception. It writes a record only when the task callback did
  not: when the task's process was killed on its last try (SIGKILL, out of memory) or lost its
  heartbeat, or when the run timed out. So every failed run leaves a record, and a run that
  failed in the usual way leaves exactly one.

A failure record is told apart from the row records of the same ledger by
``"record_type": "run_failure"`` (row records have no ``record_type`` and keep their shape)::

    {"record_type": "run_failure", "timestamp": ..., "service_name": ..., "dag_id": ...,
     "run_id": ..., "task_id": "call_model_service", "try_number": 4,
     "error": "ModelServiceUnreachable: model service unreachable: ..."}

Writes are exactly-once per (run, task, try): :meth:`ledger.Ledgers.append_failure`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from include.painting_simulator import settings
from include.painting_simulator.ledger import (
    RUN_FAILURE,
    Ledgers,
    describe_failure,
    utc_now,
)

log = logging.getLogger("painting_simulator")

MAX_CAUSE_CHARS = 2000
KILLED_CAUSE = (
    "the task ended failed without reporting an exception: its process was killed "
    "(e.g. SIGKILL, out of memory) or lost its heartbeat; see the task's log"
)

GetVariable = Callable[[str], Any]


def output_dir(get_variable: GetVariable) -> str:
    """The ledgers' directory: the Variable ``painting_output_dir`` or its default."""
    return get_variable(settings.VAR_OUTPUT_DIR) or settings.default_output_dir()


def describe_exception(exc: BaseException | None) -> str:
    if exc is None:
        return KILLED_CAUSE
    message = str(exc).strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:MAX_CAUSE_CHARS]


def failure_record(
    *,
    dag_id: str | None,
    run_id: str,
    task_id: str | None,
    try_number: int | None,
    cause: str,
    logged_at: str | None = None,
) -> dict[str, Any]:
    return {
        "record_type": RUN_FAILURE,
        "timestamp": logged_at or utc_now(),
        "service_name": settings.SERVICE_NAME,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "try_number": try_number,
        "error": cause,
    }


def _run_id(context: Mapping[str, Any]) -> str:
    run_id = context.get("run_id")
    if not run_id and context.get("dag_run") is not None:
        run_id = context["dag_run"].run_id
    return str(run_id)


def _dag_id(context: Mapping[str, Any]) -> str | None:
    dag = context.get("dag")
    if dag is not None:
        return dag.dag_id
    ti = context.get("ti")
    return getattr(ti, "dag_id", None)


def record_task_failure(context: Mapping[str, Any], get_variable: GetVariable) -> dict | None:
    """``on_failure_callback`` of a task: record and log why it failed; the record or None."""
    ti = context["ti"]
    record = failure_record(
        dag_id=_dag_id(context),
        run_id=_run_id(context),
        task_id=ti.task_id,
        try_number=ti.try_number,
        cause=describe_exception(context.get("exception")),
    )
    return _write(record, get_variable)


def record_run_failure(context: Mapping[str, Any], get_variable: GetVariable) -> dict | None:
    """``on_failure_callback`` of the DAG: a record only if the failed task wrote none."""
    ti = context.get("ti")
    reason = context.get("reason") or "task_failure"
    if reason == "task_failure" and ti is not None:
        cause = KILLED_CAUSE
    elif ti is not None:  # e.g. "timed_out" (dagrun_timeout): ti is the unfinished task
        cause = f"run failed ({reason}) while task {ti.task_id} was unfinished"
    else:
        cause = f"run failed ({reason}) with no failed task to name"
    record = failure_record(
        dag_id=_dag_id(context),
        run_id=_run_id(context),
        task_id=getattr(ti, "task_id", None),
        try_number=getattr(ti, "try_number", None),
        cause=cause,
    )
    return _write(record, get_variable)


def _write(record: dict[str, Any], get_variable: GetVariable) -> dict | None:
    ledgers = Ledgers(output_dir(get_variable))
    if not ledgers.append_failure(record):
        log.info(
            "run %s: failure of %s (try %s) already recorded",
            record["run_id"],
            record["task_id"],
            record["try_number"],
        )
        return None
    log.error("%s (in %s)", describe_failure(record), ledgers.path("error"))
    return record
