"""
### Painting replay

Load-tests the model service with real line data: replays a range of the simulator's row
sequence to `/predict/` as fast as the service takes it (or at a set rate), records every
outcome in the simulator's ledgers and writes a load-test report.

```
plan_shards ► replay_shard × shards (mapped) ► summarize
```

* **plan_shards** checks the `thresholds` (param, else the Variable
  `painting_replay_thresholds`) and the `candidate_conn_id` connection: an unknown threshold
  name, a malformed limit, `agreement` without a candidate or a candidate connection that does
  not exist fails the run here, before any row is sent. Then it counts the rows of the
  sequence (all `.csv` blobs under the prefix, sorted by name, as for the simulator) and splits
  `rows` rows from `start_row` into `shards` ranges.
* **replay_shard** (one mapped task per shard, so a Celery deployment spreads them over
  workers) streams its rows from the local row cache, POSTs them with at most `concurrency`
  requests in flight (and `rate / shards` rows per second if `rate` is set) and appends each
  outcome to the ledgers under this run's id. A retry resumes after the last recorded chunk.
  With `candidate_conn_id` each sent row also goes, at the same time, to the candidate model
  service; its verdict is the record's `candidate`, never the row's outcome.
* **summarize** merges the shards' figures — rows, outcomes by kind, throughput, latency
  p50/p95/p99/max, errors by cause — logs them as a table and appends them to
  `painting_replay_summary.jsonl` in `painting_output_dir`, or to the table
  `painting_replay_reports` of the results database `painting_results_db` when that connection
  exists (see `docs/replay.md`, `docs/results-database.md`). With
  thresholds it judges each (✓ / ✗ in the report, `thresholds` and `passed` in the summary)
  and, once the summary is written, **fails the run** when any failed: a release gate (first
  mailing the failed thresholds through the Variable `painting_alert_rules`' connection and
  recipients, see `docs/alerts.md`). With a
  candidate, the summary's `candidate` block: agreement, production × candidate matrix,
  the candidate's latency and errors.

Trigger with e.g. `{"start_row": 0, "rows": 100000, "concurrency": 16, "rate": 0, "shards": 2,
"thresholds": {"latency_p95_ms": 50, "error_rate": 0.01}}`; side by side with a candidate:
`{"candidate_conn_id": "painting_model_service_candidate", "thresholds": {"agreement": 0.99}}`.
The simulator's position (`painting_position`) is neither read nor moved.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pendulum

from airflow.sdk import Param, dag, task

from include.painting_simulator import settings

log = logging.getLogger("painting_simulator")


@dag(
    dag_id=settings.REPLAY_DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # Only ever triggered by hand, so it may be unpaused from the start (a trigger is the switch).
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["painting", "replay", "model-service", "load-test"],
    default_args={
        "owner": "painting-simulator",
        "retries": 2,
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=5),
    },
    params={
        "start_row": Param(
            0,
            type="integer",
            minimum=0,
            title="Start row",
            description="0-based row of the whole sequence to start from.",
        ),
        "rows": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Rows",
            description="How many rows to replay (empty: to the end of the sequence).",
        ),
        "concurrency": Param(
            8,
            type="integer",
            minimum=1,
            maximum=1024,
            title="Concurrency",
            description="Requests in flight at most, per shard.",
        ),
        "rate": Param(
            0,
            type="number",
            minimum=0,
            title="Rate",
            description="Rows per second over all shards; 0 = as fast as the service answers.",
        ),
        "shards": Param(
            1,
            type="integer",
            minimum=1,
            maximum=64,
            title="Shards",
            description="Parallel mapped tasks the range is split into.",
        ),
        settings.PARAM_THRESHOLDS: Param(
            None,
            type=["null", "object"],
            title="Thresholds",
            description="Release gate: the run fails when a limit is not met. Keys (all "
            "optional): latency_p95_ms, latency_p99_ms, error_rate (max); anomaly_rate "
            "([min, max]); throughput_rows_per_second, expected_accuracy, agreement (min; "
            f"needs {settings.PARAM_CANDIDATE_CONN_ID}). Empty: the "
            f"Variable {settings.VAR_REPLAY_THRESHOLDS}. E.g. "
            '{"latency_p95_ms": 50, "error_rate": 0.01, "anomaly_rate": [0.05, 0.3]}',
        ),
        settings.PARAM_CANDIDATE_CONN_ID: Param(
            None,
            type=["null", "string"],
            title="Candidate connection",
            description="An HTTP connection to a candidate model service (e.g. "
            f"{settings.CANDIDATE_CONN_ID}): every sent row also goes to it and the summary "
            "compares its verdicts with production's. Empty: no candidate.",
        ),
    },
)
def painting_replay() -> None:
    @task
    def plan_shards(**context: Any) -> list[dict[str, int]]:
        """Count the sequence's rows and split the requested range into shards."""
        from airflow.sdk.exceptions import AirflowFailException

        from include.painting_simulator import airflow_runtime
        from include.painting_simulator.replay import plan, thresholds

        config, params = airflow_runtime.run_config(), context["params"]
        candidate = params.get(settings.PARAM_CANDIDATE_CONN_ID) or None
        try:
            limits = thresholds.resolve(
                params[settings.PARAM_THRESHOLDS],
                airflow_runtime.variable(settings.VAR_REPLAY_THRESHOLDS),
                candidate,
            )
            if candidate:
                airflow_runtime.require_connection(candidate, settings.PARAM_CANDIDATE_CONN_ID)
        except (thresholds.ThresholdError, LookupError) as exc:
            raise AirflowFailException(str(exc)) from None
        log.info("thresholds: %s", limits or "none")
        context["ti"].xcom_push(key=settings.XCOM_REPLAY_THRESHOLDS, value=limits)
        total = plan.count_rows(airflow_runtime.blob_rows(config), config.prefix)
        try:
            specs = plan.plan_shards(total, params["start_row"], params["rows"], params["shards"])
        except ValueError as exc:
            raise AirflowFailException(f"{exc} (blobs under {config.prefix!r})") from None
        log.info(
            "replaying %d row(s) from row %d of %d in %d shard(s): %s",
            sum(s["rows"] for s in specs), params["start_row"], total, len(specs), specs,
        )  # fmt: skip
        return specs

    @task(multiple_outputs=False)
    def replay_shard(spec: dict[str, int], **context: Any) -> dict[str, Any]:
        """POST the shard's rows with bounded concurrency and record every outcome."""
        from airflow.providers.http.hooks.http import HttpHook

        from include.painting_simulator import airflow_runtime
        from include.painting_simulator.replay import sender, shard, summary

        config, params = airflow_runtime.run_config(), context["params"]
        writer = airflow_runtime.results(config, kept=True)  # first: the log says where to
        hook = HttpHook(method="POST", http_conn_id=settings.MODEL_CONN_ID)
        endpoint = sender.endpoint_from_hook(hook, config.request_timeout, config.request_attempts)
        candidate = None
        if conn_id := params.get(settings.PARAM_CANDIDATE_CONN_ID):
            candidate = sender.endpoint_from_hook(
                HttpHook(method="POST", http_conn_id=conn_id),
                config.request_timeout,
                config.request_attempts,
            )
        try:
            shard_summary = shard.run_shard(
                airflow_runtime.blob_rows(config),
                config.prefix,
                spec,
                endpoint,
                concurrency=params["concurrency"],
                rate=params["rate"] / spec["shards"],
                output_dir=config.output_dir,
                run_id=context["run_id"],
                results=writer,
                candidate=candidate,
            )
        finally:
            writer.close()
        log.info("%s\n%s", endpoint.url, summary.format_summary(shard_summary))
        return shard_summary

    @task
    def summarize(summaries: list[dict[str, Any]], **context: Any) -> None:
        """Merge the shards' figures, judge the thresholds, log the summary and append it to the
        summary file; then fail the run if a threshold failed."""
        from airflow.providers.http.hooks.http import HttpHook
        from airflow.sdk.exceptions import AirflowFailException

        from include.painting_simulator import airflow_runtime
        from include.painting_simulator.replay import summary, thresholds

        config, ti = airflow_runtime.run_config(), context["ti"]
        writer = airflow_runtime.results(config)  # first: the log says where results go
        url = HttpHook(http_conn_id=settings.MODEL_CONN_ID).url_from_endpoint(
            settings.PREDICT_ENDPOINT
        )
        limits = ti.xcom_pull(task_ids="plan_shards", key=settings.XCOM_REPLAY_THRESHOLDS)
        params = context["params"]
        merged = summary.combine(
            list(summaries),
            context["run_id"],
            params,
            url,
            limits or {},
            params.get(settings.PARAM_CANDIDATE_CONN_ID) or None,
        )
        writer.write_summary(merged)
        log.info(
            "\n%s\nwritten to %s",
            summary.format_summary(merged),
            writer.describe(settings.REPLAY_SUMMARY),
        )
        ti.xcom_push(key=settings.XCOM_REPLAY_SUMMARY, value=merged)
        failed = thresholds.failure_message(merged["thresholds"])
        if failed:
            from include.painting_simulator import alert_mail

            try:  # the mail of docs/alerts.md; its failure must not hide the gate's
                alert_mail.gate_mail(merged, failed, context)
            except Exception as exc:
                log.error("the gate's mail was not sent: %s", exc)
            raise AirflowFailException(failed)  # not retried: the figures would not change

    summarize(replay_shard.expand(spec=plan_shards()))


painting_replay()
