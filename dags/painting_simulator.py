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
  Airflow retries it; the position does not move.
* **route_results** branches to the log tasks that have something to write; each appends to its
  JSON-lines ledger in `painting_output_dir` exactly once per row, even across task retries.
* **advance_position** (the join) moves the position past this window: only a run that recorded
  its whole window moves it, so a failed run's window is sent again by the next run.

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

ANOMALY_LEDGER_ASSET = Asset(name="painting_issue_logs")
LOG_TASK_BY_KIND = {"anomaly": "log_anomalies", "normal": "log_normals", "error": "log_errors"}


def _run_config() -> settings.RunConfig:
    """The run's settings from Airflow Variables (``AIRFLOW_VAR_*`` environment variables work)."""
    # Called only from inside the tasks below, never at parse time.
    return settings.RunConfig.from_variables(
        lambda name: Variable.get(name, default=None)  # noqa: AIR003
    )


@dag(
    dag_id="painting_simulator",
    schedule=settings.schedule_interval(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    dagrun_timeout=timedelta(minutes=30),
    doc_md=__doc__,
    tags=["painting", "simulator", "model-service"],
    default_args={
        "owner": "painting-simulator",
        "retries": 3,
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=5),
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
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        from include.painting_simulator import blob_source, row_mapping, sequence

        config = _run_config()
        container, prefix = config.container, config.prefix
        params = context["params"]
        batch_size = params.get("batch_size") or config.batch_size
        hook = WasbHook(wasb_conn_id=settings.BLOB_CONN_ID)
        try:
            names = blob_source.list_csv_blobs(hook, container, prefix)
        except Exception as exc:
            raise blob_source.explain_storage_error(exc, container, settings.BLOB_CONN_ID) from None
        if not names:
            raise sequence.NoRowsError(
                f"no .csv blob under {container}/{prefix} (connection {settings.BLOB_CONN_ID!r})"
            )

        loaded: dict[str, list[dict[str, Any]] | None] = {}

        def load(name: str) -> list[dict[str, Any]] | None:
            if name not in loaded:
                try:
                    data = blob_source.read_blob(hook, container, name)
                except Exception as exc:
                    raise blob_source.explain_storage_error(
                        exc, container, settings.BLOB_CONN_ID
                    ) from None
                loaded[name] = None if data is None else blob_source.parse_csv(data)
            return loaded[name]

        if params.get("start_row") is not None:
            position = sequence.locate(names, params["start_row"], load)
            log.info("start_row=%s is %s row %s", params["start_row"], position.blob, position.row)
        else:
            stored = Variable.get(settings.VAR_POSITION, default=None, deserialize_json=True)
            if stored and stored.get("run_id") == context["run_id"]:
                # This run already advanced the position (it is being re-run after a clear):
                # send the same window again, not the next one.
                stored = stored.get("window_start")
            position = sequence.Position.from_json(stored)
        window = sequence.take_window(names, position, batch_size, load)
        for warning in window.warnings:
            log.warning("%s", warning)

        items: list[dict[str, Any]] = []
        for blob, row, data in window.rows:
            source = {"blob": blob, "row": row}
            try:
                items.append({"source": source, "body": row_mapping.to_request_body(data)})
            except row_mapping.RowMappingError as exc:
                error = f"blob {blob!r} row {row}: {exc}"
                items.append({"source": source, "raw": data, "error": error})
        first, last = window.rows[0], window.rows[-1]
        log.info(
            "window of %d rows from %s row %d to %s row %d in %s/%s (%d blob(s))%s",
            len(items), first[0], first[1], last[0], last[1], container, prefix, len(names),
            "; wrapped to the first blob" if window.wrapped else "",
        )  # fmt: skip
        return {
            "items": items,
            "window_start": position.to_json() if position else None,
            "next_position": window.next_position.to_json(),
        }

    @task
    def call_model_service(window: dict[str, Any]) -> list[dict[str, Any]]:
        """POST every mapped row to the model service's /predict/ and classify the answers."""
        import requests

        from airflow.providers.http.hooks.http import HttpHook

        from include.painting_simulator import model_client

        config = _run_config()
        hook = HttpHook(method="POST", http_conn_id=settings.MODEL_CONN_ID)
        session = hook.get_conn()
        url = hook.url_from_endpoint(settings.PREDICT_ENDPOINT)
        options = {**hook.merged_extra, "timeout": config.request_timeout, "check_response": False}

        def post(body: dict[str, Any]) -> model_client.HttpAnswer:
            request = session.prepare_request(requests.Request("POST", url, json=body))
            try:
                response = hook.run_and_check(session, request, options)
            except requests.RequestException as exc:
                raise model_client.TransportError(f"{type(exc).__name__} on POST {url}") from exc
            retry_after = response.headers.get("Retry-After", "")
            return model_client.HttpAnswer(
                response.status_code,
                response.text,
                float(retry_after) if retry_after.isdigit() else None,
            )

        results = model_client.call_window(window["items"], post, attempts=config.request_attempts)
        counts = {kind: sum(r["kind"] == kind for r in results) for kind in LOG_TASK_BY_KIND}
        log.info("model service %s answered: %s", url, counts)
        return results

    @task.branch
    def route_results(results: list[dict[str, Any]]) -> list[str]:
        """Follow the branch of every kind of result this window holds."""
        kinds = {result["kind"] for result in results}
        return [task_id for kind, task_id in LOG_TASK_BY_KIND.items() if kind in kinds]

    def _record(kind: str, results: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
        from include.painting_simulator import ledger

        ledgers = ledger.Ledgers(_run_config().output_dir)
        records, written = ledger.record_results(ledgers, kind, run_id, results)
        if written < len(records):
            log.info("%d record(s) were already in the ledger (task retry)", len(records) - written)
        log.info("%d %s record(s) in %s", len(records), kind, ledgers.path(kind))
        return records

    @task(outlets=[ANOMALY_LEDGER_ASSET])
    def log_anomalies(results: list[dict[str, Any]], **context: Any) -> int:
        """Append anomalies to painting_issue_logs.jsonl and log one line per anomaly."""
        from include.painting_simulator.ledger import describe_anomaly

        records = _record("anomaly", results, context["run_id"])
        for record in records:
            log.warning("%s", describe_anomaly(record))
        return len(records)

    @task
    def log_normals(results: list[dict[str, Any]], **context: Any) -> int:
        """Append normal rows to painting_normal_logs.jsonl and log a one-line summary."""
        records = _record("normal", results, context["run_id"])
        machines = sorted({r["original_data"]["machineId"] for r in records})
        log.info("NORMAL %d row(s) from machine(s) %s", len(records), ", ".join(machines))
        return len(records)

    @task
    def log_errors(results: list[dict[str, Any]], **context: Any) -> int:
        """Append rows that got no verdict to painting_errors.jsonl and log each cause."""
        from include.painting_simulator.ledger import describe_error

        records = _record("error", results, context["run_id"])
        for record in records:
            log.error("%s", describe_error(record))
        return len(records)

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, multiple_outputs=False)
    def advance_position(window: dict[str, Any], **context: Any) -> dict[str, Any]:
        """Move the stored position past this window (only reached when it was all recorded)."""
        stored = {
            **window["next_position"],
            "run_id": context["run_id"],
            "window_start": window["window_start"],
        }
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
