"""What the DAG tasks take from Airflow at run time: settings, blob rows, the results writer.

The one DAG-side helper, so that no DAG file repeats it: :func:`run_config` reads the run's
settings from Airflow Variables (``AIRFLOW_VAR_<NAME>`` environment variables work),
:func:`blob_rows` gives the CSV rows through ``WasbHook`` and the worker's row cache,
:func:`results` the results writer (the results database when the connection
``painting_results_db`` exists, its engine from the connection type's provider hook, else the
JSON-lines files), and :func:`shadow_candidate` / :func:`call_with_candidate` the shadow mode's
candidate through ``HttpHook``. Airflow is imported inside the functions: they are called from
tasks and callbacks, never while a DAG file is parsed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from include.painting_simulator import settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from include.painting_simulator.blob_rows import BlobRows
    from include.painting_simulator.results import ResultsWriter

log = logging.getLogger("painting_simulator")


def variable(name: str) -> Any:
    """An Airflow Variable's value, or None when it is not set."""
    from airflow.sdk import Variable

    return Variable.get(name, default=None)


def require_connection(conn_id: str, named_by: str) -> None:
    """Raise ``LookupError`` naming ``conn_id`` (and the setting ``named_by`` that gave it) when
    Airflow has no such connection (the message of :func:`sensor_base.missing_connection`)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from include.painting_simulator.checks.sensor_base import missing_connection

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise LookupError(f"{named_by}: {missing_connection(exc, conn_id)}") from None


def shadow_candidate() -> str | None:
    """The connection id of shadow mode's candidate (the Variable ``painting_candidate_conn_id``;
    None when unset or empty). A Variable naming no connection is an operator's mistake, not a
    candidate that is down: it fails the task at once, not retried, before any row is sent."""
    from airflow.sdk.exceptions import AirflowFailException

    conn_id = str(variable(settings.VAR_CANDIDATE_CONN_ID) or "").strip() or None
    if conn_id is not None:
        try:
            require_connection(conn_id, f"Airflow Variable {settings.VAR_CANDIDATE_CONN_ID}")
        except LookupError as exc:
            raise AirflowFailException(str(exc)) from None
    return conn_id


def call_with_candidate(
    items: list[Any], post: Any, conn_id: str, config: settings.RunConfig
) -> list[Any]:
    """A window sent to production (``post``) and to the candidate of connection ``conn_id``
    (:func:`shadow.call_window`), with the task log's lines: shadow mode on, to which address
    (never the connection's login or password), and the window's agreement."""
    from airflow.providers.http.hooks.http import HttpHook

    from include.painting_simulator import model_client, shadow

    hook = HttpHook(method="POST", http_conn_id=conn_id)
    log.info(
        "shadow mode on (Variable %s): every row also goes to %s (connection %s), one attempt each",
        settings.VAR_CANDIDATE_CONN_ID,
        hook.url_from_endpoint(settings.PREDICT_ENDPOINT),
        conn_id,
    )
    results = shadow.call_window(
        items,
        post,
        lambda: model_client.hook_transport(
            hook, settings.PREDICT_ENDPOINT, config.request_timeout
        ),
        attempts=config.request_attempts,
        timeout=config.request_timeout,
    )
    for line in shadow.describe(conn_id, results):
        log.info("%s", line)
    return results


def run_config() -> settings.RunConfig:
    """The run's settings from Airflow Variables."""
    return settings.RunConfig.from_variables(variable)


def blob_rows(config: settings.RunConfig) -> BlobRows:
    """The CSV rows of the configured container, through the worker-local row cache."""
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    from include.painting_simulator.blob_rows import BlobRows
    from include.painting_simulator.row_cache import RowCache, default_cache_dir

    hook = WasbHook(wasb_conn_id=settings.BLOB_CONN_ID)
    return BlobRows(hook, config.container, settings.BLOB_CONN_ID, RowCache(default_cache_dir()))


log = logging.getLogger("painting_simulator")

# The provider hook of each connection type the results database can have.
RESULTS_DB_HOOKS = {
    "postgres": ("airflow.providers.postgres.hooks.postgres", "PostgresHook", "postgres_conn_id"),
    "sqlite": ("airflow.providers.sqlite.hooks.sqlite", "SqliteHook", "sqlite_conn_id"),
}


def results_database(
    conn_id: str = settings.RESULTS_DB_CONN_ID, *, kept: bool = False
) -> Engine | None:
    """The SQLAlchemy engine of the results database, or None when Airflow has no connection
    ``conn_id`` (one lookup; the engine comes from the provider hook of the connection's type);
    ``kept``: one connection kept for a task that writes many batches (see ``engine_kwargs``)."""
    connection = results_connection(conn_id)
    return None if connection is None else results_engine(connection, conn_id, kept=kept)


def results_connection(conn_id: str = settings.RESULTS_DB_CONN_ID) -> Any:
    """Airflow's connection ``conn_id`` (the results database), or None when there is none."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def results_engine(
    connection: Any, conn_id: str, *, pooled: bool = False, kept: bool = False
) -> Engine:
    """The engine of the results database of ``connection`` through its type's provider hook;
    ``pooled`` for a long-lived reader (the dashboard), ``kept`` for a task that writes many
    batches (a replay shard), else no pool (see ``engine_kwargs``)."""
    import importlib

    from include.painting_simulator.results_db import ResultsDatabaseError, engine_kwargs

    if connection.conn_type not in RESULTS_DB_HOOKS:
        raise ResultsDatabaseError(
            f"connection {conn_id!r} is of type {connection.conn_type!r}: the results database "
            f"is one of {', '.join(sorted(RESULTS_DB_HOOKS))}"
        )
    module, name, conn_arg = RESULTS_DB_HOOKS[connection.conn_type]
    hook = getattr(importlib.import_module(module), name)(
        **{conn_arg: conn_id}, connection=connection
    )
    dialect = "sqlite" if connection.conn_type == "sqlite" else "postgresql"
    try:
        kwargs = engine_kwargs(dialect, pooled=pooled, kept=kept)
        return hook.get_sqlalchemy_engine(engine_kwargs=kwargs)
    except Exception as exc:  # e.g. a malformed URL: name the connection, never its password
        message = str(exc).replace(connection.password, "***") if connection.password else exc
        raise ResultsDatabaseError(
            f"connection {conn_id!r}: cannot make the results database's engine: "
            f"{type(exc).__name__}: {message}"
        ) from None


def current_dag_id() -> str | None:
    """The DAG of the running task (None outside a task, e.g. in a callback): the results
    database marks the rows it writes with it."""
    from airflow.sdk import get_current_context

    try:
        return get_current_context()["dag"].dag_id
    except RuntimeError:  # no task context here (a callback)
        return None


def results_store(output_dir: str, *, kept: bool = False) -> ResultsWriter:
    """The results writer for ``output_dir`` (see :func:`results`); logs which store it is."""
    from include.painting_simulator.results import open_results

    writer = open_results(output_dir, results_database(kept=kept), current_dag_id())
    log.info("results → %s", writer.describe())
    return writer


def results(config: settings.RunConfig, *, kept: bool = False) -> ResultsWriter:
    """The results writer of this run (see :mod:`results`): the database of the connection
    ``painting_results_db`` if Airflow has it, else the JSON-lines files in the output
    directory. Logs ``results → <where>`` (call it first thing in a writing task). ``kept``: a
    task that writes many batches keeps one database connection until it closes the writer."""
    return results_store(config.output_dir, kept=kept)
