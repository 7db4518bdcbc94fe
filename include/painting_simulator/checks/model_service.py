"""What the model-service check concludes: health, transport failures, the probe's answer.

Plain Python for ``check_model_service_connection`` (its sensor: :mod:`.model_service_sensor`):
the probe is a CSV row mapped by the simulator's own :mod:`row_mapping`, and its answer is judged
by the simulator's own :func:`model_client.classify`.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from include.painting_simulator import settings
from include.painting_simulator.checks.sensor_base import CheckFailed
from include.painting_simulator.model_client import HttpAnswer, classify
from include.painting_simulator.row_mapping import to_request_body
from include.painting_simulator.settings import ANOMALY, NORMAL

HEALTH_ENDPOINT = "/health"
HEALTHY = "healthy"

# A typical e-coating reading (thickness ~20 µm, ~260 V, ~70 A, ~34 °C) that the model judges
# normal; sent as a CSV row through the simulator's own mapping, so the probe is exactly what
# the simulator would send.
PROBE_MACHINE_ID = "CONNECTION-CHECK"
PROBE_ROW = {"Thick": "19.89", "PT_jo_V_1": "258.4", "PT_jo_A_Main_1": "68.9", "PT_jo_TP": "34.4"}


def _causes(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and everything it wraps (``__cause__``, ``__context__``, urllib3's ``reason``)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        todo += [arg for arg in current.args if isinstance(arg, BaseException)]


def transport_failure(
    exc: BaseException, base_url: str, conn_id: str, timeout: float
) -> CheckFailed:
    """No HTTP answer from the model service: refused, timed out or otherwise unreachable."""
    where = f"{base_url} (connection {conn_id!r})"
    causes = list(_causes(exc))
    names = {type(cause).__name__ for cause in causes}
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return CheckFailed(
            f"model service refused the connection at {where}: nothing listens there — is the "
            f"service running, and are host and port of the connection right?",
            wait=True,
        )
    if any(isinstance(cause, TimeoutError | socket.timeout) for cause in causes) or any(
        "Timeout" in name for name in names
    ):
        return CheckFailed(
            f"model service timed out at {where}: no answer within {timeout:g} s (Variable "
            f"{settings.VAR_REQUEST_TIMEOUT}) — is it overloaded or stuck?",
            wait=True,
        )
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        return CheckFailed(
            f"model service host not found at {where}: check the host of the connection",
            wait=True,
        )
    return CheckFailed(
        f"model service unreachable at {where}: {type(exc).__name__}: {exc}", wait=True
    )


def _shown(text: str, limit: int = 200) -> str:
    text = text.strip()
    return (text[:limit] + "…" if len(text) > limit else text) or "an empty body"


def wrong_url(method: str, url: str, conn_id: str) -> CheckFailed:
    return CheckFailed(
        f"wrong URL: {method} {url} answered 404 Not Found (connection {conn_id!r}) — check "
        f"host, port and path of the connection: the model service answers /health and /predict/ "
        f"at its root"
    )


def judge_health(status: int, text: str, url: str, conn_id: str) -> bool:
    """True for a healthy ``/health`` answer (200 ``{"status": "healthy"}``), else CheckFailed."""
    if status == 404:
        raise wrong_url("GET", url, conn_id)
    if status in (401, 403):
        raise CheckFailed(
            f"model service refused access: GET {url} answered {status} (connection "
            f"{conn_id!r}) — check the credentials or headers of the connection"
        )
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    state = payload.get("status") if isinstance(payload, dict) else None
    if status == 200 and state == HEALTHY:
        return True
    raise CheckFailed(
        f"model service unhealthy: GET {url} answered {status} with {_shown(text)} "
        f'(a healthy one answers 200 {{"status": "{HEALTHY}"}})',
        wait=True,
    )


def probe_body(now: datetime | None = None) -> dict[str, Any]:
    """The probe row's request body, through the simulator's own mapping."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S")
    return to_request_body({"machineId": PROBE_MACHINE_ID, "timeStamp": stamp, **PROBE_ROW})


@dataclass(frozen=True)
class ProbeResult:
    """A probe answer that keeps the contract: ``kind`` is normal or anomaly; lines to log."""

    kind: str
    lines: list[str]
    warning: str | None = None


def judge_probe(answer: HttpAnswer, url: str, conn_id: str, latency_ms: float) -> ProbeResult:
    """Check the probe's ``/predict/`` answer against the contract (204, or a 200 record)."""
    said = f"POST {url} answered {answer.status} in {latency_ms:.1f} ms"
    if answer.status == 404:
        raise wrong_url("POST", url, conn_id)
    outcome = classify(answer)
    if outcome.kind == NORMAL:
        shown = "no content" if answer.status == 204 else _shown(answer.text)
        return ProbeResult(NORMAL, [f"{said}: normal ({shown}), as expected for the probe"])
    if outcome.kind == ANOMALY:
        record = json.dumps(outcome.prediction, ensure_ascii=False)
        return ProbeResult(
            ANOMALY,
            [f"{said}: an anomaly record, which keeps the contract: {record}"],
            warning=f"the known-normal probe was judged an anomaly "
            f"({outcome.prediction['issue']}): the service keeps the contract, but check "
            f"how its model judges typical readings",
        )
    if answer.status == 200 or answer.status == 422 or 400 <= answer.status < 500:
        # 200 without a record, or the probe (a contract request) rejected: the two sides
        # disagree on the contract.
        raise CheckFailed(f"contract violation: {said}: {outcome.error} (connection {conn_id!r})")
    raise CheckFailed(f"{said}: {outcome.error} (connection {conn_id!r})")


def describe_probe(body: Mapping[str, Any]) -> str:
    return "probe row " + json.dumps(dict(body), ensure_ascii=False)
