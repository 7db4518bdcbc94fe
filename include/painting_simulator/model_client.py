"""Talk to the defect-detection model service: what each answer means, retries, the transport.

The contract this relies on: ``docs/model-service-contract.md``.

The HTTP transport is injected (the DAG passes a function built on Airflow's ``HttpHook``), so
the rules here are plain Python and unit-tested without a network:

* ``204``                                  -> normal
* ``200`` with a flat record (``issue`` set) -> anomaly
* ``200`` with ``{"predictions": [record]}`` -> anomaly (``[]`` -> normal)
* ``200`` that is not such a record          -> error (contract violation)
* ``4xx`` (e.g. 422)                         -> error, with the status and the service's message
* ``5xx``, ``429``, timeouts, conn. errors  -> retried with exponential back-off; still failing
  after the last attempt -> error (or, when the service could not be reached at all, the
  window fails: see :func:`call_window`).

The original simulator only looked for a ``predictions`` list, so every flat 200 record (the
real service's anomaly answer) was logged as normal. Here both shapes count.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from include.painting_simulator.records import Item, Result, Source, sent_result, unsent_result
from include.painting_simulator.settings import ANOMALY, ERROR, NORMAL

# Longest wait honoured from a Retry-After header, so one answer cannot stall a window.
MAX_RETRY_AFTER_SECONDS = 30.0


@dataclass(frozen=True)
class HttpAnswer:
    """What the service answered: status, body text and the Retry-After header (seconds)."""

    status: int
    text: str
    retry_after: float | None = None


def retry_after_seconds(headers: Any) -> float | None:
    """The ``Retry-After`` header of an answer in seconds, from ``headers`` looked up by the
    lower-case name (requests' case-insensitive headers, the replay client's lower-case ones):
    delta-seconds only, as the service sends it; an HTTP date or garbage is None."""
    value = (headers.get("retry-after") or "").strip()
    return float(value) if value.isdigit() else None


class TransportError(Exception):
    """No HTTP answer at all: connection refused/reset, DNS failure or timeout."""


class ModelServiceUnreachable(RuntimeError):
    """The model service could not be reached for a window: the run must fail and be retried."""


@dataclass(frozen=True)
class Outcome:
    """The verdict on one row: ``kind`` is anomaly, normal or error."""

    kind: str
    prediction: Any = None
    error: str | None = None
    status: int | None = None


def _service_message(text: str, limit: int = 500) -> str:
    """The service's own explanation: FastAPI's ``detail`` when there is one, else the text."""
    try:
        payload = json.loads(text)
    except ValueError:
        return text.strip()[:limit]
    if isinstance(payload, dict) and "detail" in payload:
        return json.dumps(payload["detail"], ensure_ascii=False)[:limit]
    return json.dumps(payload, ensure_ascii=False)[:limit]


def _is_record(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("issue"), str) and bool(value["issue"])


# The verdict of nearly every row (an Outcome is immutable: one serves them all).
_NORMAL = Outcome(NORMAL)


def classify(answer: HttpAnswer) -> Outcome:
    """Turn a final (non-retryable) HTTP answer into an :class:`Outcome`."""
    status = answer.status
    if status == 204:
        return _NORMAL
    if status == 200:
        try:
            payload = json.loads(answer.text)
        except ValueError:
            shown = answer.text.strip()[:200] or "an empty body"
            return Outcome(ERROR, error=f"200 answer is not JSON: {shown}", status=status)
        if isinstance(payload, dict) and "predictions" in payload:
            predictions = payload["predictions"]
            if not isinstance(predictions, list):
                return Outcome(ERROR, error="200 answer: 'predictions' is not a list", status=200)
            if not predictions:
                return Outcome(NORMAL)
            if len(predictions) == 1 and _is_record(predictions[0]):
                return Outcome(ANOMALY, prediction=predictions[0])
            return Outcome(
                ERROR,
                error=f"200 answer: expected one prediction record with an issue for one row, "
                f"got {json.dumps(predictions, ensure_ascii=False)[:300]}",
                status=200,
            )
        if _is_record(payload):
            return Outcome(ANOMALY, prediction=payload)
        return Outcome(
            ERROR,
            error="200 answer is not an anomaly record (no 'issue'): "
            + json.dumps(payload, ensure_ascii=False)[:300],
            status=200,
        )
    if 400 <= status < 500:
        return Outcome(
            ERROR,
            error=f"model service rejected the row ({status}): {_service_message(answer.text)}",
            status=status,
        )
    if status >= 500:
        return Outcome(
            ERROR,
            error=f"model service failed ({status}): {_service_message(answer.text)}",
            status=status,
        )
    return Outcome(ERROR, error=f"unexpected status {status}", status=status)


def is_retryable(answer: HttpAnswer) -> bool:
    """5xx and 429 (too many requests) are worth another attempt; anything else is final."""
    return answer.status >= 500 or answer.status == 429


@dataclass(frozen=True)
class CallResult:
    """The outcome of one row after all attempts; ``reached`` is False if nothing ever answered."""

    outcome: Outcome
    attempts: int
    reached: bool


# The result of nearly every row, a normal answer to the first try: one object serves them all
# (a replay pickles each chunk's results from its sending process to the shard's, and pickle
# writes an object it has written before as a reference to it).
_NORMAL_FIRST_TRY = CallResult(_NORMAL, 1, reached=True)


class RetryPolicy:
    """The tries of one row: transport errors, 5xx and 429 are retried with back-off 1 s, 2 s,
    4 s, ...; a ``Retry-After`` header on a retryable answer is honoured (capped) when longer
    than the back-off. Shared by the simulator's sender (:func:`send_with_retries`) and the
    replay's (on an event loop), which differ only in how they wait and post.
    """

    def __init__(self, attempts: int = 3, backoff_seconds: float = 1.0) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts, self.backoff_seconds = attempts, backoff_seconds
        self.attempt, self.reached = 0, False

    def after(self, answer: HttpAnswer | TransportError) -> CallResult | float:
        """Take one try's answer (or its transport error): the row's result when it is final,
        else the seconds to wait before the next try."""
        self.attempt += 1
        delay = self.backoff_seconds * 2 ** (self.attempt - 1)
        if isinstance(answer, TransportError):
            last = Outcome(ERROR, error=f"model service unreachable: {answer}")
        else:
            self.reached = True
            last = classify(answer)
            if not is_retryable(answer):
                if last is _NORMAL and self.attempt == 1:
                    return _NORMAL_FIRST_TRY
                return CallResult(last, self.attempt, reached=True)
            if answer.retry_after is not None:
                delay = max(delay, min(answer.retry_after, MAX_RETRY_AFTER_SECONDS))
        if self.attempt >= self.attempts:
            return CallResult(last, self.attempt, reached=self.reached)
        return delay


def send_with_retries(
    post: Callable[[dict[str, Any]], HttpAnswer],
    body: dict[str, Any],
    *,
    attempts: int = 3,
    backoff_seconds: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> CallResult:
    """POST one body under the :class:`RetryPolicy`."""
    policy = RetryPolicy(attempts, backoff_seconds)
    while True:
        try:
            answer: HttpAnswer | TransportError = post(body)
        except TransportError as exc:
            answer = exc
        step = policy.after(answer)
        if isinstance(step, CallResult):
            return step
        sleep(step)


def unreachable(call: CallResult, source: Source, then: str) -> ModelServiceUnreachable:
    """The error that fails a task whose first sent row got no answer at all (``then``: what
    happens next, e.g. "the window will be sent again")."""
    return ModelServiceUnreachable(
        f"{call.outcome.error} (blob {source['blob']!r} row {source['row']}, "
        f"{call.attempts} attempts); {then}"
    )


def call_window(
    items: Iterable[Item],
    post: Callable[[dict[str, Any]], HttpAnswer],
    *,
    attempts: int = 3,
    backoff_seconds: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    on_send: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[Result]:
    """Send every mappable item of a window and return one result per item, in order.

    ``items`` come from the pull step: ``{"source": ..., "body": ...}`` for a mapped row or
    ``{"source": ..., "raw": ..., "error": ...}`` for a row that could not be mapped (not sent).

    Raises :class:`ModelServiceUnreachable` when a row gets no answer at all and no earlier row
    of the window was answered: the service is down, so the whole window is left to the task's
    retry rather than recorded as errors (the position does not move).

    ``on_send(index, body)``, when given, is called as each mapped item's first try starts (the
    shadow mode's candidate is asked then: :mod:`shadow`).
    """
    results: list[Result] = []
    any_answered = False
    for index, item in enumerate(items):
        if "body" not in item:
            results.append(unsent_result(item))
            continue
        if on_send is not None:
            on_send(index, item["body"])
        call = send_with_retries(
            post, item["body"], attempts=attempts, backoff_seconds=backoff_seconds, sleep=sleep
        )
        if not call.reached and not any_answered:
            raise unreachable(call, item["source"], "the window will be sent again")
        any_answered = any_answered or call.reached
        results.append(sent_result(item, call))
    return results


def hook_transport(hook: Any, endpoint: str, timeout: float) -> Callable[[dict], HttpAnswer]:
    """A ``post(body)`` for :func:`call_window` built on Airflow's ``HttpHook``.

    One session for the whole window (connection reuse); the hook's connection settings
    (base URL, auth, ``verify``, proxies, headers) apply; non-2xx answers are returned, not
    raised, so :func:`classify` sees them; any transport failure becomes :class:`TransportError`.
    """
    import requests

    session = hook.get_conn()
    url = hook.url_from_endpoint(endpoint)
    options = {**hook.merged_extra, "timeout": timeout, "check_response": False}

    def post(body: dict[str, Any]) -> HttpAnswer:
        request = session.prepare_request(requests.Request("POST", url, json=body))
        try:
            response = hook.run_and_check(session, request, options)
        except requests.RequestException as exc:
            raise TransportError(f"{type(exc).__name__} on POST {url}") from exc
        return HttpAnswer(
            response.status_code, response.text, retry_after_seconds(response.headers)
        )

    return post
