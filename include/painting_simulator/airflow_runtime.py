"""What the DAG tasks take from Airflow at run time: settings, blob rows, the results writer.

The one DAG-side helper, so that no DAG file repeats it: :func:`run_config` reads the run's
settings from Airflow Variables (``AIRFLOW_VAR_<NAME>`` environment variables work),
:func:`blob_rows` gives the CSV rows through ``WasbHook`` and the worker's row cache, and
:func:`results` the results writer. Airflow is imported inside the functions: they are called
from tasks and callbacks, never while a DAG file is parsed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from include.painting_simulator import settings

if TYPE_CHECKING:
    from include.painting_simulator.blob_rows import BlobRows
    from include.painting_simulator.results import ResultsWriter


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


def results(config: settings.RunConfig) -> ResultsWriter:
    """The results writer of this run (see :mod:`results`)."""
    from include.painting_simulator.results import open_results

    return open_results(config.output_dir)
