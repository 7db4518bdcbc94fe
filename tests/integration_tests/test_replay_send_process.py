"""The replay's sending process against the real reference model service (a subprocess).

It answers every chunk in order, entry for entry; a model service that never answers fails the
shard naming the blob and row; an answer that cannot be read fails it naming the sending
process; it ends with the shard's process, killed at once on an error or when that process is
SIGKILLed; its command line and environment hold no secret. While a shard replays, the heap of
its process is frozen out of the garbage collector's passes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from include.painting_simulator import model_client, settings
from include.painting_simulator.replay import send_process, sender, shard
from scripts import local_services
from tests.support.contract_examples import BODY

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NORMAL = {**BODY, "voltage": 260.0, "current": 70.0, "thick": 19.9}  # normal for the sample
ANOMALY = {**NORMAL, "voltage": 400.0}
PASSWORD = "s3cret-not-on-the-command-line"


def endpoint(port: int, **options: object) -> sender.Endpoint:
    url = f"http://127.0.0.1:{port}{settings.PREDICT_ENDPOINT}"
    return sender.Endpoint(url=url, timeout=5, attempts=1, **options)  # type: ignore[arg-type]


def payload(body: dict) -> bytes:
    return sender.encode_body(body)[1]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting for its reaper."""
    stat = local_services.proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def test_every_chunk_is_answered_in_order_entry_for_entry(model_service):
    chunks = [
        [payload(NORMAL), None, payload(ANOMALY)],
        [None],
        [],
        [payload(NORMAL)] * 7 + [payload(ANOMALY)],
    ]
    with send_process.SendProcess(
        send_process.SendSettings(endpoint(model_service.port), concurrency=3, rate=0)
    ) as sending:
        for chunk in chunks:
            sending.submit(chunk)
        answered = [sending.outcomes() for _ in chunks]

    kinds = [[o and o[0].outcome.kind for o in outcomes] for outcomes in answered]
    assert kinds == [
        ["normal", None, "anomaly"],
        [None],
        [],
        ["normal"] * 7 + ["anomaly"],
    ]
    call, latency, verdict = answered[0][2]
    assert call.outcome.prediction["issue"]
    assert (call.attempts, call.reached) == (1, True)
    assert latency > 0
    assert verdict is None  # no candidate


def test_a_model_service_that_never_answers_fails_the_shard_naming_blob_and_row():
    port = local_services.free_port()  # nothing listens there
    items = [
        {"source": {"blob": "p/a.csv", "row": 6}, "raw": {}, "error": "row 6: bad"},
        {"source": {"blob": "p/a.csv", "row": 7}, "body": NORMAL},
    ]
    recorded: list[int] = []

    with pytest.raises(model_client.ModelServiceUnreachable) as caught:
        shard.replay_chunks(
            iter([(6, items)]),
            send_process.SendSettings(endpoint(port), concurrency=2, rate=0),
            lambda first, results: recorded.append(first),
        )

    assert "blob 'p/a.csv' row 7" in str(caught.value)
    assert "the shard will be retried" in str(caught.value)
    assert recorded == []  # nothing recorded: the position does not move


def test_the_heap_is_out_of_the_garbage_collectors_passes_while_the_shard_replays(
    model_service,
):
    """The objects there before the replay (Airflow's, in a task) are frozen while it records,
    so that its full collections do not walk them again and again; thawed after, error or not."""
    import gc

    assert gc.get_freeze_count() == 0
    items = [{"source": {"blob": "p/a.csv", "row": row}, "body": NORMAL} for row in range(3)]
    frozen_while_recording: list[int] = []
    settings_ = send_process.SendSettings(endpoint(model_service.port), concurrency=2, rate=0)

    shard.replay_chunks(
        iter([(0, items), (3, items)]),
        settings_,
        lambda first, results: frozen_while_recording.append(gc.get_freeze_count()),
    )
    assert len(frozen_while_recording) == 2
    assert min(frozen_while_recording) > 1000  # the modules' objects, at least
    assert gc.get_freeze_count() == 0

    def fail(first: int, results: list) -> None:
        raise RuntimeError("recording failed")

    with pytest.raises(RuntimeError, match="recording failed"):
        shard.replay_chunks(iter([(0, items)]), settings_, fail)
    assert gc.get_freeze_count() == 0


