"""The replay's HTTP sender: bodies POSTed on one event loop, and the results of their answers.

Chunk after chunk, with bounded concurrency and a rate.

The sending runs in a process of its own (:mod:`replay.send_process`); the shard's process turns
its items into payloads (:func:`payloads_of`) and the outcomes into results (:func:`results_of`).

HTTP client: :mod:`replay.http1`, a lean HTTP/1.1 client on asyncio's protocols with a
keep-alive pool of ``concurrency`` connections: one event loop keeps ``concurrency`` requests in
flight, where ``requests`` would need a thread per request and the GIL would make the client,
not the model service, the limit; and it takes about a third of the CPU per request that
``aiohttp`` took, CPU that the model service gets instead when both share a machine
(``docs/performance.md``). The address, headers, basic auth and ``verify`` come from the
``painting_model_service`` connection through ``HttpHook`` (:func:`endpoint_from_hook`). What an
answer means and when to retry are the simulator's own rules (:mod:`model_client`).

With a candidate model service (its own connection, the same :class:`Endpoint` path and retry
policy), each sent row's body is POSTed to the candidate at the same time as to production, on a
pool of its own: production's latency is timed on its own call, and whatever the candidate
does (down, slow, garbage) only becomes the result's ``candidate`` verdict, never its outcome.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from include.painting_simulator import model_client, settings
from include.painting_simulator.ledger import encode_json
from include.painting_simulator.records import (
    CandidateVerdict,
    EncodedBody,
    Item,
    Result,
    candidate_verdict,
    sent_result,
    unsent_result,
)
from include.painting_simulator.replay import http1


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


async def _post(client: http1.Client, payload: bytes) -> model_client.HttpAnswer:
    """POST the JSON ``payload``; no complete answer is a :class:`model_client.TransportError`
    named as the replay's error records name it (:mod:`replay.http1`)."""
    try:
        answer = await client.post(payload)
    except http1.ClientFailure as exc:
        raise model_client.TransportError(f"{exc.name} on POST {client.url}") from exc
    return model_client.HttpAnswer(
        answer.status,
        # 204 (a normal row: nearly every one) has no body to decode.
        "" if answer.status == 204 else answer.text(),
        model_client.retry_after_seconds(answer.headers),
    )


def encode_body(body: dict[str, Any]) -> tuple[EncodedBody, bytes]:
    """The body with its JSON text (for its ledger line) and the bytes to POST: what
    ``json.dumps(body)`` gives (non-ASCII characters escaped), encoded once per row."""
    if isinstance(body, EncodedBody):
        text = body.text
    else:
        text = encode_json(body)
        body = EncodedBody(body, text)
    # DEL is ASCII but json.dumps escapes it, as it does every non-ASCII character.
    plain = text.isascii() and "\x7f" not in text
    payload = text.encode() if plain else json.dumps(body).encode()
    return body, payload


async def send_with_retries(
    client: http1.Client, payload: bytes, attempts: int, backoff_seconds: float = 1.0
) -> model_client.CallResult:
    """POST one body's ``payload`` (:func:`encode_body`) under the simulator's
    :class:`model_client.RetryPolicy`, on the event loop."""
    policy = model_client.RetryPolicy(attempts, backoff_seconds)
    while True:
        try:
            answer: model_client.HttpAnswer | model_client.TransportError = await _post(
                client, payload
            )
        except model_client.TransportError as exc:
            answer = exc
        step = policy.after(answer)
        if isinstance(step, model_client.CallResult):
            return step
        await asyncio.sleep(step)


class Unreached(Exception):
    """The model service never answered a chunk's entry ``index`` (``call``: its attempts) and
    no row of the shard had an answer yet: the shard fails and is retried."""

    def __init__(self, index: int, call: model_client.CallResult, chunk: int = 0) -> None:
        super().__init__(index, call, chunk)
        self.index, self.call, self.chunk = index, call, chunk


# What a sent payload gives: its call, the seconds it took, the candidate's verdict (or None).
Outcome = tuple[model_client.CallResult, float, CandidateVerdict | None]


