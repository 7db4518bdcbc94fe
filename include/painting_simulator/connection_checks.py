"""What the two connection-check DAGs conclude from what storage and the model service answer.

``check_azure_storage_connection`` and ``check_model_service_connection`` wait with a sensor
until their service answers well, then run one real operation (list the CSV blobs; send one
probe row). Everything they conclude is decided here, in plain Python, so that every failure
becomes one :class:`CheckFailed` whose message names the cause in words a user can act on:

* ``wait=True``: the cause may go away by itself (a service still starting, blobs not uploaded
  yet): the sensor keeps poking and, at its timeout, fails with the last cause.
* ``wait=False``: waiting cannot fix it (wrong key, missing container, wrong URL, an answer that
  breaks the contract): the check fails at once.

No Airflow, Azure SDK or requests import at module level: the DAG files import this module when
they are parsed. :class:`CheckSensorMixin` is the small piece of Airflow glue the two sensors
share (timing from DAG params, failures naming the cause); it imports Airflow only when it runs.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from include.painting_simulator import settings
from include.painting_simulator.blob_source import StorageError, explain_storage_error, is_csv
from include.painting_simulator.model_client import ANOMALY, NORMAL, HttpAnswer, classify
from include.painting_simulator.row_mapping import to_request_body

# DAG params of both check DAGs (seconds): shown in the trigger form.
PARAM_POKE_INTERVAL = "poke_interval_seconds"
PARAM_TIMEOUT = "timeout_seconds"
# Not shorter: with a poke interval of a few seconds, Airflow 3.3's scheduler can re-queue the
# next poke before it has processed the end of the previous one, and then marks the sensor
# failed ("finished with state success, but the task instance's state attribute is queued",
# apache/airflow#71172; seen here with 5 s on the local stack, not with 15 s).
DEFAULT_POKE_INTERVAL_SECONDS = 15
DEFAULT_TIMEOUT_SECONDS = 60
MAX_POKE_INTERVAL_SECONDS = 600
MAX_TIMEOUT_SECONDS = 3600
# The sensors' timing attributes, templated from the params above.
TIMING_FIELDS = ("timeout", "poke_interval")
# No Airflow retries: the sensor already waits and pokes again, and a check should answer within
# the timeout its user chose, not three times that.
DEFAULT_ARGS = {
    "owner": "painting-simulator",
    "retries": 0,
    "execution_timeout": timedelta(minutes=5),
}

FIRST_BLOBS_SHOWN = 5
HEALTH_ENDPOINT = "/health"
HEALTHY = "healthy"

# A typical e-coating reading (thickness ~20 µm, ~260 V, ~70 A, ~34 °C) that the model judges
# normal; sent as a CSV row through the simulator's own mapping, so the probe is exactly what
# the simulator would send.
PROBE_MACHINE_ID = "CONNECTION-CHECK"
PROBE_ROW = {"Thick": "19.89", "PT_jo_V_1": "258.4", "PT_jo_A_Main_1": "68.9", "PT_jo_TP": "34.4"}


class CheckFailed(RuntimeError):
    """A connection check failed; the message is the cause. ``wait``: may resolve by itself."""

    def __init__(self, message: str, *, wait: bool = False) -> None:
        super().__init__(message)
        self.wait = wait


# --- timing ---------------------------------------------------------------------------------


def seconds(name: str, value: Any, *, minimum: float = 0.0) -> float:
    """A number of seconds from a rendered template (text) or a number; errors name ``name``."""
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number of seconds") from None
    if not (math.isfinite(number) and number >= minimum):
        raise ValueError(f"{name}={value!r} must be a finite number of seconds >= {minimum:g}")
    return number


def timing_params(poke_what: str, timeout_what: str) -> dict[str, Any]:
    """The two DAG params of a check, as fields of the trigger form (called at parse time)."""
    from airflow.sdk import Param

    return {
        PARAM_POKE_INTERVAL: Param(
            DEFAULT_POKE_INTERVAL_SECONDS,
            type="integer",
            minimum=1,
            maximum=MAX_POKE_INTERVAL_SECONDS,
            title="Poke interval (seconds)",
            description=f"{poke_what} Keep it at 10 s or more on a real scheduler.",
        ),
        PARAM_TIMEOUT: Param(
            DEFAULT_TIMEOUT_SECONDS,
            type="integer",
            minimum=0,
            maximum=MAX_TIMEOUT_SECONDS,
            title="Timeout (seconds)",
            description=timeout_what,
        ),
    }


def param_template(param: str) -> str:
    """The Jinja template of a DAG param, for a templated operator field."""
    return f"{{{{ params.{param} }}}}"


def variable_template(name: str, default: str) -> str:
    """The Jinja template of an Airflow Variable with a default (rendered at run time)."""
    return f"{{{{ var.value.get({name!r}, {default!r}) }}}}"


class CheckSensorMixin:
    """Mix into a provider sensor (before it in the bases): what both check sensors share.

    * ``timeout`` and ``poke_interval`` may be templates (the DAG passes
      ``{{ params.timeout_seconds }}``): ``BaseSensorOperator`` does not template them and
      insists on numbers in ``__init__``, so they are stored as given, rendered with the other
      template fields (the subclass lists :data:`TIMING_FIELDS` in ``template_fields``) and
      turned into seconds before the first poke.
    * ``poke`` turns every failure into a :class:`CheckFailed` (via :meth:`explain`): causes that
      waiting cannot fix fail the task at once (``AirflowFailException``: no retry); the others
      are logged and poked again.
    * At the timeout the task fails with the last cause instead of Airflow's generic
      "Sensor has timed out".
    """

    def __init__(self, *, timeout: Any, poke_interval: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[call-arg]  # BaseSensorOperator's defaults
        self.timeout = timeout
        self.poke_interval = poke_interval
        self.last_cause: str | None = None

    # Subclasses say what a failure means and what "not yet" means.
    def explain(self, exc: BaseException) -> CheckFailed:
        raise NotImplementedError

    def not_yet(self) -> str:
        raise NotImplementedError

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)  # type: ignore[misc]
        self.timeout = seconds("timeout", self.timeout)
        self.poke_interval = seconds("poke_interval", self.poke_interval, minimum=0.1)

    def poke(self, context: Any) -> bool:
        from airflow.sdk.exceptions import AirflowFailException

        try:
            done = super().poke(context)  # type: ignore[misc]
        except CheckFailed as failure:
            cause = failure
        except Exception as exc:
            cause = self.explain(exc)
        else:
            if done:
                return True
            cause = CheckFailed(self.not_yet(), wait=True)
        if not cause.wait:
            raise AirflowFailException(str(cause)) from None
        self.last_cause = str(cause)
        self.log.warning(  # type: ignore[attr-defined]
            "not yet: %s (next poke in %g s, timeout %g s)",
            cause,
            self.poke_interval,
            self.timeout,
        )
        return False

    def execute(self, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowSensorTimeout

        try:
            return super().execute(context)  # type: ignore[misc]
        except AirflowSensorTimeout:
            raise AirflowSensorTimeout(timed_out(self.last_cause, self.timeout)) from None


def timed_out(cause: str | None, timeout: float) -> str:
    return f"{cause or 'the check did not succeed'} (still so at the timeout of {timeout:g} s)"


def missing_connection(exc: BaseException, conn_id: str) -> CheckFailed | None:
    """A check whose connection is not defined at all fails at once, saying where to define it."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    if not isinstance(exc, AirflowNotFoundException):
        return None
    return CheckFailed(
        f"connection {conn_id!r} is not defined: add it in Admin → Connections, or as the "
        f"environment variable AIRFLOW_CONN_{conn_id.upper()}"
    )


