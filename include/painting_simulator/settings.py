"""Every name of the package, defined once: DAG ids, connection ids, Variables, result kinds, files.

The DAGs, the dashboard plugin, the local stack and the tests import these names; the docs
(``docs/`` and the README's configuration table) spell them the same way. The run's settings
(:class:`RunConfig`) are read from the Variables named here, at run time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

SERVICE_NAME = "painting-process-equipment"

# DAG ids.
SIMULATOR_DAG_ID = "painting_simulator"
REPLAY_DAG_ID = "painting_replay"
# Airflow's run_id of a scheduled run starts so; painting_replay has no schedule, so a run id
# with it is never a replay's (the dashboard's shadow figures rely on it).
SCHEDULED_RUN_PREFIX = "scheduled__"
STORAGE_CHECK_DAG_ID = "check_azure_storage_connection"
MODEL_CHECK_DAG_ID = "check_model_service_connection"
ALERTS_DAG_ID = "painting_alerts"

# What a row ends as: the three result kinds, in the order reports list them.
ANOMALY = "anomaly"
NORMAL = "normal"
ERROR = "error"
KINDS = (ANOMALY, NORMAL, ERROR)
# ``record_type`` of a failure record (why a run failed); row records have no record_type.
RUN_FAILURE = "run_failure"
# What the replay writes once per run (its load-test figures).
REPLAY_SUMMARY = "replay_summary"

# Airflow connections (defined by the operator; nothing about them is hard-coded in a DAG).
BLOB_CONN_ID = "painting_blob_storage"
MODEL_CONN_ID = "painting_model_service"
# The usual id of a candidate model service's connection (painting_replay's candidate_conn_id,
# the Variable painting_candidate_conn_id of the simulator's shadow mode).
CANDIDATE_CONN_ID = "painting_model_service_candidate"
# The results database (docs/results-database.md): when this connection exists, every result goes
# to its tables instead of the JSON-lines files; its type picks the engine (postgres or sqlite).
RESULTS_DB_CONN_ID = "painting_results_db"

# Airflow Variables read at run time (so ``AIRFLOW_VAR_<NAME>`` environment variables work).
VAR_CONTAINER = "painting_container"
VAR_PREFIX = "painting_prefix"
VAR_BATCH_SIZE = "painting_batch_size"
VAR_OUTPUT_DIR = "painting_output_dir"
VAR_REQUEST_TIMEOUT = "painting_request_timeout_seconds"
VAR_REQUEST_ATTEMPTS = "painting_request_attempts"
# Written by the simulator itself: where the next window starts.
VAR_POSITION = "painting_position"
# The simulator's shadow mode: the HTTP connection of a candidate model service that every window
# is also sent to (empty or unset: no shadow mode; docs/results.md#shadow-mode).
VAR_CANDIDATE_CONN_ID = "painting_candidate_conn_id"
# The painting_replay release gate's default limits (JSON; the param ``thresholds`` replaces it).
VAR_REPLAY_THRESHOLDS = "painting_replay_thresholds"
# The alerts' rules, SMTP connection id and recipients (JSON; unset: alerts are off).
VAR_ALERT_RULES = "painting_alert_rules"
# Written by painting_alerts and the replay's gate mail, never by hand: the watermark (where
# the next read starts), each machine's anomaly streak at the watermark, and per rule the last
# digest sent (its key and when). A Variable rather than a file beside the ledgers because it
# must outlive the results store (the database store of issue 12 has no output directory).
VAR_ALERT_STATE = "painting_alert_state"

# painting_replay params read by the domain (the others are the DAG's own form fields).
PARAM_THRESHOLDS = "thresholds"
# The candidate model service's HTTP connection id: a replay side by side (the ``agreement``
# threshold needs it; docs/replay.md#a-candidate-side-by-side).
PARAM_CANDIDATE_CONN_ID = "candidate_conn_id"
# XCom keys of painting_replay: the limits plan_shards checked (summarize judges by them), and
# the summary summarize pushes, also when the gate then fails the run (a CI job reads it).
XCOM_REPLAY_THRESHOLDS = "thresholds"
XCOM_REPLAY_SUMMARY = "summary"
# The rule name under which the replay's failed gate mail is rate-limited (docs/alerts.md).
REPLAY_GATE_ALERT = "replay_gate"

DEFAULT_CONTAINER = "simulator-data"
DEFAULT_PREFIX = "painting-process-equipment/"
DEFAULT_BATCH_SIZE = 10
DEFAULT_OUTPUT_SUBDIR = "painting_logs"
DEFAULT_REQUEST_TIMEOUT_SECONDS = 30.0
DEFAULT_REQUEST_ATTEMPTS = 3

PREDICT_ENDPOINT = "/predict/"

# Results files (JSON lines) in the output directory: one row ledger per kind, row records only;
# failure records and replay reports have files of their own.
ANOMALY_LEDGER = "painting_issue_logs.jsonl"
NORMAL_LEDGER = "painting_normal_logs.jsonl"
ERROR_LEDGER = "painting_errors.jsonl"
LEDGER_FILES = {ANOMALY: ANOMALY_LEDGER, NORMAL: NORMAL_LEDGER, ERROR: ERROR_LEDGER}
RUN_FAILURES_LEDGER = "painting_run_failures.jsonl"
REPLAY_SUMMARY_FILE = "painting_replay_summary.jsonl"
# The results database's tables (docs/results-database.md): row records, failure records, replay
# reports, and the schema's version.
RESULTS_TABLE = "painting_results"
RUN_FAILURES_TABLE = "painting_run_failures"
REPLAY_REPORTS_TABLE = "painting_replay_reports"
# A replay shard's progress (what its retry resumes after), as the store keeps it.
REPLAY_PROGRESS_TABLE = "painting_replay_progress"
SCHEMA_VERSION_TABLE = "painting_schema_version"
# The dashboard's counts, kept by the results database as rows are inserted (schema version 2):
# rows per minute and kind, anomalies per minute and issue code / machine, shadow mode's figures
# per minute, and the disagreements.
MINUTE_COUNTS_TABLE = "painting_minute_counts"
MINUTE_ISSUES_TABLE = "painting_minute_issues"
MINUTE_MACHINES_TABLE = "painting_minute_machines"
MINUTE_SHADOW_TABLE = "painting_minute_shadow"
DISAGREEMENTS_TABLE = "painting_disagreements"
# The same counts per hour (``minute``: the hour's first), for long time ranges.
HOURLY_TABLES = {
    MINUTE_COUNTS_TABLE: "painting_hour_counts",
    MINUTE_ISSUES_TABLE: "painting_hour_issues",
    MINUTE_MACHINES_TABLE: "painting_hour_machines",
    MINUTE_SHADOW_TABLE: "painting_hour_shadow",
}
# The Asset the anomaly ledger is declared as (the simulator's log_anomalies task updates it).
ANOMALY_LEDGER_ASSET_NAME = "painting_issue_logs"

# Read at DAG-parse time: the schedule cannot come from a Variable without a DB query per parse.
ENV_INTERVAL_MINUTES = "PAINTING_INTERVAL_MINUTES"
DEFAULT_INTERVAL_MINUTES = 1.0
MAX_INTERVAL_MINUTES = 366 * 24 * 60.0


def schedule_interval(environ: Mapping[str, str] = os.environ) -> timedelta:
    """Return the simulator's schedule interval from ``PAINTING_INTERVAL_MINUTES`` (default 1).

    Fractions are allowed (``0.25`` = every 15 seconds) so tests and demos can tick faster.
    """
    raw = environ.get(ENV_INTERVAL_MINUTES, "").strip()
    if not raw:
        return timedelta(minutes=DEFAULT_INTERVAL_MINUTES)
    try:
        minutes = float(raw)
    except ValueError:
        raise ValueError(
            f"{ENV_INTERVAL_MINUTES}={raw!r} is not a number of minutes (e.g. 1, 5 or 0.5)"
        ) from None
    if not 0 < minutes <= MAX_INTERVAL_MINUTES:
        raise ValueError(
            f"{ENV_INTERVAL_MINUTES}={raw!r} must be greater than 0 and at most "
            f"{MAX_INTERVAL_MINUTES:.0f} (one year)"
        )
    return timedelta(minutes=minutes)


def default_output_dir(environ: Mapping[str, str] = os.environ) -> str:
    """``$AIRFLOW_HOME/painting_logs`` (Airflow's own default home is ``~/airflow``)."""
    home = environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    return os.path.join(home, DEFAULT_OUTPUT_SUBDIR)


def output_dir(get: Callable[[str], Any], environ: Mapping[str, str] = os.environ) -> str:
    """Where results are written: the Variable ``painting_output_dir``, else the default.

    The one resolver: the DAG tasks, the failure callbacks and the dashboard all call it, each
    passing its own way of reading a Variable.
    """
    return get(VAR_OUTPUT_DIR) or default_output_dir(environ)


def _parse(name: str, raw: Any, kind: type, default: Any, minimum: float) -> Any:
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = kind(str(raw).strip())
    except ValueError:
        raise ValueError(
            f"Airflow Variable {name}={raw!r} is not {'an integer' if kind is int else 'a number'}"
        ) from None
    if not (math.isfinite(value) and value >= minimum):
        raise ValueError(f"Airflow Variable {name}={raw!r} must be at least {minimum} (and finite)")
    return value


@dataclass(frozen=True)
class RunConfig:
    """The simulator's settings for one run, read from Airflow Variables at run time."""

    container: str
    prefix: str
    batch_size: int
    output_dir: str
    request_timeout: float
    request_attempts: int

    @classmethod
    def from_variables(
        cls, get: Callable[[str], Any], environ: Mapping[str, str] = os.environ
    ) -> RunConfig:
        """Build from ``get(name) -> value or None`` (the DAG passes ``Variable.get``)."""
        return cls(
            container=get(VAR_CONTAINER) or DEFAULT_CONTAINER,
            prefix=get(VAR_PREFIX) or DEFAULT_PREFIX,
            batch_size=_parse(VAR_BATCH_SIZE, get(VAR_BATCH_SIZE), int, DEFAULT_BATCH_SIZE, 1),
            output_dir=output_dir(get, environ),
            request_timeout=_parse(
                VAR_REQUEST_TIMEOUT,
                get(VAR_REQUEST_TIMEOUT),
                float,
                DEFAULT_REQUEST_TIMEOUT_SECONDS,
                0.001,
            ),
            request_attempts=_parse(
                VAR_REQUEST_ATTEMPTS, get(VAR_REQUEST_ATTEMPTS), int, DEFAULT_REQUEST_ATTEMPTS, 1
            ),
        )
