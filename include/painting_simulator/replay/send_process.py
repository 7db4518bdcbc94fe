"""The replay's sending process: a shard's POSTs, apart from the process that records the rows.

It sends each chunk's bodies on an event loop of its own while the shard's process reads, maps
and records the rows.

Why a process and not a thread: threads of one process take turns on one interpreter lock, so
while the next chunk was read and the last one recorded in threads, the event loop waited and
the model service's 16 connections went idle (``docs/performance.md#what-limits-the-replay``).
Here the shard's own process reads, maps and records, and this process only sends; each has an
interpreter of its own.

:class:`SendProcess` is the shard's handle on it. The protocol, pickles over the child's stdin
and stdout (nothing on its command line, so a password in the endpoint never shows in ``ps``;
and no ``AIRFLOW*`` variable in its environment):

- the parent writes the settings once (:class:`SendSettings`), then one list per chunk, each entry
  the bytes to POST or ``None`` for an item that is not sent; it keeps the next chunk submitted
  ahead, so that the child never waits for it;
- the child sends chunk after chunk with ``concurrency`` requests in flight across their ends
  (:meth:`sender.Sender.send_chunks`) and answers each chunk, in order, with ``("ok",
  outcomes)``: one per entry, ``None`` or ``(CallResult, latency seconds, candidate verdict or
  None)``; or, and then it stops, with ``("unreached", chunk, index, CallResult)`` when the model
  service never answered and no row had an answer yet, or ``("failed", text)``.

The end of its stdin ends the child; so does the death of the shard's process
(``PR_SET_PDEATHSIG`` on Linux): a SIGKILLed worker leaves no sender behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from include.painting_simulator.replay import sender

# The directory that holds the ``include`` package: the child imports this module from it.
_ROOT = Path(__file__).resolve().parents[3]
_SECONDS_TO_STOP = 10
# The first item of each answer of the child (the protocol in the module doc).
OK, UNREACHED, FAILED = "ok", "unreached", "failed"
REPLIES = (OK, UNREACHED, FAILED)


@dataclass(frozen=True)
class SendSettings:
    """What the sending process is told once: where to POST, how many at once, how fast."""

    endpoint: sender.Endpoint
    concurrency: int
    rate: float
    candidate: sender.Endpoint | None = None


class SendProcess:
    """The sending process of one shard: :meth:`submit` chunks' payloads and take their
    :meth:`outcomes`, in order (the shard reads and records meanwhile). A context manager:
    leaving it ends the process, at once on an error (killed by its PID), else by the end of
    its stdin (killed if it has not ended within 10 s)."""

    def __init__(self, settings: SendSettings) -> None:
        # Airflow's settings (connections, keys, the metadata database) are not the child's.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env["PYTHONPATH"] = os.pathsep.join([str(_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._stdin: BinaryIO = self._process.stdin  # type: ignore[assignment]
        self._stdout: BinaryIO = self._process.stdout  # type: ignore[assignment]
        self._write(settings)

    def submit(self, payloads: list[bytes | None]) -> None:
        """Start sending one chunk (the bytes of each item, ``None`` for one not sent)."""
        self._write(payloads)

    def outcomes(self) -> list[sender.Outcome | None]:
        """The outcomes of the oldest chunk not answered yet, in its order;
        :class:`sender.Unreached` (with its chunk's number, 0 the first submitted) when the model
        service never answered and no row had an answer yet."""
        try:
            reply = pickle.load(self._stdout)
        except EOFError:
            raise self._ended(" before it answered a chunk") from None
        except Exception as exc:  # pickle's own, a UnicodeDecodeError, an IndexError, …
            raise self._unreadable(f"{type(exc).__name__}: {exc}") from None
        if not isinstance(reply, tuple) or not reply or reply[0] not in REPLIES:
            raise self._unreadable(f"a {type(reply).__name__} that is no answer")
        if reply[0] == UNREACHED:
            raise sender.Unreached(reply[2], reply[3], chunk=reply[1])
        if reply[0] == FAILED:
            raise RuntimeError(f"the replay's sending process failed: {reply[1]}")
        return reply[1]

    def _unreadable(self, what: str) -> RuntimeError:
        """The error of an answer that is not one: the pipe's bytes are out of step (seen when
        a profiler paused both processes, ``docs/troubleshooting.md``); the shard fails, the
        sending process is killed as it leaves, and Airflow's retry resumes after the last
        recorded chunk."""
        return RuntimeError(
            f"the replay's sending process (PID {self._process.pid}) sent an answer that cannot "
            f"be read ({what[:200]}); the shard will be retried"
        )

    def _write(self, message: Any) -> None:
        try:
            pickle.dump(message, self._stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._stdin.flush()
        except BrokenPipeError:
            raise self._ended() from None

    def _ended(self, when: str = "") -> RuntimeError:
        """The error of a sending process that ended (``when``: at which step), once it has."""
        code = self._process.wait()
        return RuntimeError(
            f"the replay's sending process ended (exit code {code}){when}; its error, if any, "
            "is in the log above"
        )

    def close(self, kill: bool = False) -> None:
        """End the process: at once (``kill``), or when it has sent what it was given."""
        if kill:
            self._process.kill()
        with contextlib.suppress(BrokenPipeError):
            self._stdin.close()
        try:
            self._process.wait(timeout=_SECONDS_TO_STOP)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._stdout.close()

    def __enter__(self) -> SendProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self.close(kill=kind is not None)


# --- the child -------------------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """End this process when the shard's process dies (a SIGKILLed worker leaves no sender)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above
        sys.exit(1)


async def _serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Send what comes on ``stdin`` and answer on ``stdout``: reading and writing in threads of
    their own, so that a full pipe never stops the event loop."""
    loop = asyncio.get_running_loop()
    settings: SendSettings = pickle.load(stdin)
    chunks: asyncio.Queue[list[bytes | None] | None] = asyncio.Queue()
    replies: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()

    def read() -> None:
        while True:
            try:
                message = pickle.load(stdin)
            except EOFError:
                message = None
            loop.call_soon_threadsafe(chunks.put_nowait, message)
            if message is None:
                return

    def write() -> None:
        while (reply := replies.get()) is not None:
            pickle.dump(reply, stdout, protocol=pickle.HIGHEST_PROTOCOL)
            stdout.flush()

    threading.Thread(target=read, name="read-chunks", daemon=True).start()
    writer = threading.Thread(target=write, name="write-outcomes")
    writer.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            session = await stack.enter_async_context(
                sender.session(settings.endpoint, settings.concurrency)
            )
            shadow = None
            if settings.candidate is not None:
                candidate = sender.session(settings.candidate, settings.concurrency)
                shadow = (await stack.enter_async_context(candidate), settings.candidate)
            sending = sender.Sender(
                session, settings.endpoint, settings.concurrency, settings.rate, shadow
            )
            await sending.send_chunks(chunks.get, lambda outcomes: replies.put((OK, outcomes)))
    except sender.Unreached as exc:
        replies.put((UNREACHED, exc.chunk, exc.index, exc.call))
    except Exception as exc:  # the shard's process raises it, naming it
        replies.put((FAILED, f"{type(exc).__name__}: {exc}"))
    finally:
        replies.put(None)
        writer.join()


def main(argv: list[str]) -> int:
    _die_with_parent(int(argv[0]))
    sender.run_event_loop(_serve(sys.stdin.buffer, sys.stdout.buffer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
