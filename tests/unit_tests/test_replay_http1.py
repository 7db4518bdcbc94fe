"""The replay's HTTP/1.1 client against a raw asyncio server that answers in awkward ways.

The server (``tests/support/awkward_http.py``) is real HTTP on 127.0.0.1; it stands in for
answers no real model service gives on demand (chunked, Connection: close, resets, a slow
head, garbage). Each case goes through the replay's sender, so what is asserted is what the
replay records: the outcome, and for no complete answer the error text of the records.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator

import pytest

from include.painting_simulator import settings
from include.painting_simulator.replay import http1, sender
from tests.support import awkward_http
from tests.support.contract_examples import BODY


@pytest.fixture(scope="module")
def server() -> Iterator[awkward_http.AwkwardServer]:
    running = awkward_http.start()
    yield running
    running.stop()


def send(url: str, *, timeout: float = 5.0, limit: int = 4, **options):
    """One row through the sender's retry loop, one attempt: its CallResult."""

    async def main():
        async with http1.Client(url, limit=limit, timeout=timeout, **options) as client:
            return await sender.send_with_retries(client, sender.encode_body(BODY)[1], attempts=1)

    return asyncio.run(main())


def posts(url: str, count: int, *, limit: int, pause: float = 0.0, concurrent: bool = False):
    """``count`` answers from one client (one after the other, or all at once)."""

    async def main():
        async with http1.Client(url, limit=limit, timeout=5) as client:
            if concurrent:
                return await asyncio.gather(*(client.post(b"{}") for _ in range(count)))
            answers = []
            for _ in range(count):
                answers.append(await client.post(b"{}"))
                await asyncio.sleep(pause)
            return answers

    return asyncio.run(main())


@pytest.mark.parametrize("path", ["/anomaly", "/chunked", "/close", "/gzip"])
def test_every_framing_of_a_body_gives_the_whole_record(server, path):
    call = send(server.url(path))

    assert call.outcome.kind == settings.ANOMALY
    assert call.outcome.prediction == awkward_http.RECORD


def test_a_100_continue_head_is_skipped_and_the_204_after_it_is_the_answer(server):
    assert send(server.url("/continue")).outcome.kind == settings.NORMAL


def test_a_head_seen_before_is_not_parsed_again_and_its_headers_cannot_be_changed(
    server, monkeypatch
):
    parsed: list[bytes] = []
    parse = http1._parse_head_bytes
    monkeypatch.setattr(http1, "_parse_head_bytes", lambda head: parsed.append(head) or parse(head))
    monkeypatch.setattr(http1, "_HEADS", {})

    normal = posts(server.url("/normal"), 5, limit=1)
    anomaly = posts(server.url("/anomaly"), 3, limit=1)

    assert len(parsed) == 2  # one parse per distinct head, not per answer
    assert {a.status for a in normal} == {204}
    assert {a.status for a in anomaly} == {200}
    assert normal[0].headers == {"server": "awkward"}
    assert anomaly[2].headers["content-type"] == "application/json"
    with pytest.raises(TypeError):  # shared by every answer with that head
        normal[0].headers["server"] = "changed"  # type: ignore[index]
    for second in range(2 * http1._HEADS_KEPT):  # a new Date every second: the memory is bounded
        http1._parse_head_bytes(f"HTTP/1.1 204 No Content\r\ndate: {second}".encode())
    assert len(http1._HEADS) <= http1._HEADS_KEPT


def test_connections_are_kept_alive_and_one_answered_with_close_is_not_reused(server):
    before = server.connections
    assert {a.status for a in posts(server.url("/anomaly"), 5, limit=1)} == {200}
    assert {a.status for a in posts(server.url("/chunked"), 3, limit=1)} == {200}
    assert server.connections - before == 2  # one per client

    before = server.connections
    assert {a.status for a in posts(server.url("/close"), 3, limit=1)} == {200}
    assert server.connections - before == 3


def test_a_connection_the_server_closed_while_idle_is_not_used_again(server):
    before = server.connections
    answers = posts(server.url("/idle-close"), 3, limit=1, pause=0.3)

    assert [a.status for a in answers] == [204, 204, 204]
    assert server.connections - before == 3


def test_no_more_connections_than_the_limit(server):
    before = server.connections
    answers = posts(server.url("/chunked"), 12, limit=3, concurrent=True)

    assert len(answers) == 12
    assert {a.status for a in answers} == {200}
    assert server.connections - before == 3


def test_retry_after_of_a_retryable_answer_is_read():
    async def main(url):
        async with http1.Client(url, limit=1, timeout=5) as client:
            return await sender._post(client, b"{}")

    running = awkward_http.start()
    try:
        answer = asyncio.run(main(running.url("/retry")))
    finally:
        running.stop()
    assert (answer.status, answer.text, answer.retry_after) == (503, '{"detail": "busy"}', 7.0)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/reset-mid-body", "ClientPayloadError"),
        ("/reset", "ClientOSError"),
        ("/drop", "ServerDisconnectedError"),
        ("/garbage", "ClientResponseError"),
        ("/bad-length", "ClientResponseError"),
    ],
)
def test_no_complete_answer_is_the_error_the_replays_records_have_always_named(server, path, name):
    url = server.url(path)
    call = send(url)

    assert call.outcome.kind == settings.ERROR
    assert call.outcome.error == f"model service unreachable: {name} on POST {url}"
    assert not call.reached


def test_a_slow_head_times_out_after_the_timeout(server):
    url = server.url("/slow-head")
    began = time.monotonic()
    call = send(url, timeout=0.3)

    assert call.outcome.error == f"model service unreachable: TimeoutError on POST {url}"
    assert 0.3 <= time.monotonic() - began < 1.5


def test_a_refused_connection_is_a_connector_error():
    from scripts.local_services import free_port

    url = f"http://127.0.0.1:{free_port()}/predict/"
    call = send(url)

    assert call.outcome.error == f"model service unreachable: ClientConnectorError on POST {url}"


def test_the_request_carries_the_body_its_length_the_connections_headers_and_basic_auth(server):
    url = server.url("/normal")
    send(url, headers={"X-Api-Key": "k1", "content-type": "application/json; charset=utf-8"},
         auth=("user", "pa:ss"))  # fmt: skip

    head = server.requests[-1].decode()
    lines = head.split("\r\n")
    assert lines[0] == "POST /normal HTTP/1.1"
    fields = dict(line.split(": ", 1) for line in lines[1:] if line)
    assert fields["Host"] == f"127.0.0.1:{server.port}"
    assert fields["X-Api-Key"] == "k1"
    assert fields["content-type"] == "application/json; charset=utf-8"
    assert "Content-Type" not in fields  # the connection's header replaced the default
    assert fields["Authorization"] == "Basic " + base64.b64encode(b"user:pa:ss").decode()
    assert fields["Content-Length"] == str(len(json.dumps(BODY).encode()))


def test_a_url_that_is_not_http_is_refused():
    with pytest.raises(ValueError, match="ftp://x/"):
        http1.Client("ftp://x/", limit=1, timeout=1)
