"""A real SMTP server for the tests: aiosmtpd on 127.0.0.1 and a free port, and what it received.

:func:`run_smtp_server` starts it for a ``with`` block (aiosmtpd's ``Controller`` serves from a
thread of the test process) and stops it; :class:`SmtpServer` gives the connection that points
Airflow at it and the messages its handler received, as parsed e-mails.
"""

from __future__ import annotations

import email
import email.policy
import html
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from scripts import local_services

FROM_EMAIL = "painting-alerts@example.com"
ACCEPTED = "250 Message accepted for delivery"


@dataclass
class Received:
    """aiosmtpd's handler: keeps every message it accepted, with its envelope's recipients.

    ``answers``: the replies to give the next messages, in turn (e.g. ``[ACCEPTED, "451 ..."]``
    refuses the second one, as a busy server does); a 4xx or 5xx reply keeps nothing."""

    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = self.answers.pop(0) if self.answers else ACCEPTED
        if not answer.startswith("2"):
            return answer
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(message)  # type: ignore[arg-type]
        self.recipients.append(list(envelope.rcpt_tos))
        return answer


@dataclass
class SmtpServer:
    port: int
    handler: Received

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.messages

    def connection(self, **extra: Any) -> str:
        """An ``AIRFLOW_CONN_<ID>`` value (JSON) for a plain-text SMTP connection to it."""
        return smtp_connection(self.port, **extra)


def smtp_connection(port: int, *, login: str = "", password: str = "", **extra: Any) -> str:
    """An SMTP connection to 127.0.0.1:``port`` without TLS (aiosmtpd's default)."""
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "login": login,
            "password": password,
            "extra": {
                "disable_tls": True,
                "disable_ssl": True,
                "from_email": FROM_EMAIL,
                "retry_limit": 0,
                "timeout": 10,
                **extra,
            },
        }
    )


def text(message: EmailMessage) -> str:
    """A received message's HTML body as the text a reader sees (tags dropped, unescaped)."""
    body = message.get_body(preferencelist=("html", "plain"))
    assert body is not None, "the message has no body"
    return html.unescape(re.sub(r"<[^>]+>", "", body.get_content()))


@contextmanager
def run_smtp_server() -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 and a free port for the ``with`` block, then stopped."""
    from aiosmtpd.controller import Controller

    handler = Received()
    port = local_services.free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(port, handler)
    finally:
        controller.stop()
