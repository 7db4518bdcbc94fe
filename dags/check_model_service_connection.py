"""
### Check the model service connection

**Checks** that the simulator can reach the defect-detection model service through the
connection `painting_model_service`, and that the service keeps the contract
(`docs/model-service-contract.md`).

```
wait_for_healthy_service (HttpSensor on /health) ► probe_prediction (POST /predict/)
```

**Success**: `/health` answers 200 `{"status": "healthy"}`, and one known-normal probe row
(machine `PAINT-CONNECTION-CHECK`) sent to `POST /predict/` gets 204 or a 200 anomaly record; the
log shows the request, the latency and the answer (a 200 record for the probe passes with a
warning). The trigger form sets the poke interval (keep it ≥ 10 s) and the timeout.

**Failures** (the cause is in the task log):

* `connection 'painting_model_service' is not defined …` — define it (fails at once).
* `model service refused the connection …` — nothing listens there (fails at the timeout).
* `model service timed out …` — no answer within `painting_request_timeout_seconds` (fails at
  the timeout).
* `wrong URL …` — `/health` or `/predict/` answered 404: host, port or path (fails at once).
* `model service unhealthy …` — `/health` answered, not healthy (fails at the timeout).
* `contract violation …` — 200 without a record, or the probe rejected with 4xx (fails at once).
* `POST … answered 500 …` — the service failed on the probe (fails at once).

More: `docs/troubleshooting.md`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from airflow.sdk import dag, task

from include.painting_simulator import settings
from include.painting_simulator.checks import model_service, sensor_base
from include.painting_simulator.checks.model_service_sensor import (
    HealthSensor,
    base_url,
    healthy,
    request_timeout,
)

log = logging.getLogger(settings.MODEL_CHECK_DAG_ID)


# Reschedule mode, not deferrable: between pokes the sensor gives its worker slot back. The HTTP
# provider's deferrable HttpSensor falls back to poking in the worker when it has a
# response_check, and its trigger fires on any answer but 404 (a 503 "unhealthy" would pass).
# No Airflow retries: the sensor already pokes again, and a check answers within its timeout.
@dag(
    dag_id=settings.MODEL_CHECK_DAG_ID,
    schedule=None,
    catchup=False,
    is_paused_upon_creation=False,  # manual only: a trigger must run without unpausing first
    doc_md=__doc__,
    tags=["painting", "connection-check", "model-service"],
    default_args=sensor_base.DEFAULT_ARGS,
    params=sensor_base.timing_params(
        poke_what="How often the sensor asks GET /health.",
        timeout_what="How long to wait for a healthy answer before the check fails.",
    ),
)
def check_model_service_connection() -> None:
    wait = HealthSensor(
        task_id="wait_for_healthy_service",
        http_conn_id=settings.MODEL_CONN_ID,
        endpoint=model_service.HEALTH_ENDPOINT,
        method="GET",
        response_check=healthy,
        response_error_codes_allowlist=[],
        mode="reschedule",
        poke_interval=sensor_base.param_template(sensor_base.PARAM_POKE_INTERVAL),
        timeout=sensor_base.param_template(sensor_base.PARAM_TIMEOUT),
    )

    @task(multiple_outputs=False)
    def probe_prediction() -> dict[str, Any]:
        """POST one known-normal row to /predict/ and check the answer against the contract."""
        from airflow.providers.http.hooks.http import HttpHook
        from airflow.sdk.exceptions import AirflowFailException

        from include.painting_simulator import model_client

        conn_id = settings.MODEL_CONN_ID
        hook = HttpHook(method="POST", http_conn_id=conn_id)
        timeout = request_timeout()
        url = hook.url_from_endpoint(settings.PREDICT_ENDPOINT)
        post = model_client.hook_transport(hook, settings.PREDICT_ENDPOINT, timeout)
        body = model_service.probe_body()
        log.info("sending the %s to %s", model_service.describe_probe(body), url)
        started = time.perf_counter()
        try:
            answer = post(body)
            latency_ms = (time.perf_counter() - started) * 1000
            result = model_service.judge_probe(answer, url, conn_id, latency_ms)
        except model_client.TransportError as exc:
            failure = model_service.transport_failure(exc, base_url(conn_id), conn_id, timeout)
            raise AirflowFailException(str(failure)) from None
        except sensor_base.CheckFailed as failure:
            raise AirflowFailException(str(failure)) from None
        for line in result.lines:
            log.info("%s", line)
        if result.warning:
            log.warning("%s", result.warning)
        return {"status": answer.status, "kind": result.kind, "latency_ms": round(latency_ms, 1)}

    wait >> probe_prediction()


check_model_service_connection()
