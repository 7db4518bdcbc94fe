"""
### Check the model service connection

Trigger it (▶) to see whether the simulator can reach the defect-detection model service
through the connection `painting_model_service`, and whether the service keeps the contract.

```
wait_for_healthy_service (HttpSensor on /health) ► probe_prediction (POST /predict/)
```

* **wait_for_healthy_service** asks `GET /health` every *poke interval* until the service answers
  200 `{"status": "healthy"}`, for at most *timeout* seconds (both are fields of the trigger form).
* **probe_prediction** sends one known-normal reading (machine `PAINT-CONNECTION-CHECK`, typical
  thickness, voltage, current and temperature, mapped like every CSV row) to `POST /predict/` and
  checks the answer against the contract: 204 (normal) or a 200 anomaly record. It logs the
  request, the latency and the answer. A 200 record for the known-normal probe passes with a
  warning (the contract holds; the model's judgement is worth a look).

A red run names the cause in the task log:

* `connection 'painting_model_service' is not defined …`: define it. Fails at once.
* `model service refused the connection …`: nothing listens at host and port of the
  connection (service stopped, wrong port). Fails at the timeout: it may still be starting.
* `model service timed out …`: it accepted the connection but did not answer within the
  Variable `painting_request_timeout_seconds` (default 30). Fails at the timeout.
* `wrong URL …`: `/health` or `/predict/` answered 404 — host, port or path of the connection
  is wrong. Fails at once.
* `model service unhealthy …`: `/health` answered, but not 200 `{"status": "healthy"}`. Fails at
  the timeout.
* `contract violation …`: `/predict/` answered 200 without a record, or rejected the probe
  (4xx). Fails at once.
* `POST … answered 500 …`: the service failed on the probe (e.g. `Model not loaded`). Fails at
  once.

**Reschedule mode, not deferrable.** Between pokes the sensor gives its worker slot back (mode
`reschedule`), so a waiting check holds no slot. The HTTP provider's deferrable `HttpSensor`
cannot be used here: with a `response_check` it falls back to poking in the worker, and its
trigger fires on any answer but 404 — it would call a 503 "unhealthy" answer a success. A poke in
reschedule mode runs this package's own check, names the cause of a failure, and needs nothing
but a scheduler.

Keep the poke interval at 10 s or more on a real scheduler: with a few seconds, Airflow 3.3's
scheduler can re-queue the next poke before it has processed the end of the previous one and
then marks the sensor failed ("… finished with state success, but the task instance's state
attribute is queued", apache/airflow#71172).

No Airflow retries: the sensor already waits and re-tries, and a check should answer within the
timeout you chose, not three times that.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from airflow.providers.http.sensors.http import HttpSensor
from airflow.sdk import Variable, dag, task

from include.painting_simulator import connection_checks as checks
from include.painting_simulator import settings

log = logging.getLogger("check_model_service_connection")


def _request_timeout(limit: float | None = None) -> float:
    """Variable ``painting_request_timeout_seconds`` (the simulator's), at most ``limit``."""
    config = settings.RunConfig.from_variables(
        lambda name: Variable.get(name, default=None)  # noqa: AIR003
    )
    if limit is None:
        return config.request_timeout
    return min(config.request_timeout, max(limit, 1.0))


def _base_url(conn_id: str) -> str:
    from airflow.providers.http.hooks.http import HttpHook

    return HttpHook(method="GET", http_conn_id=conn_id).url_from_endpoint("")


def _healthy(response: Any) -> bool:
    return checks.judge_health(
        response.status_code, response.text, response.url, settings.MODEL_CONN_ID
    )


class HealthSensor(checks.CheckSensorMixin, HttpSensor):
    """``HttpSensor`` with its timing from DAG params and failures that name the cause."""

    template_fields = (*HttpSensor.template_fields, *checks.TIMING_FIELDS)

    def __init__(self, **kwargs: Any) -> None:
        # Airflow applies default_args only to an __init__ the operator class itself defines.
        super().__init__(**kwargs)

    def poke(self, context: Any) -> bool:
        # Every answer goes to the response check (not only 2xx), and no request waits for ever.
        self.request_timeout = _request_timeout(limit=float(self.timeout))
        self.extra_options = {
            **self.extra_options,
            "check_response": False,
            "timeout": self.request_timeout,
        }
        return super().poke(context)

    def explain(self, exc: BaseException) -> checks.CheckFailed:
        if missing := checks.missing_connection(exc, self.http_conn_id):
            return missing
        return checks.transport_failure(
            exc, _base_url(self.http_conn_id), self.http_conn_id, self.request_timeout
        )

    def not_yet(self) -> str:  # the response check raises for every answer but a healthy one
        return "model service not healthy yet"


@dag(
    dag_id="check_model_service_connection",
    schedule=None,
    catchup=False,
    is_paused_upon_creation=False,  # manual only: a trigger must run without unpausing first
    doc_md=__doc__,
    tags=["painting", "connection-check", "model-service"],
    default_args=checks.DEFAULT_ARGS,
    params=checks.timing_params(
        poke_what="How often the sensor asks GET /health.",
        timeout_what="How long to wait for a healthy answer before the check fails.",
    ),
)
def check_model_service_connection() -> None:
    wait = HealthSensor(
        task_id="wait_for_healthy_service",
        http_conn_id=settings.MODEL_CONN_ID,
        endpoint=checks.HEALTH_ENDPOINT,
        method="GET",
        response_check=_healthy,
        response_error_codes_allowlist=[],
        mode="reschedule",
        poke_interval=checks.param_template(checks.PARAM_POKE_INTERVAL),
        timeout=checks.param_template(checks.PARAM_TIMEOUT),
    )

    @task(multiple_outputs=False)
    def probe_prediction() -> dict[str, Any]:
        """POST one known-normal row to /predict/ and check the answer against the contract."""
        from airflow.providers.http.hooks.http import HttpHook
        from airflow.sdk.exceptions import AirflowFailException

        from include.painting_simulator import model_client

        conn_id = settings.MODEL_CONN_ID
        hook = HttpHook(method="POST", http_conn_id=conn_id)
        timeout = _request_timeout()
        url = hook.url_from_endpoint(settings.PREDICT_ENDPOINT)
        post = model_client.hook_transport(hook, settings.PREDICT_ENDPOINT, timeout)
        body = checks.probe_body()
        log.info("sending the %s to %s", checks.describe_probe(body), url)
        started = time.perf_counter()
        try:
            answer = post(body)
            latency_ms = (time.perf_counter() - started) * 1000
            result = checks.judge_probe(answer, url, conn_id, latency_ms)
        except model_client.TransportError as exc:
            failure = checks.transport_failure(exc, _base_url(conn_id), conn_id, timeout)
            raise AirflowFailException(str(failure)) from None
        except checks.CheckFailed as failure:
            raise AirflowFailException(str(failure)) from None
        for line in result.lines:
            log.info("%s", line)
        if result.warning:
            log.warning("%s", result.warning)
        return {"status": answer.status, "kind": result.kind, "latency_ms": round(latency_ms, 1)}

    wait >> probe_prediction()


check_model_service_connection()
