"""The simulator's shadow mode: every window also sent to a candidate model service.

With the Variable ``painting_candidate_conn_id`` set, ``call_model_service`` sends each mapped
row's request body to the candidate as production's first try of that row starts (through
:func:`model_client.call_window`'s ``on_send``). The candidate's calls run in a small thread pool
of their own, so production's calls are neither delayed nor timed with them; each gets **one
attempt** with the run's request timeout (a down candidate costs no back-off). When production's
window is done, the calls still running get at most one more request timeout; a call not done by
then is the row's candidate error. Whatever the candidate does (down, slow, garbage) only becomes
the result's ``candidate`` verdict (:func:`records.candidate_verdict`, the replay's shape), never
the row's outcome. Docs: ``docs/shadow-mode.md``.
"""

from __future__ import annotations

import queue
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from include.painting_simulator import model_client
from include.painting_simulator.records import (
    CandidateVerdict,
    Item,
    Result,
    candidate_label,
    candidate_verdict,
    verdict_label,
)
from include.painting_simulator.replay.figures import LatencyHistogram, candidate_figures
from include.painting_simulator.settings import ERROR

Post = Callable[[dict[str, Any]], model_client.HttpAnswer]

# The candidate's calls in flight at once at the most (one HTTP session each).
CANDIDATE_THREADS = 8
# Disagreements named one by one in the task log; the rest are counted.
SHOWN_DISAGREEMENTS = 10


class Candidate:
    """The candidate's calls of one window: asked row by row, answered in their own threads."""

    def __init__(self, posts: Sequence[Post], timeout: float) -> None:
        self.timeout = timeout
        self._idle: queue.SimpleQueue[Post] = queue.SimpleQueue()  # one session per thread
        for post in posts:
            self._idle.put(post)
        self._pool = ThreadPoolExecutor(len(posts), thread_name_prefix="painting-candidate")
        self._asked: dict[int, tuple[float, Future[CandidateVerdict]]] = {}

    def ask(self, index: int, body: dict[str, Any]) -> None:
        """Send ``body`` (item ``index`` of the window) to the candidate; do not wait."""
        self._asked[index] = (time.perf_counter(), self._pool.submit(self._verdict, body))

    def _verdict(self, body: dict[str, Any]) -> CandidateVerdict:
        post = self._idle.get()
        began = time.perf_counter()
        try:
            call = model_client.send_with_retries(post, body, attempts=1)
        except Exception as exc:  # the candidate never fails the production row
            cause = f"candidate call failed: {type(exc).__name__}: {exc}"
            return candidate_verdict(None, time.perf_counter() - began, cause)
        finally:
            self._idle.put(post)
        return candidate_verdict(call, time.perf_counter() - began)

    def verdicts(self) -> dict[int, CandidateVerdict]:
        """Every asked row's verdict, waiting at most ``timeout`` seconds for the calls still
        running; one not done by then is an error verdict saying so."""
        done, _ = wait([future for _, future in self._asked.values()], timeout=self.timeout)
        late = (
            f"candidate gave no verdict within {self.timeout:g} s (the request timeout) after "
            "production's window was done"
        )
        return {
            index: future.result()
            if future in done
            else candidate_verdict(None, time.perf_counter() - asked, late)
            for index, (asked, future) in self._asked.items()
        }

    def close(self) -> None:
        """Drop the calls not started; the running ones end by their own timeout."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def call_window(
    items: list[Item],
    post: Post,
    new_candidate_post: Callable[[], Post],
    *,
    attempts: int,
    timeout: float,
    threads: int = CANDIDATE_THREADS,
) -> list[Result]:
    """:func:`model_client.call_window` with each sent row also sent to the candidate: the
    results carry ``candidate``. ``new_candidate_post()`` makes one transport (a session) per
    candidate thread, called here, in the task's own thread."""
    sent = sum("body" in item for item in items)
    if not sent:
        return model_client.call_window(items, post, attempts=attempts)
    candidate = Candidate([new_candidate_post() for _ in range(min(threads, sent))], timeout)
    try:
        results = model_client.call_window(items, post, attempts=attempts, on_send=candidate.ask)
        for index, verdict in candidate.verdicts().items():
            results[index]["candidate"] = verdict
    finally:
        candidate.close()
    return results


def agreement(conn_id: str, results: Iterable[Result]) -> dict[str, Any]:
    """The window's agreement, as the replay's summary reckons it
    (:func:`replay.figures.candidate_figures`): ``agreement``, ``rows``, ``errors``,
    ``matrix``, ``latency_ms`` over the rows sent to both."""
    matrix: Counter[tuple[str, str]] = Counter()
    latency = LatencyHistogram()
    for result in results:
        if "candidate" in result:
            matrix[(verdict_label(result), candidate_label(result["candidate"]))] += 1
            latency.add(result["candidate"]["latency_ms"] / 1000)
    return candidate_figures(conn_id, matrix, latency)


def describe(conn_id: str, results: list[Result]) -> list[str]:
    """The task log's lines on the window's agreement: one summary line, a line per row where
    the two differ (the first :data:`SHOWN_DISAGREEMENTS`) and the candidate's first error."""
    figures = agreement(conn_id, results)
    shown = figures["agreement"]
    lines = [
        f"candidate {conn_id}: agreement "
        + ("n/a (no row got a verdict from both)" if shown is None else f"{shown:.1%}")
        + f" on this window; {figures['rows']} row(s) sent to both, {figures['errors']} "
        f"candidate error(s), candidate p50 {figures['latency_ms']['p50']} ms"
    ]
    pairs = [
        (result, verdict_label(result), candidate_label(result["candidate"]))
        for result in results
        if "candidate" in result
    ]
    differ = [(r, p, c) for r, p, c in pairs if p != c and ERROR not in (p, c)]
    for result, production, candidate in differ[:SHOWN_DISAGREEMENTS]:
        source = result["source"]
        lines.append(
            f"  differ: {source['blob']} row {source['row']}: production {production}, "
            f"candidate {candidate}"
        )
    if len(differ) > SHOWN_DISAGREEMENTS:
        lines.append(f"  ... and {len(differ) - SHOWN_DISAGREEMENTS} more row(s) that differ")
    failed = [result["candidate"] for result, _, candidate in pairs if candidate == ERROR]
    if failed:
        lines.append(f"  candidate error (first of {len(failed)}): {failed[0].get('error')}")
    return lines
