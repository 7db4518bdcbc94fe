"""Fault injection for the reference model service: a misbehaving service on demand.

Off by default. :class:`FaultInjection` wraps the service's ASGI app; with a ``rate`` above 0 it
answers that fraction of ``POST /predict/`` calls with a fault drawn from ``mix``:

``500``      500 ``{"detail": "injected fault: internal error"}``
``503``      503 with ``Retry-After: <retry_after>``
``slow``     the real answer, but only after ``slow_seconds`` (past the client's timeout)
``drop``     the connection is closed without any answer (no status line, no headers)
``badjson``  200 with a body that is not JSON
``empty``    200 with an empty body
``noissue``  200 with the request record but no ``issue`` field

Draws come from ``random.Random(seed)`` in arrival order, so a client that sends the same calls
in the same order meets the same faults. ``machine_ids`` limits faults to the rows of those
machines (other calls draw nothing); ``limit`` stops injecting after that many faults.
``GET /faults`` answers the counts (calls, faults by kind, slow answers still in flight).

How ``drop`` works: uvicorn closes the transport without writing anything when an ASGI app
returns a value instead of ``None`` (it logs "ASGI callable should return None, but returned
'injected fault: ...'"). The client sees the connection closed with no response at all
(``requests`` raises ``ConnectionError``), as with a crashed or restarted server. An
integration test proves it against the real server.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

FAULT_KINDS: tuple[str, ...] = ("500", "503", "slow", "drop", "badjson", "empty", "noissue")
PREDICT_PATH = "/predict/"
STATS_PATH = "/faults"
# What uvicorn logs for a dropped connection ("ASGI callable should return None, but returned").
DROPPED = "injected fault: connection dropped without an answer"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[Any]]


def parse_mix(text: str) -> tuple[str, ...]:
    """``"500,503,slow"`` -> the kinds; a kind named twice is drawn twice as often."""
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown or not kinds:
        raise ValueError(
            f"fault mix {text!r}: unknown kind(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(FAULT_KINDS)}"
        )
    return kinds


@dataclass(frozen=True)
class FaultConfig:
    """What to inject; the default injects nothing."""

    rate: float = 0.0
    mix: tuple[str, ...] = FAULT_KINDS
    seed: int | None = None
    slow_seconds: float = 60.0
    retry_after: int = 1
    limit: int | None = None
    machine_ids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, not {self.rate}")
        parse_mix(",".join(self.mix))
        if self.slow_seconds < 0 or self.retry_after < 0:
            raise ValueError("slow seconds and Retry-After must not be negative")
        if self.limit is not None and self.limit < 0:
            raise ValueError("fault limit must not be negative")

    @property
    def enabled(self) -> bool:
        return self.rate > 0


class FaultPlan:
    """The seeded draws and the counts (thread-safe; pure Python, unit-tested)."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._random = random.Random(config.seed)
        self._lock = threading.Lock()
        self.calls = 0
        self.injected: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()

    def draw(self, machine_id: str | None) -> str | None:
        """The fault for this call, or ``None`` for a normal answer."""
        config = self.config
        with self._lock:
            self.calls += 1
            if not config.enabled:
                return None
            if config.machine_ids and machine_id not in config.machine_ids:
                return None
            if config.limit is not None and sum(self.injected.values()) >= config.limit:
                return None
            # Two draws per call whatever the outcome, so one call's fault never shifts the next.
            hit = self._random.random() < config.rate
            kind = self._random.choice(config.mix)
            if not hit:
                return None
            self.injected[kind] += 1
            return kind

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": self.calls,
                "injected": {kind: self.injected[kind] for kind in FAULT_KINDS},
                "injected_total": sum(self.injected.values()),
                "in_flight": dict(self.in_flight),
                "config": {
                    "rate": self.config.rate,
                    "mix": list(self.config.mix),
                    "seed": self.config.seed,
                    "slow_seconds": self.config.slow_seconds,
                    "retry_after": self.config.retry_after,
                    "limit": self.config.limit,
                    "machine_ids": sorted(self.config.machine_ids),
                },
            }

    def enter(self, kind: str) -> None:
        with self._lock:
            self.in_flight[kind] += 1

    def leave(self, kind: str) -> None:
        with self._lock:
            self.in_flight[kind] -= 1


async def _send_answer(send: Send, status: int, body: bytes, headers: Iterable = ()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _read_body(receive: Receive) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already-read body to the app, then defers to the server."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _json_body(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class FaultInjection:
    """ASGI wrapper: faults on ``POST /predict/`` and the ``GET /faults`` counts."""

    def __init__(self, app: ASGIApp, config: FaultConfig) -> None:
        self.app = app
        self.plan = FaultPlan(config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"] == STATS_PATH and scope["method"] == "GET":
            await _send_answer(send, 200, json.dumps(self.plan.stats()).encode())
            return None
        if scope["path"] != PREDICT_PATH or scope["method"] != "POST":
            return await self.app(scope, receive, send)

        body = await _read_body(receive)
        record = _json_body(body)
        machine = record.get("machineId") if record else None
        kind = self.plan.draw(machine if isinstance(machine, str) else None)
        receive = _replay(body, receive)
        if kind is None:
            return await self.app(scope, receive, send)
        if kind == "drop":
            return DROPPED  # uvicorn closes the connection without writing a byte
        if kind == "500":
            await _send_answer(send, 500, b'{"detail": "injected fault: internal error"}')
        elif kind == "503":
            retry_after = str(self.plan.config.retry_after).encode()
            detail = b'{"detail": "injected fault: service unavailable"}'
            await _send_answer(send, 503, detail, [(b"retry-after", retry_after)])
        elif kind == "badjson":
            await _send_answer(send, 200, b'{"machineId": "PAINT-1", "issue": "PAINT-EQ-')
        elif kind == "empty":
            await _send_answer(send, 200, b"")
        elif kind == "noissue":
            echo = {k: v for k, v in (record or {}).items() if k != "issue"}
            await _send_answer(send, 200, json.dumps(echo).encode())
        elif kind == "slow":
            self.plan.enter(kind)
            try:
                await asyncio.sleep(self.plan.config.slow_seconds)
            finally:
                self.plan.leave(kind)
            return await self.app(scope, receive, send)
        return None
