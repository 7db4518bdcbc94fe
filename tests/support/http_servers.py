"""Tiny real HTTP servers on 127.0.0.1 that give the answers they are told to give.

They stand in only for answers the reference model service cannot be made to give on demand:
an unhealthy ``/health``, a ``/predict/`` that breaks the contract. The ``answering_server``
fixture starts them (a thread each) and shuts them down.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, str]


class _Handler(BaseHTTPRequestHandler):
    server: AnsweringServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, body = self.server.answers.get(
            (self.command, self.path), (404, '{"detail": "Not Found"}')
        )
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass


class AnsweringServer(ThreadingHTTPServer):
    """Answers ``{(method, path): (status, body)}`` with a JSON body; anything else: 404."""

    daemon_threads = True

    def __init__(self, answers: dict[tuple[str, str], Answer]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers = answers