# --- storage --------------------------------------------------------------------------------


def storage_request_options(limit: float | None = None) -> dict[str, Any]:
    """Azure SDK per-request options: one attempt, bounded waits (at most ``limit`` seconds).

    Without them an unreachable endpoint costs about a minute per request (the SDK retries three
    times with back-off 15 s, 18 s, 24 s); the sensor's own pokes are the retries here.
    """
    bound = max(limit, 1.0) if limit is not None else math.inf
    return {
        "retry_total": 0,
        "connection_timeout": min(10.0, bound),
        "read_timeout": min(30.0, bound),
    }


def storage_endpoint(url: str) -> str:
    """``scheme://host:port/account`` of a storage client URL, without any SAS query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def storage_failure(
    exc: BaseException, container: str, prefix: str, conn_id: str, endpoint: str | None
) -> CheckFailed:
    """The cause of a failed storage request, in words; never the credentials."""
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    if isinstance(exc, CheckFailed):
        return exc
    if missing := missing_connection(exc, conn_id):
        return missing
    where = f" at {endpoint}" if endpoint else ""
    if isinstance(exc, ServiceResponseError):
        return CheckFailed(
            f"storage{where} did not answer in time (connection {conn_id!r}): {type(exc).__name__}",
            wait=True,
        )
    if isinstance(exc, ServiceRequestError):
        return CheckFailed(
            f"{explain_storage_error(exc, container, conn_id)} — is the storage service running"
            f"{where}, and are host and port in the connection right?",
            wait=True,
        )
    if isinstance(exc, ValueError):  # the SDK's "Connection string is either blank or malformed"
        return CheckFailed(f"connection {conn_id!r} is not a usable storage connection: {exc}")
    explained: StorageError = explain_storage_error(exc, container, conn_id)
    message = str(explained)
    if message.startswith("container "):
        message += f" — create it, or set the Variable {settings.VAR_CONTAINER}"
    return CheckFailed(f"{message}; endpoint {endpoint}" if endpoint else message)


def no_blobs(container: str, prefix: str, conn_id: str) -> str:
    return (
        f"no CSV under prefix {prefix!r} in container {container!r} (connection {conn_id!r}): "
        f"nothing is stored under it — upload the CSV files there, or set the Variable "
        f"{settings.VAR_PREFIX}"
    )


@dataclass(frozen=True)
class BlobInfo:
    """What the check shows of one blob."""

    name: str
    size: int
    last_modified: datetime | None


def summarize_csv_blobs(
    blobs: Iterable[BlobInfo], container: str, prefix: str, conn_id: str
) -> tuple[list[BlobInfo], list[str]]:
    """The CSV blobs sorted by name and the lines to log; :class:`CheckFailed` if there is none."""
    everything = sorted(blobs, key=lambda blob: blob.name)
    csvs = [blob for blob in everything if is_csv(blob.name)]
    if not csvs:
        others = ", ".join(blob.name for blob in everything[:FIRST_BLOBS_SHOWN])
        raise CheckFailed(
            f"no CSV under prefix {prefix!r} in container {container!r} (connection "
            f"{conn_id!r}): {len(everything)} other blob(s) ({others}) but no .csv — upload the "
            f"CSV files there, or set the Variable {settings.VAR_PREFIX}"
        )
    shown = csvs[:FIRST_BLOBS_SHOWN]
    which = f"the first {len(shown)}" if len(shown) < len(csvs) else "all"
    lines = [
        f"{len(csvs)} CSV blob(s) under prefix {prefix!r} in container {container!r} "
        f"(connection {conn_id!r}); {which} by name:"
    ]
    for blob in shown:
        modified = blob.last_modified.isoformat() if blob.last_modified else "unknown"
        lines.append(f"  {blob.name}  {blob.size:,} bytes  last modified {modified}")
    return csvs, lines


# --- model service --------------------------------------------------------------------------


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
