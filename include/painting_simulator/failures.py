"""Failure records from Airflow's failure callbacks: why a run failed, in one line.

The record goes to ``painting_run_failures.jsonl`` (through :mod:`results`) and to the failed
task's log. Two Airflow callbacks of the simulator DAG call this module (the DAG file holds
only the wiring):

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

The record (:class:`records.FailureRecord`) keeps ``"record_type": "run_failure"``::

    {"record_type": "run_failure", "timestamp": ..., "service_name": ..., "dag_id": ...,
     "run_id": ..., "task_id": "call_model_service", "try_number": 4,
     "error": "ModelServiceUnreachable: model service unreachable: ..."}

Writes are exactly-once per (run, task, try): :meth:`results.ResultsWriter.write_failure`. The
DAG passes the store to write to (the results database when ``painting_results_db`` exists); when
that database cannot be reached, the record goes to the JSON-lines file instead, so that it is
not lost with the failure it explains.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from include.painting_simulator import settings
from include.painting_simulator.records import FailureRecord, describe_failure, failure_record
from include.painting_simulator.results import JsonLinesResults, ResultsWriter, open_results
from include.painting_simulator.results_db import ResultsDatabaseError

log = logging.getLogger("painting_simulator")

MAX_CAUSE_CHARS = 2000
KILLED_CAUSE = (
    "the task ended failed without reporting an exception: its process was killed "
    "(e.g. SIGKILL, out of memory) or lost its heartbeat; see the task's log"
)

GetVariable = Callable[[str], Any]
# The results store of an output directory (``airflow_runtime.results_store`` in the DAG).
OpenStore = Callable[[str], ResultsWriter]


def describe_exception(exc: BaseException | None) -> str:
    if exc is None:
        return KILLED_CAUSE
    message = str(exc).strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:MAX_CAUSE_CHARS]


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


def record_task_failure(
    context: Mapping[str, Any], get_variable: GetVariable, store: OpenStore = open_results
) -> FailureRecord | None:
    """``on_failure_callback`` of a task: record and log why it failed; the record or None."""
    ti = context["ti"]
    record = failure_record(
        dag_id=_dag_id(context),
        run_id=_run_id(context),
        task_id=ti.task_id,
        try_number=ti.try_number,
        cause=describe_exception(context.get("exception")),
    )
    return _write(record, get_variable, store)


def record_run_failure(
    context: Mapping[str, Any], get_variable: GetVariable, store: OpenStore = open_results
) -> FailureRecord | None:
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
    return _write(record, get_variable, store)


def _write(
    record: FailureRecord, get_variable: GetVariable, store: OpenStore
) -> FailureRecord | None:
    output_dir = settings.output_dir(get_variable)
    try:
        results = store(output_dir)
        written = results.write_failure(record)
    except ResultsDatabaseError as exc:
        log.error("%s; the failure record goes to the JSON-lines file instead", exc)
        results = JsonLinesResults(output_dir)
        written = results.write_failure(record)
    if not written:
        log.info(
            "run %s: failure of %s (try %s) already recorded",
            record["run_id"],
            record["task_id"],
            record["try_number"],
        )
        return None
    log.error("%s (in %s)", describe_failure(record), results.describe(settings.RUN_FAILURE))
    return record
