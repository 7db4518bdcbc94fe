"""
### Painting simulator

Replays e-coating line readings from Azure Blob Storage to the defect-detection model service
as if they arrived live, and records what the model says.

```
pull_window ► call_model_service ► route_results ┬ anomalies ► log_anomalies ┐
                                                 ├ normals ──► log_normals ──┼► advance_position
                                                 └ errors ───► log_errors ───┘
```

* **pull_window** lists the `.csv` blobs under the prefix (connection `painting_blob_storage`),
  takes the next `batch_size` rows from the stored position (Variable `painting_position`) and
  maps each to a request body; a row that cannot be mapped becomes an error naming its column.
* **call_model_service** POSTs each body to `/predict/` of `painting_model_service`, with a
  timeout and retries with back-off. 204 = normal, 200 (flat record or `predictions`) = anomaly,
  4xx and persistent 5xx = error. If the service cannot be reached at all, the task fails and
  Airflow retries it; the position does not move. **Shadow mode**: with the Variable
  `painting_candidate_conn_id` set, each row also goes, at the same time, to that candidate
  model service (one attempt); its verdict is the record's `candidate`, never the row's outcome,
  and a candidate that is down never fails the run (`docs/shadow-mode.md`).
* **route_results** branches to the log tasks that have something to write; each appends to its
  JSON-lines ledger in `painting_output_dir` exactly once per row, even across task retries (or
  to the table `painting_results` when the connection `painting_results_db` exists; its first
  log line says which: `docs/results-database.md`).
* **advance_position** (the join) moves the position past this window: only a run that recorded
  its whole window moves it, so a failed run's window is sent again by the next run.

A run that fails leaves a failure record (run, task, cause) in `painting_run_failures.jsonl` and
in the failed task's log (`on_failure_callback`). Results format: `docs/results.md`.

Pause the DAG to stop the simulation, unpause it to go on from where it stopped. Trigger it with
`{"batch_size": 50}` or `{"start_row": 0}` to send a different window now; `start_row` also moves
the position, so scheduled runs continue after that window.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pendulum

from airflow.sdk import Asset, Label, Param, TriggerRule, Variable, dag, task

from include.painting_simulator import settings

log = logging.getLogger("painting_simulator")

ANOMALY_LEDGER_ASSET = Asset(name=settings.ANOMALY_LEDGER_ASSET_NAME)
LOG_TASK_BY_KIND = {
    settings.ANOMALY: "log_anomalies",
    settings.NORMAL: "log_normals",
    settings.ERROR: "log_errors",
}


def _record_task_failure(context: Any) -> None:
    """Tasks' on_failure_callback: a failure record (run, task, cause) in the failure ledger."""
    from include.painting_simulator import failures
    from include.painting_simulator.airflow_runtime import results_store, variable

    failures.record_task_failure(context, variable, results_store)


def _record_run_failure(context: Any) -> None:
    """The DAG's on_failure_callback: a failure record if the failed task could not write one."""
    from include.painting_simulator import failures
    from include.painting_simulator.airflow_runtime import results_store, variable

    failures.record_run_failure(context, variable, results_store)


