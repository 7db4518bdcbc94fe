"""The storage check's sensor: ``WasbPrefixSensor`` with timing from params and named causes.

Airflow glue for ``check_azure_storage_connection``: imports the Azure provider's sensor (and so
the Azure SDK) at import time, so only that DAG file imports this module.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.microsoft.azure.sensors.wasb import WasbPrefixSensor

from include.painting_simulator.checks import storage
from include.painting_simulator.checks.sensor_base import (
    TIMING_FIELDS,
    CheckFailed,
    CheckSensorMixin,
)


def storage_endpoint_of(hook: Any) -> str | None:
    """The storage endpoint a ``WasbHook`` talks to, or None if its connection cannot say."""
    try:
        return storage.storage_endpoint(hook.blob_service_client.url)
    except Exception:  # a connection too broken to name an endpoint: the cause says why
        return None


class CsvPrefixSensor(CheckSensorMixin, WasbPrefixSensor):
    """``WasbPrefixSensor`` with its timing from DAG params and failures that name the cause."""

    template_fields = (*WasbPrefixSensor.template_fields, *TIMING_FIELDS)

    def __init__(self, **kwargs: Any) -> None:
        # Airflow applies default_args only to an __init__ the operator class itself defines.
        super().__init__(**kwargs)

    def poke(self, context: Any) -> bool:
        # One storage request per poke, never waiting longer than the check's timeout.
        self.check_options = storage.storage_request_options(limit=float(self.timeout))
        return super().poke(context)

    def explain(self, exc: BaseException) -> CheckFailed:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        endpoint = storage_endpoint_of(WasbHook(wasb_conn_id=self.wasb_conn_id))
        return storage.storage_failure(
            exc, self.container_name, self.prefix, self.wasb_conn_id, endpoint
        )

    def not_yet(self) -> str:
        return storage.no_blobs(self.container_name, self.prefix, self.wasb_conn_id)