class Sender:
    """Sends chunk after chunk of payloads with bounded concurrency and an optional rate (and
    each one to the candidate too, when there is one)."""

    def __init__(
        self,
        session: http1.Client,
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

    async def ask_candidate(self, payload: bytes) -> CandidateVerdict:
        """The candidate's verdict on the body ``payload``; any failure of its call is its
        error."""
        session, endpoint = self.candidate  # type: ignore[misc]
        began = time.perf_counter()
        try:
            call = await send_with_retries(session, payload, endpoint.attempts)
        except Exception as exc:  # the candidate never fails the production row
            cause = f"candidate call failed: {type(exc).__name__}: {exc}"
            return candidate_verdict(None, time.perf_counter() - began, cause)
        return candidate_verdict(call, time.perf_counter() - began)

    async def call(self, index: int, payload: bytes) -> Outcome:
        if self.rate:
            due = self.started + self.sent / self.rate
            self.sent += 1
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
        shadow = asyncio.ensure_future(self.ask_candidate(payload)) if self.candidate else None
        began = time.perf_counter()
        call = await send_with_retries(self.session, payload, self.endpoint.attempts)
        latency = time.perf_counter() - began
        if not call.reached and not self.answered:
            if shadow is not None:
                shadow.cancel()
            raise Unreached(index, call)
        self.answered = self.answered or call.reached
        return call, latency, (await shadow if shadow is not None else None)

    async def send_chunks(
        self,
        next_chunk: Callable[[], Awaitable[list[bytes | None] | None]],
        done: Callable[[list[Outcome | None]], None],
    ) -> None:
        """Send chunk after chunk (``next_chunk`` gives each one's payloads, ``None`` for an
        item not sent; ``None`` ends) with ``concurrency`` requests in flight across the end of a
        chunk, and hand ``done`` each chunk's outcomes, in order, once all of them are in. An
        :class:`Unreached` raised here carries its chunk's number (0 the first) as ``chunk``."""
        # The work: a deque that the workers take from, and the futures of the workers that
        # wait for more (cheaper per request than an asyncio.Queue's put and get).
        jobs: collections.deque[tuple[_Chunk, int, bytes]] = collections.deque()
        idle: list[asyncio.Future[None]] = []
        pending: collections.deque[_Chunk] = collections.deque()
        fed = False

        def hand_over() -> None:
            while pending and pending[0].left == 0:
                done(pending.popleft().outcomes)

        def wake() -> None:
            for waiter in idle:
                if not waiter.done():
                    waiter.set_result(None)
            idle.clear()

        async def feed() -> None:
            nonlocal fed
            number = 0
            while (payloads := await next_chunk()) is not None:
                chunk = _Chunk(number, [None] * len(payloads), 0)
                pending.append(chunk)
                for index, payload in enumerate(payloads):
                    if payload is not None:
                        chunk.left += 1
                        jobs.append((chunk, index, payload))
                wake()
                hand_over()  # a chunk with nothing to send
                number += 1
            fed = True
            wake()

        async def worker() -> None:
            loop = asyncio.get_running_loop()
            while True:
                if not jobs:
                    if fed:
                        return
                    idle.append(waiter := loop.create_future())
                    await waiter
                    continue
                chunk, index, payload = jobs.popleft()
                try:
                    chunk.outcomes[index] = await self.call(index, payload)
                except Unreached as exc:
                    exc.chunk = chunk.number
                    raise
                chunk.left -= 1
                hand_over()

        try:
            async with asyncio.TaskGroup() as group:  # the first error cancels the rest
                group.create_task(feed())
                for _ in range(self.concurrency):
                    group.create_task(worker())
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None


@dataclass
class _Chunk:
    """A chunk being sent: its number, its outcomes so far, and how many are still out."""

    number: int
    outcomes: list[Outcome | None]
    left: int


def session(endpoint: Endpoint, concurrency: int) -> http1.Client:
    """The client of one endpoint: ``concurrency`` pooled connections, its headers, auth,
    timeout and ``verify``."""
    return http1.Client(
        endpoint.url,
        limit=concurrency,
        timeout=endpoint.timeout,
        headers=endpoint.headers,
        auth=endpoint.auth,
        verify=endpoint.verify,
    )


def payloads_of(items: list[Item]) -> tuple[list[EncodedBody | None], list[bytes | None]]:
    """Each item's body with its JSON text and the bytes to POST (:func:`encode_body`); ``None``
    for an item that is not sent (it has no body)."""
    bodies: list[EncodedBody | None] = []
    payloads: list[bytes | None] = []
    for item in items:
        if "body" in item:
            body, payload = encode_body(item["body"])
        else:
            body = payload = None
        bodies.append(body)
        payloads.append(payload)
    return bodies, payloads


def results_of(
    items: list[Item], bodies: list[EncodedBody | None], outcomes: list[Outcome | None]
) -> list[Result]:
    """The result of each item from the outcome of its payload (:meth:`Sender.send_chunk`)."""
    results: list[Result] = []
    for item, body, outcome in zip(items, bodies, outcomes, strict=True):
        if outcome is None:
            results.append(unsent_result(item))
            continue
        call, latency, verdict = outcome
        result: Result = {**sent_result(item, call), "latency": latency}
        result["original_data"] = body  # the same dict, with its JSON text for the ledger
        if verdict is not None:
            result["candidate"] = verdict
        results.append(result)
    return results


def run_event_loop(main: Any) -> Any:
    """``uvloop`` when installed (uvicorn's standard extras, part of Airflow's install): its C
    event loop took about a fifth less CPU per request than asyncio's in our measurements, CPU
    that the model service gets instead when both share a machine. Plain asyncio otherwise.
    Returns what ``main`` returns."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