@dag(
    dag_id=settings.SIMULATOR_DAG_ID,
    schedule=settings.schedule_interval(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    dagrun_timeout=timedelta(minutes=30),
    doc_md=__doc__,
    on_failure_callback=_record_run_failure,
    tags=["painting", "simulator", "model-service"],
    default_args={
        "owner": "painting-simulator",
        "retries": 3,
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=5),
        "on_failure_callback": _record_task_failure,
    },
    params={
        "batch_size": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Batch size",
            description="Rows to send in this run (empty: Variable painting_batch_size).",
        ),
        "start_row": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            title="Start row",
            description="0-based row of the whole sequence to start from (empty: the stored "
            "position). Scheduled runs continue after this window.",
        ),
    },
)
def painting_simulator() -> None:
    @task(multiple_outputs=False)
    def pull_window(**context: Any) -> dict[str, Any]:
        """Read the next window of rows from blob storage and map them to request bodies."""
        from include.painting_simulator import airflow_runtime
        from include.painting_simulator.window import read_window

        config = airflow_runtime.run_config()
        return read_window(
            airflow_runtime.blob_rows(config),  # a warm tick reads only its window
            config.prefix,
            context["params"].get("batch_size") or config.batch_size,
            start_row=context["params"].get("start_row"),
            stored=Variable.get(settings.VAR_POSITION, default=None, deserialize_json=True),
            run_id=context["run_id"],
        )

    @task
    def call_model_service(window: dict[str, Any]) -> list[dict[str, Any]]:
        """POST every mapped row to the model service's /predict/ and classify the answers."""
        from airflow.providers.http.hooks.http import HttpHook

        from include.painting_simulator import airflow_runtime, model_client

        config = airflow_runtime.run_config()
        hook = HttpHook(method="POST", http_conn_id=settings.MODEL_CONN_ID)
        post = model_client.hook_transport(hook, settings.PREDICT_ENDPOINT, config.request_timeout)
        candidate_id = airflow_runtime.shadow_candidate()  # fails the task if misconfigured
        if candidate_id is None:
            results = model_client.call_window(
                window["items"], post, attempts=config.request_attempts
            )
        else:  # shadow mode: every row also goes to the candidate (docs/shadow-mode.md)
            results = airflow_runtime.call_with_candidate(
                window["items"], post, candidate_id, config
            )
        counts = {kind: sum(r["kind"] == kind for r in results) for kind in settings.KINDS}
        log.info("%s answered: %s", hook.url_from_endpoint(settings.PREDICT_ENDPOINT), counts)
        return results

    @task.branch
    def route_results(results: list[dict[str, Any]]) -> list[str]:
        """Follow the branch of every kind of result this window holds."""
        kinds = {result["kind"] for result in results}
        return [task_id for kind, task_id in LOG_TASK_BY_KIND.items() if kind in kinds]

    def _record(kind: str, results: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
        """Write this kind's results through the results writer; the records written."""
        from include.painting_simulator import airflow_runtime

        writer = airflow_runtime.results(airflow_runtime.run_config())
        written = writer.write_rows(run_id, [r for r in results if r["kind"] == kind])
        if written.new < len(written.records):
            log.info(
                "%d record(s) were already in the ledger (task retry)",
                len(written.records) - written.new,
            )
        log.info("%d %s record(s) in %s", len(written.records), kind, writer.describe(kind))
        return written.records

    @task(outlets=[ANOMALY_LEDGER_ASSET])
    def log_anomalies(results: list[dict[str, Any]], **context: Any) -> int:
        """Append anomalies to painting_issue_logs.jsonl and log one line per anomaly."""
        from include.painting_simulator.records import describe_anomaly

        records = _record(settings.ANOMALY, results, context["run_id"])
        for record in records:
            log.warning("%s", describe_anomaly(record))
        return len(records)

    @task
    def log_normals(results: list[dict[str, Any]], **context: Any) -> int:
        """Append normal rows to painting_normal_logs.jsonl and log a one-line summary."""
        records = _record(settings.NORMAL, results, context["run_id"])
        machines = sorted({r["original_data"]["machineId"] for r in records})
        log.info("NORMAL %d row(s) from machine(s) %s", len(records), ", ".join(machines))
        return len(records)

    @task
    def log_errors(results: list[dict[str, Any]], **context: Any) -> int:
        """Append rows that got no verdict to painting_errors.jsonl and log each cause."""
        from include.painting_simulator.records import describe_error

        records = _record(settings.ERROR, results, context["run_id"])
        for record in records:
            log.error("%s", describe_error(record))
        return len(records)

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, multiple_outputs=False)
    def advance_position(window: dict[str, Any], **context: Any) -> dict[str, Any]:
        """Move the stored position past this window (only reached when it was all recorded)."""
        from include.painting_simulator.sequence import stored_position

        stored = stored_position(window, context["run_id"])
        Variable.set(settings.VAR_POSITION, json.dumps(stored))
        log.info("next run starts at %s", window["next_position"])
        return stored

    window = pull_window()
    results = call_model_service(window)
    route = route_results(results)
    done = advance_position(window)
    route >> Label("anomalies") >> log_anomalies(results) >> done
    route >> Label("normals") >> log_normals(results) >> done
    route >> Label("errors") >> log_errors(results) >> done


painting_simulator()