def test_an_error_in_the_shards_process_kills_the_sending_process_at_once(model_service):
    paced = send_process.SendSettings(endpoint(model_service.port), concurrency=1, rate=2)

    sending = send_process.SendProcess(paced)
    sending.submit([payload(NORMAL)] * 10)  # 5 s at 2 rows/s: within the 10 s to end

    with pytest.raises(RuntimeError, match="recording failed"), sending:
        raise RuntimeError("recording failed")

    assert sending._process.returncode == -signal.SIGKILL  # not left to send its 10 rows


def test_a_sending_process_that_dies_is_an_error_naming_it(model_service):
    with send_process.SendProcess(
        send_process.SendSettings(endpoint(model_service.port), concurrency=1, rate=2)
    ) as sending:
        sending.submit([payload(NORMAL)] * 100)
        os.kill(sending._process.pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match=r"sending process ended \(exit code -9\)"):
            sending.outcomes()


CHILD = """
import json, sys, time
from include.painting_simulator.replay import send_process, sender
settings = send_process.SendSettings(sender.Endpoint(**json.loads(sys.argv[1])), 1, 2.0)
sending = send_process.SendProcess(settings)
sending.submit([b'{}'])
sending.outcomes()  # the sending process is up and sending
sending.submit([b'{}'] * 100)
print(sending._process.pid, flush=True)
time.sleep(120)
"""


def test_a_sigkilled_shard_process_leaves_no_sending_process_and_no_secret_in_ps(model_service):
    """The shard's process is a real subprocess here, SIGKILLed as a worker's task would be."""
    target = endpoint(model_service.port, auth=("painting", PASSWORD))
    env = {**os.environ, "PYTHONPATH": str(REPO), "AIRFLOW_CONN_X": f"http://u:{PASSWORD}@h"}
    shard_process = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(target.__dict__)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        child = int(shard_process.stdout.readline())  # type: ignore[union-attr]
        for part in ("cmdline", "environ"):
            assert PASSWORD.encode() not in Path(f"/proc/{child}/{part}").read_bytes()
        assert alive(child)

        shard_process.kill()
        shard_process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child), f"sending process {child} outlived its shard's process"
    finally:
        shard_process.kill()
        shard_process.wait(timeout=10)
        with_child = locals().get("child")
        if with_child and alive(with_child):
            os.kill(with_child, signal.SIGKILL)


def outcomes_read_from(sending: send_process.SendProcess, garbage: bytes) -> None:
    """``sending.outcomes()`` reading ``garbage`` where the sending process's answers come."""
    read_end, write_end = os.pipe()
    os.write(write_end, garbage)
    os.close(write_end)
    real_stdout, sending._stdout = sending._stdout, os.fdopen(read_end, "rb")
    try:
        sending.outcomes()
    finally:
        sending._stdout.close()
        sending._stdout = real_stdout


@pytest.mark.parametrize(
    "garbage",
    [b"\x80\x05\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x03\x8c\xff\xfe", b"\x00\x01", b"N."],
    ids=["torn-string", "no-pickle", "no-answer"],
)
def test_an_answer_that_cannot_be_read_fails_the_shard_naming_the_sending_process(
    model_service, garbage
):
    """The pipe's bytes out of step (seen while py-spy paused both processes: it cannot be made
    to happen on demand) are stood in for by a pipe of our own holding such bytes, read where
    the sending process's answers are read. The shard fails (Airflow retries it), naming the
    sending process, and that process is killed as the shard leaves it."""
    settings_ = send_process.SendSettings(endpoint(model_service.port), concurrency=1, rate=0)
    with pytest.raises(RuntimeError) as caught, send_process.SendProcess(settings_) as sending:
        outcomes_read_from(sending, garbage)
    pid = sending._process.pid
    assert str(caught.value).startswith(
        f"the replay's sending process (PID {pid}) sent an answer that cannot be read ("
    )
    assert str(caught.value).endswith("; the shard will be retried")
    assert sending._process.returncode == -signal.SIGKILL
