"""The model-service check's sensor: ``HttpSensor`` on ``/health`` with named causes.

Airflow glue for ``check_model_service_connection``: imports the HTTP provider's sensor at
import time, so only that DAG file imports this module.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.http.sensors.http import HttpSensor

from include.painting_simulator import settings
from include.painting_simulator.checks import model_service
from include.painting_simulator.checks.sensor_base import (
    TIMING_FIELDS,
    CheckFailed,
    CheckSensorMixin,
    missing_connection,
)


def request_timeout(limit: float | None = None) -> float:
    """Variable ``painting_request_timeout_seconds`` (the simulator's), at most ``limit``."""
    from include.painting_simulator.airflow_runtime import run_config

    timeout = run_config().request_timeout
    if limit is None:
        return timeout
    return min(timeout, max(limit, 1.0))


def base_url(conn_id: str) -> str:
    """The base URL of an HTTP connection."""
    from airflow.providers.http.hooks.http import HttpHook

    return HttpHook(method="GET", http_conn_id=conn_id).url_from_endpoint("")


def healthy(response: Any) -> bool:
    """The sensor's response check: a healthy ``/health`` answer, else :class:`CheckFailed`."""
    return model_service.judge_health(
        response.status_code, response.text, response.url, settings.MODEL_CONN_ID
    )


class HealthSensor(CheckSensorMixin, HttpSensor):
    """``HttpSensor`` with its timing from DAG params and failures that name the cause."""

    template_fields = (*HttpSensor.template_fields, *TIMING_FIELDS)

    def __init__(self, **kwargs: Any) -> None:
        # Airflow applies default_args only to an __init__ the operator class itself defines.
        super().__init__(**kwargs)

    def poke(self, context: Any) -> bool:
        # Every answer goes to the response check (not only 2xx), and no request waits for ever.
        self.request_timeout = request_timeout(limit=float(self.timeout))
        self.extra_options = {
            **self.extra_options,
            "check_response": False,
            "timeout": self.request_timeout,
        }
        return super().poke(context)

    def explain(self, exc: BaseException) -> CheckFailed:
        if missing := missing_connection(exc, self.http_conn_id):
            return missing
        return model_service.transport_failure(
            exc, base_url(self.http_conn_id), self.http_conn_id, self.request_timeout
        )

    def not_yet(self) -> str:  # the response check raises for every answer but a healthy one
        return "model service not healthy yet"
