"""What both connection-check sensors share: timing from DAG params, failures that name a cause.

``check_azure_storage_connection`` and ``check_model_service_connection`` wait with a sensor
until their service answers well, then run one real operation (list the CSV blobs; send one
probe row). What they conclude is decided in plain Python (:mod:`.storage`,
:mod:`.model_service`), so that every failure becomes one :class:`CheckFailed` whose message
names the cause in words a user can act on:

* ``wait=True``: the cause may go away by itself (a service still starting, blobs not uploaded
  yet): the sensor keeps poking and, at its timeout, fails with the last cause.
* ``wait=False``: waiting cannot fix it (wrong key, missing container, wrong URL, an answer that
  breaks the contract): the check fails at once.

No Airflow, Azure SDK or requests import at module level: the DAG files import this module when
they are parsed. :class:`CheckSensorMixin` is the small piece of Airflow glue the two sensors
(:mod:`.storage_sensor`, :mod:`.model_service_sensor`) share; it imports Airflow only when it runs.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

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
