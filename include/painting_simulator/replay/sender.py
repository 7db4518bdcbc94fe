"""The replay's HTTP sender: items POSTed on one event loop with bounded concurrency and a rate.

HTTP client: ``aiohttp`` (a requirement of Airflow's HTTP provider, whose async hook is built on
it): one event loop and one pooled connector give ``concurrency`` requests in flight for a small
fraction of a core, where ``requests`` would need a thread per request and the GIL would make the
client, not the model service, the limit. The address, headers, basic auth and ``verify`` come
from the ``painting_model_service`` connection through ``HttpHook`` (:func:`endpoint_from_hook`).
What an answer means and when to retry are the simulator's own rules (:mod:`model_client`).

With a candidate model service (its own connection, the same :class:`Endpoint` path and retry
policy), each sent row's body is POSTed to the candidate at the same time as to production, on a
session of its own: production's latency is timed on its own call, and whatever the candidate
does (down, slow, garbage) only becomes the result's ``candidate`` verdict, never its outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from include.painting_simulator import model_client, settings
from include.painting_simulator.records import (
    CandidateVerdict,
    Item,
    Result,
    candidate_verdict,
    sent_result,
    unsent_result,
)


@dataclass(frozen=True)
class Endpoint:
    """Where and how to POST: from the ``painting_model_service`` connection."""

    url: str
    timeout: float
    attempts: int
    headers: dict[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None
    verify: bool = True


def endpoint_from_hook(hook: Any, timeout: float, attempts: int) -> Endpoint:
    """The connection of an ``HttpHook`` as an :class:`Endpoint`: base URL + ``/predict/``,
    headers from its extra, basic auth (login/password) and ``verify``."""
    import requests

    session = hook.get_conn()
    defaults = requests.utils.default_headers()
    headers = {k: v for k, v in session.headers.items() if defaults.get(k) != v}
    auth = session.auth
    if isinstance(auth, requests.auth.HTTPBasicAuth):
        auth = (auth.username, auth.password)
    elif auth is not None and not isinstance(auth, tuple):
        raise ValueError(
            f"connection {hook.http_conn_id!r} uses {type(auth).__name__}; painting_replay "
            "supports basic auth (login/password) and headers only"
        )
    return Endpoint(
        url=hook.url_from_endpoint(settings.PREDICT_ENDPOINT),
        timeout=timeout,
        attempts=attempts,
        headers=headers,
        auth=auth,
        verify=session.verify is not False,
    )


async def _post(session: Any, url: str, payload: bytes) -> model_client.HttpAnswer:
    """POST the JSON ``payload`` (the session sends it as ``application/json``)."""
    import aiohttp

    try:
        async with session.post(url, data=payload) as response:
            # 204 (a normal row: nearly every one) has no body to decode.
            text = "" if response.status == 204 else await response.text()
            retry_after = response.headers.get("Retry-After", "").strip()
            return model_client.HttpAnswer(
                response.status, text, float(retry_after) if retry_after.isdigit() else None
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise model_client.TransportError(f"{type(exc).__name__} on POST {url}") from exc


async def send_with_retries(
    session: Any, url: str, body: dict[str, Any], attempts: int, backoff_seconds: float = 1.0
) -> model_client.CallResult:
    """POST one body under the simulator's :class:`model_client.RetryPolicy`, on the event loop."""
    policy = model_client.RetryPolicy(attempts, backoff_seconds)
    payload = json.dumps(body).encode()  # what aiohttp's json= sends, encoded once per row
    while True:
        try:
            answer: model_client.HttpAnswer | model_client.TransportError = await _post(
                session, url, payload
            )
        except model_client.TransportError as exc:
            answer = exc
        step = policy.after(answer)
        if isinstance(step, model_client.CallResult):
            return step
        await asyncio.sleep(step)


