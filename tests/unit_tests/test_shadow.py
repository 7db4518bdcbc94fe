"""Shadow mode in the simulator's call path: the candidate's verdicts, concurrency, its failures.

The transports are plain functions (``post(body) -> HttpAnswer``), as the module takes them:
the real HTTP path with two reference model services is in
tests/integration_tests/test_simulator_shadow.py.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from include.painting_simulator import shadow
from include.painting_simulator.model_client import (
    HttpAnswer,
    ModelServiceUnreachable,
    TransportError,
)

NORMAL = HttpAnswer(204, "")


def mch(body: dict[str, Any]) -> HttpAnswer:
    return HttpAnswer(200, json.dumps({**body, "issue": "PAINT-EQ-MCH"}))


def items(count: int, unmappable: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for row in range(count):
        source = {"blob": "p/a.csv", "row": row}
        if row in unmappable:
            out.append({"source": source, "raw": {"Thick": "x"}, "error": "column Thick"})
        else:
            out.append({"source": source, "body": {"machineId": f"PAINT-{row}", "thick": 1.0}})
    return out


def candidate_of(post: Any) -> Any:
    return lambda: post


def test_every_sent_row_carries_the_candidates_verdict_and_keeps_productions_outcome():
    production = lambda body: mch(body) if body["machineId"] == "PAINT-1" else NORMAL  # noqa: E731
    candidate = lambda body: mch(body) if body["machineId"] in ("PAINT-1", "PAINT-2") else NORMAL  # noqa: E731

    results = shadow.call_window(
        items(4, unmappable=(3,)), production, candidate_of(candidate), attempts=3, timeout=5
    )

    assert [r["kind"] for r in results] == ["normal", "anomaly", "normal", "error"]
    assert [r["candidate"]["kind"] for r in results[:3]] == ["normal", "anomaly", "anomaly"]
    assert results[2]["candidate"]["issue"] == "PAINT-EQ-MCH"
    assert results[2]["candidate"]["status"] == 200
    assert results[0]["candidate"]["status"] == 204
    assert set(results[0]["candidate"]) == {"kind", "issue", "status", "latency_ms"}
    assert "candidate" not in results[3]  # not sent to production, not to the candidate either
    assert "prediction" not in results[2]  # production said normal


def test_the_candidate_is_called_concurrently_not_in_series():
    # The candidate answers row 0 only once production has sent its last row: called in series
    # (production waiting for the candidate's answer) this window would never finish.
    last_sent = threading.Event()

    def production(body: dict[str, Any]) -> HttpAnswer:
        if body["machineId"] == "PAINT-4":
            last_sent.set()
        return NORMAL

    def candidate(body: dict[str, Any]) -> HttpAnswer:
        if body["machineId"] == "PAINT-0":
            assert last_sent.wait(5), "production waited for the candidate"
        return NORMAL

    began = time.monotonic()
    results = shadow.call_window(
        items(5), production, candidate_of(candidate), attempts=1, timeout=10
    )

    assert time.monotonic() - began < 5
    assert [r["candidate"]["kind"] for r in results] == ["normal"] * 5


def test_a_down_candidate_gets_one_attempt_per_row_and_never_fails_the_window():
    calls: list[str] = []

    def refused(body: dict[str, Any]) -> HttpAnswer:
        calls.append(body["machineId"])
        raise TransportError("ConnectionError on POST http://127.0.0.1:9/predict/")

    began = time.monotonic()
    results = shadow.call_window(
        items(3), lambda body: NORMAL, candidate_of(refused), attempts=3, timeout=5
    )

    assert time.monotonic() - began < 1  # no back-off (1 s, 2 s) for the candidate
    assert sorted(calls) == ["PAINT-0", "PAINT-1", "PAINT-2"]  # one attempt each
    assert [r["kind"] for r in results] == ["normal"] * 3
    for result in results:
        verdict = result["candidate"]
        assert verdict["kind"] == "error"
        assert verdict["issue"] is None
        assert verdict["status"] is None
        assert verdict["error"].startswith("model service unreachable: ConnectionError on POST")


@pytest.mark.parametrize(
    ("answer", "status", "cause"),
    [
        (HttpAnswer(200, "<html>oops</html>"), 200, "200 answer is not JSON: <html>oops</html>"),
        (HttpAnswer(503, "busy"), 503, "model service failed (503): busy"),
        (ValueError("not a transport error"), None, "candidate call failed: ValueError: not a"),
    ],
)
def test_garbage_an_error_status_or_a_crash_of_the_candidate_is_its_error(answer, status, cause):
    def candidate(body: dict[str, Any]) -> HttpAnswer:
        if isinstance(answer, Exception):
            raise answer
        return answer

    (result,) = shadow.call_window(items(1), mch, candidate_of(candidate), attempts=3, timeout=5)

    assert result["kind"] == "anomaly"
    assert result["candidate"]["kind"] == "error"
    assert result["candidate"]["status"] == status
    assert result["candidate"]["error"].startswith(cause)


def test_a_candidate_slower_than_the_timeout_adds_at_most_one_timeout_to_the_window():
    release = threading.Event()

    def stuck(body: dict[str, Any]) -> HttpAnswer:
        release.wait(10)  # as a blackholed candidate until the transport's own timeout
        return NORMAL

    began = time.monotonic()
    try:
        results = shadow.call_window(
            items(20), lambda b: NORMAL, candidate_of(stuck), attempts=1, timeout=0.3
        )
    finally:
        release.set()

    assert time.monotonic() - began < 2  # 20 rows on 8 threads: still one timeout, not 3 x 0.3 s
    assert [r["kind"] for r in results] == ["normal"] * 20
    for result in results:
        assert result["candidate"]["kind"] == "error"
        assert "candidate gave no verdict within 0.3 s" in result["candidate"]["error"]
        assert result["candidate"]["latency_ms"] >= 300


def test_production_unreachable_still_fails_the_window_for_airflows_retry():
    def refused(body: dict[str, Any]) -> HttpAnswer:
        raise TransportError("ConnectionError on POST http://127.0.0.1:9/predict/")

    with pytest.raises(ModelServiceUnreachable, match="the window will be sent again"):
        shadow.call_window(items(2), refused, candidate_of(lambda b: NORMAL), attempts=1, timeout=5)


def test_one_transport_per_candidate_thread_made_up_front():
    made: list[int] = []

    def new_post() -> Any:
        made.append(threading.get_ident())
        return lambda body: NORMAL

    shadow.call_window(items(20), lambda b: NORMAL, new_post, attempts=1, timeout=5, threads=4)
    assert made == [threading.get_ident()] * 4  # in the task's own thread, one per thread
    made.clear()
    shadow.call_window(items(2), lambda b: NORMAL, new_post, attempts=1, timeout=5, threads=4)
    assert len(made) == 2  # never more sessions than rows to send


def result(row: int, production: str, candidate: str | None) -> dict[str, Any]:
    value: dict[str, Any] = {"source": {"blob": "p/a.csv", "row": row}, "original_data": {}}
    if production in ("normal", "error"):
        value["kind"] = production
    else:
        value.update(kind="anomaly", prediction={"issue": production})
    if candidate is not None:
        kind = candidate if candidate in ("normal", "error") else "anomaly"
        value["candidate"] = {
            "kind": kind,
            "issue": candidate if kind == "anomaly" else None,
            "status": {"normal": 204, "anomaly": 200}.get(kind),
            "latency_ms": 4.0,
        }
        if kind == "error":
            value["candidate"]["error"] = "model service unreachable: ReadTimeout on POST"
    return value


def test_the_windows_agreement_and_its_log_lines():
    results = [
        result(0, "normal", "normal"),
        result(1, "PAINT-EQ-CUR-LOW", "PAINT-EQ-MCH"),
        result(2, "PAINT-EQ-MCH", "PAINT-EQ-MCH"),
        result(3, "normal", "error"),  # no verdict from the candidate: not in the agreement
        result(4, "error", None),  # not sent
    ]

    figures = shadow.agreement("cand", results)
    assert (figures["rows"], figures["errors"], figures["agreement"]) == (4, 1, round(2 / 3, 6))

    lines = shadow.describe("cand", results)
    assert lines[0] == (
        "candidate cand: agreement 66.7% on this window; 4 row(s) sent to both, "
        "1 candidate error(s), candidate p50 4.0 ms"
    )
    assert lines[1:] == [
        "  differ: p/a.csv row 1: production PAINT-EQ-CUR-LOW, candidate PAINT-EQ-MCH",
        "  candidate error (first of 1): model service unreachable: ReadTimeout on POST",
    ]
    only_errors = shadow.describe("cand", [result(0, "normal", "error")])
    assert "agreement n/a (no row got a verdict from both)" in only_errors[0]


def test_many_disagreements_are_counted_past_the_first_ten():
    results = [result(row, "PAINT-EQ-TEM-HIGH", "PAINT-EQ-MCH") for row in range(13)]
    lines = shadow.describe("cand", results)
    assert len(lines) == 1 + shadow.SHOWN_DISAGREEMENTS + 1
    assert lines[-1] == "  ... and 3 more row(s) that differ"
