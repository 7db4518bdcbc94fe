"""A raw asyncio HTTP server on 127.0.0.1 that answers in awkward but possible ways.

It stands in for what no real model service can be made to do on demand: a chunked answer, an
answer that runs to ``Connection: close``, a reset in the middle of the body, a slow head, a
garbled status line. The path of each ``POST`` picks the answer (:data:`SCENARIOS`); the server
runs its own event loop in a thread, counts the connections it accepted, and is stopped by
:meth:`AwkwardServer.stop`.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import struct
import threading
from typing import Any

RECORD = {"machineId": "PAINT-1", "timeStamp": "2025-07-23T15:32:01", "thick": 19.9,
          "voltage": 263.0, "current": 72.0, "temper": 34.0, "issue": "PAINT-EQ-VOL-HIGH",
          "isSolved": False}  # fmt: skip
RECORD_BYTES = json.dumps(RECORD).encode()

# path -> what the server does after reading the request
SCENARIOS = (
    "/normal",  # 204, keep-alive
    "/anomaly",  # 200 with Content-Length, keep-alive
    "/idle-close",  # 204 keep-alive, then the server closes the idle connection (50 ms later)
    "/chunked",  # 200, Transfer-Encoding: chunked, several chunks, an extension and a trailer
    "/close",  # 200 without Content-Length, the body runs to Connection: close
    "/gzip",  # 200, Content-Encoding: gzip
    "/continue",  # 100 Continue, then 204
    "/retry",  # 503 with Retry-After: 7
    "/reset-mid-body",  # the head says 400 bytes, 20 are sent, then a TCP reset
    "/reset",  # a TCP reset instead of an answer
    "/drop",  # the connection closed without any answer
    "/slow-head",  # the head only after 2 s
    "/garbage",  # not an HTTP answer
    "/bad-length",  # Content-Length: abc
)


def _head(status: str, *headers: str) -> bytes:
    return ("\r\n".join((f"HTTP/1.1 {status}", *headers)) + "\r\n\r\n").encode()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class AwkwardServer:
    """The server; ``url(path)`` is where to POST, ``connections`` how many were accepted."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []  # each request's head, as received
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        self._ready.set()
        self._loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:  # one request after the other on the connection (keep-alive)
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests.append(head)
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                path = head.split(b" ", 2)[1].decode()
                if not await self._answer(path, writer):
                    return
        except asyncio.CancelledError:
            return  # stopped: asyncio's streams would log a cancelled handler as an error
        finally:
            if not writer.transport.is_closing():
                writer.close()

    async def _answer(self, path: str, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is over."""
        if path == "/normal":
            writer.write(_head("204 No Content", "server: awkward"))
        elif path == "/idle-close":
            writer.write(_head("204 No Content"))
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.close()
            return False
        elif path == "/anomaly":
            writer.write(_head("200 OK", f"Content-Length: {len(RECORD_BYTES)}",
                               "Content-Type: application/json") + RECORD_BYTES)  # fmt: skip
        elif path == "/chunked":
            writer.write(_head("200 OK", "Transfer-Encoding: chunked",
                               "Content-Type: application/json"))  # fmt: skip
            for start in range(0, len(RECORD_BYTES), 50):
                piece = RECORD_BYTES[start : start + 50]
                writer.write(f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.01)  # the chunks arrive in separate reads
            writer.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif path == "/close":
            writer.write(_head("200 OK", "Connection: close", "Content-Type: application/json"))
            writer.write(RECORD_BYTES[:30])
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(RECORD_BYTES[30:])
            await writer.drain()
            writer.close()
            return False
        elif path == "/gzip":
            body = gzip.compress(RECORD_BYTES)
            writer.write(_head("200 OK", f"Content-Length: {len(body)}", "Content-Encoding: gzip",
                               "Content-Type: application/json") + body)  # fmt: skip
        elif path == "/continue":
            writer.write(_head("100 Continue"))
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(_head("204 No Content"))
        elif path == "/retry":
            body = b'{"detail": "busy"}'
            writer.write(_head("503 Service Unavailable", "Retry-After: 7",
                               f"Content-Length: {len(body)}") + body)  # fmt: skip
        elif path == "/reset-mid-body":
            writer.write(_head("200 OK", "Content-Length: 400") + RECORD_BYTES[:20])
            await writer.drain()
            await asyncio.sleep(0.05)
            _reset(writer)
            return False
        elif path == "/reset":
            _reset(writer)
            return False
        elif path == "/drop":
            writer.close()
            return False
        elif path == "/slow-head":
            await asyncio.sleep(2)
            writer.write(_head("204 No Content"))
        elif path == "/garbage":
            writer.write(b"SPAM 42 what\r\n\r\n")
        elif path == "/bad-length":
            writer.write(_head("200 OK", "Content-Length: abc") + b"{}")
        else:
            writer.write(_head("404 Not Found", "Content-Length: 0"))
        await writer.drain()
        return True


def start() -> Any:
    """A running :class:`AwkwardServer` (stop it with ``.stop()``)."""
    return AwkwardServer()
