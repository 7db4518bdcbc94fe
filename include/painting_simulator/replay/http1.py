"""The replay's HTTP/1.1 client: JSON POSTs to one URL on a keep-alive pool of asyncio protocols.

Why not ``aiohttp``: on the 2-core machine of the figures the replay's client and the model
service share the cores, and aiohttp's own request/response handling was most of the client's
CPU per row (``docs/performance.md``). This client does only what the replay needs: one
``POST`` at a time per connection (no pipelining), at most ``limit`` keep-alive connections,
the request built as one ``bytes`` join, responses framed by ``Content-Length``, ``chunked``
or the connection's close, ``gzip``/``deflate`` bodies inflated, one total timeout per request
(waiting for a connection, connecting, sending and reading the whole answer).

A request that gets no complete answer raises :class:`ClientFailure`, whose ``name`` is the
word the replay's error records have always used for that case (the names of the aiohttp
exceptions the replay raised before this client), so the records stay as they were:

* ``ClientConnectorError``     the connection could not be made (refused, no route, DNS)
* ``ServerDisconnectedError``  the server closed the connection before a complete answer head
* ``ClientOSError``            the connection was reset before a complete answer head
* ``ClientPayloadError``       the connection ended (closed or reset) in the middle of the body
* ``ClientResponseError``      the answer is not HTTP/1.x (a malformed status line or header)
* ``TimeoutError``             no complete answer within the timeout
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024  # an answer head longer than this is not a model service's
NO_BODY_STATUSES = frozenset({204, 304})
USER_AGENT = "painting-simulator-replay"


class ClientFailure(Exception):
    """No complete HTTP answer; ``name`` says which case (see the module doc)."""

    def __init__(self, name: str, detail: str = "") -> None:
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name


@dataclass(frozen=True)
class Answer:
    """A complete answer: the status, the headers (names lower-case; read-only) and the body
    (inflated)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def text(self) -> str:
        """The body as text: the charset of ``Content-Type``, else UTF-8 (undecodable bytes
        replaced, so that a garbled body is an answer to classify, not a crash)."""
        charset = "utf-8"
        for part in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


def _inflate(body: bytes, encoding: str) -> bytes:
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some servers send
    return body


# Parsed answer heads by their bytes: a model service's heads repeat (only ``Date`` changes, once
# a second): a head seen before costs a dict lookup, not a parse (about 1.5 µs a row).
_HEADS: dict[bytes, tuple[str, int, Mapping[str, str]]] = {}
_HEADS_KEPT = 64