class _Sender:
    """Sends items with bounded concurrency and an optional rate, one chunk at a time (and each
    sent item to the candidate too, when there is one)."""

    def __init__(
        self,
        session: Any,
        endpoint: Endpoint,
        concurrency: int,
        rate: float,
        candidate: tuple[Any, Endpoint] | None = None,
    ) -> None:
        self.session, self.endpoint = session, endpoint
        self.concurrency, self.rate = concurrency, rate
        self.candidate = candidate
        self.started = time.monotonic()
        self.sent = 0
        self.answered = False

    async def ask_candidate(self, body: dict[str, Any]) -> CandidateVerdict:
        """The candidate's verdict on ``body``; any failure of its call is its error."""
        session, endpoint = self.candidate  # type: ignore[misc]
        began = time.perf_counter()
        try:
            call = await send_with_retries(session, endpoint.url, body, endpoint.attempts)
        except Exception as exc:  # the candidate never fails the production row
            cause = f"candidate call failed: {type(exc).__name__}: {exc}"
            return candidate_verdict(None, time.perf_counter() - began, cause)
        return candidate_verdict(call, time.perf_counter() - began)

    async def call(self, item: Item) -> Result:
        if "body" not in item:
            return unsent_result(item)
        if self.rate:
            due = self.started + self.sent / self.rate
            self.sent += 1
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
        shadow = asyncio.ensure_future(self.ask_candidate(item["body"])) if self.candidate else None
        began = time.perf_counter()
        call = await send_with_retries(
            self.session, self.endpoint.url, item["body"], self.endpoint.attempts
        )
        latency = time.perf_counter() - began
        if not call.reached and not self.answered:
            if shadow is not None:
                shadow.cancel()
            raise model_client.unreachable(call, item["source"], "the shard will be retried")
        self.answered = self.answered or call.reached
        result: Result = {**sent_result(item, call), "latency": latency}
        if shadow is not None:
            result["candidate"] = await shadow
        return result

    async def send_chunk(self, items: list[Item]) -> list[Result]:
        results: list[Any] = [None] * len(items)
        todo = iter(enumerate(items))

        async def worker() -> None:
            for index, item in todo:  # shared: each item is taken by one worker
                results[index] = await self.call(item)

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(items)))))
        return results


def _session(endpoint: Endpoint, concurrency: int) -> Any:
    """An ``aiohttp`` session for one endpoint: ``concurrency`` pooled connections, its headers,
    auth, timeout and ``verify``."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency, ssl=None if endpoint.verify else False)
    headers = dict(endpoint.headers)  # the bodies are JSON, unless the connection says more
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/json"
    return aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        auth=aiohttp.BasicAuth(*endpoint.auth) if endpoint.auth else None,
        timeout=aiohttp.ClientTimeout(total=endpoint.timeout),
        cookie_jar=aiohttp.DummyCookieJar(),  # the service sets no cookies: no jar per request
    )


async def replay_chunks(
    chunks: Iterator[tuple[int, list[Item]]],
    endpoint: Endpoint,
    concurrency: int,
    rate: float,
    record: Callable[[int, list[Result]], None],
    candidate: Endpoint | None = None,
) -> None:
    """Send chunk after chunk (each sent row also to ``candidate`` when given); the next chunk
    is read and the previous one recorded (in threads) while the current one is being sent."""
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(_session(endpoint, concurrency))
        shadow = None
        if candidate is not None:
            shadow = (await stack.enter_async_context(_session(candidate, concurrency)), candidate)
        sender = _Sender(session, endpoint, concurrency, rate, shadow)
        recording: asyncio.Future[None] | None = None
        upcoming = loop.run_in_executor(None, next, chunks, None)
        while (chunk := await upcoming) is not None:
            upcoming = loop.run_in_executor(None, next, chunks, None)
            first, items = chunk
            results = await sender.send_chunk(items)
            if recording is not None:
                await recording
            recording = loop.run_in_executor(None, record, first, results)
        if recording is not None:
            await recording


def run_event_loop(main: Any) -> None:
    """``uvloop`` when installed (uvicorn's standard extras, part of Airflow's install): its C
    event loop took about a fifth less CPU per request than asyncio's in our measurements, CPU
    that the model service gets instead when both share a machine. Plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