def _parse_head_bytes(head: bytes) -> tuple[str, int, Mapping[str, str]]:
    """An answer head (without its blank line) as ``(version, status, headers)``: names lower
    case, repeated headers joined with ``", "``; remembered in ``_HEADS``. The headers are
    read-only: answers with the same head share them."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, reason = rest[:3], rest[3:]
    if not version.startswith("HTTP/1.") or not code.isdigit() or reason[:1] not in " ":
        raise ClientFailure("ClientResponseError", f"bad status line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ClientFailure("ClientResponseError", f"bad header line {line[:100]!r}")
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if len(_HEADS) >= _HEADS_KEPT:
        _HEADS.clear()
    parsed = _HEADS[head] = (version, int(code), MappingProxyType(headers))
    return parsed


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends a request, frames its answer, says if it can be reused."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future[Answer] | None = None
        self.buffer = bytearray()
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: Mapping[str, str] = {}
        self.body_mode = ""  # "" head not read yet, "length", "chunked", "close"
        self.remaining = 0
        self.body = bytearray()
        self.reusable = False

    # asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: this connection cannot be trusted
            self.close()
            return
        self.buffer += data
        try:
            self._parse()
        except ClientFailure as failure:
            self._fail(failure)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost ends a waiting request

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is None or self.waiter.done():
            return
        if self.body_mode == "close":  # the body ran to the close: complete
            self._finish(reusable=False)
        elif self.body_mode:
            self._fail(ClientFailure("ClientPayloadError", "the answer's body ended early"))
        elif isinstance(exc, ConnectionResetError):
            self._fail(ClientFailure("ClientOSError", str(exc)))
        else:
            self._fail(ClientFailure("ServerDisconnectedError", "closed before an answer"))

    # requests -------------------------------------------------------------------------------

    def request(self, data: bytes, waiter: asyncio.Future[Answer]) -> None:
        self._reset()
        self.buffer.clear()
        self.waiter = waiter
        self.transport.write(data)  # type: ignore[union-attr]

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, failure: ClientFailure) -> None:
        waiter, self.waiter = self.waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(failure)

    def _finish(self, reusable: bool) -> None:
        waiter, self.waiter = self.waiter, None
        self.reusable = reusable and not self.closed
        body = bytes(self.body)
        encoding = self.headers.get("content-encoding", "").strip().lower()
        if encoding and encoding != "identity":
            try:
                body = _inflate(body, encoding)
            except zlib.error as exc:
                self.reusable = False
                self.close()
                if waiter is not None and not waiter.done():
                    waiter.set_exception(ClientFailure("ClientPayloadError", str(exc)))
                return
        if waiter is not None and not waiter.done():
            waiter.set_result(Answer(self.status, self.headers, body))

    # framing --------------------------------------------------------------------------------

    def _parse(self) -> None:
        if not self.body_mode and not self._parse_head():
            return
        if self.body_mode == "length":
            take = min(self.remaining, len(self.buffer))
            self.body += self.buffer[:take]
            del self.buffer[:take]
            self.remaining -= take
            if not self.remaining:
                self._finish(self.reusable)
        elif self.body_mode == "chunked":
            self._parse_chunks()
        elif self.body_mode == "close":
            self.body += self.buffer
            self.buffer.clear()

    def _parse_head(self) -> bool:
        """Read the answer head when it is all there (skipping ``1xx`` heads); True when the
        body can be read."""
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    raise ClientFailure("ClientResponseError", "answer head too long")
                return False
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            version, status, headers = _HEADS.get(head) or _parse_head_bytes(head)
            if not 100 <= status < 200:  # 100 Continue and the like: the real answer follows
                break
        self.status, self.headers = status, headers
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            self.reusable = "keep-alive" in connection
        else:
            self.reusable = "close" not in connection
        if status in NO_BODY_STATUSES:
            self._finish(self.reusable)
            return False
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.body_mode = "chunked"
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit():
                raise ClientFailure("ClientResponseError", f"bad Content-Length {length!r}")
            self.body_mode, self.remaining = "length", int(length)
            if not self.remaining:
                self._finish(self.reusable)
                return False
        else:
            self.body_mode, self.reusable = "close", False
        return True

    def _parse_chunks(self) -> None:
        buffer = self.buffer
        while True:
            if self.remaining:  # inside a chunk: its data, then its CRLF
                if len(buffer) < self.remaining + 2:
                    return
                self.body += buffer[: self.remaining]
                if buffer[self.remaining : self.remaining + 2] != b"\r\n":
                    raise ClientFailure("ClientPayloadError", "chunk not ended by CRLF")
                del buffer[: self.remaining + 2]
                self.remaining = 0
            end = buffer.find(b"\r\n")
            if end < 0:
                return
            size_text = bytes(buffer[:end]).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ClientFailure("ClientPayloadError", f"bad chunk size {size_text!r}") from None
            if size:
                del buffer[: end + 2]
                self.remaining = size
                continue
            trailer_end = buffer.find(b"\r\n\r\n", end)  # the last chunk, then trailers
            if buffer[end + 2 : end + 4] == b"\r\n":
                trailer_end = end
            if trailer_end < 0:
                return
            del buffer[: trailer_end + 4]
            self._finish(self.reusable)
            return


class Client:
    """POSTs to one URL on at most ``limit`` keep-alive connections (use as ``async with``)."""

    def __init__(
        self,
        url: str,
        *,
        limit: int,
        timeout: float,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        verify: bool = True,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r}: only http:// and https:// URLs with a host")
        self.url, self.limit, self.timeout = url, limit, timeout
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = ssl.create_default_context()
            if not verify:
                self.ssl.check_hostname = False
                self.ssl.verify_mode = ssl.CERT_NONE
        host = f"[{self.host}]" if ":" in self.host else self.host
        if parts.port is not None and parts.port != {"http": 80, "https": 443}[parts.scheme]:
            host = f"{host}:{parts.port}"
        fields = {"Host": host, "Accept": "*/*", "Accept-Encoding": "gzip, deflate",
                  "User-Agent": USER_AGENT, "Content-Type": "application/json"}  # fmt: skip
        for name, value in (headers or {}).items():  # the connection's headers win
            for known in [k for k in fields if k.lower() == name.lower()]:
                del fields[known]
            fields[name] = value
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            fields["Authorization"] = f"Basic {token}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = f"POST {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        self._head = (head + "Content-Length: ").encode("latin-1")
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every idle connection (busy ones close when their request ends)."""
        while self._idle:
            self._idle.pop().close()

    async def post(self, payload: bytes) -> Answer:
        """POST ``payload`` (JSON) and return the complete answer, or raise
        :class:`ClientFailure`."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Answer] = loop.create_future()
        timer = loop.call_later(self.timeout, _expire, waiter)
        connection: _Connection | None = None
        try:
            # An idle connection is the common case: no coroutine to take it.
            while self._idle and connection is None:
                connection = self._idle.pop()
                if connection.closed:
                    connection, self._open = None, self._open - 1
            if connection is None:
                connection = await self._acquire(waiter)
            length = b"%d\r\n\r\n" % len(payload)
            connection.request(b"".join((self._head, length, payload)), waiter)
            return await waiter
        finally:
            timer.cancel()
            if connection is not None:
                self._release(connection)

    async def _acquire(self, waiter: asyncio.Future[Answer]) -> _Connection:
        while True:
            while self._idle:
                connection = self._idle.pop()
                if not connection.closed:
                    return connection
                self._open -= 1
            if self._open < self.limit:
                self._open += 1
                try:
                    return await self._connect(waiter)
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
            turn = asyncio.get_running_loop().create_future()
            self._waiting.append(turn)
            await _first(turn, waiter)

    async def _connect(self, waiter: asyncio.Future[Answer]) -> _Connection:
        loop = asyncio.get_running_loop()
        connecting = asyncio.ensure_future(
            loop.create_connection(_Connection, self.host, self.port, ssl=self.ssl)
        )
        try:
            await _first(connecting, waiter)
        except BaseException:
            connecting.cancel()
            raise
        try:
            _, connection = connecting.result()
        except OSError as exc:
            raise ClientFailure(
                "ClientConnectorError", f"cannot connect to {self.host}:{self.port}: {exc}"
            ) from exc
        return connection

    def _release(self, connection: _Connection) -> None:
        if connection.waiter is None and connection.reusable and not connection.closed:
            self._idle.append(connection)
        else:
            connection.close()
            self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return


def _expire(waiter: asyncio.Future[Answer]) -> None:
    if not waiter.done():
        waiter.set_exception(ClientFailure("TimeoutError", "no complete answer in time"))


async def _first(step: asyncio.Future, waiter: asyncio.Future[Answer]) -> None:
    """Wait for ``step``, unless ``waiter`` (the request) fails first (its timeout): then raise
    the request's failure."""
    if not step.done():
        await asyncio.wait((step, waiter), return_when=asyncio.FIRST_COMPLETED)
    if not step.done():
        waiter.result()  # raises the timeout
