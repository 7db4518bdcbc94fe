"""Unit tests of what the model service's answers mean, the retry policy and a window's calls.

The transport is a small scripted fake: the module takes ``post`` as a parameter precisely so
this logic can be tested without a network (the real HTTP path is in the integration tests).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from include.painting_simulator import model_client
from include.painting_simulator.model_client import (
    MAX_RETRY_AFTER_SECONDS,
    HttpAnswer,
    ModelServiceUnreachable,
    TransportError,
    call_window,
    classify,
    send_with_retries,
)
from include.painting_simulator.settings import ANOMALY, ERROR, NORMAL
from tests.support.contract_examples import BODY, FLAT_RECORD


def ok(payload: Any) -> HttpAnswer:
    return HttpAnswer(200, json.dumps(payload))


NO_CONTENT = HttpAnswer(204, "")


class ScriptedPost:
    """A fake transport answering from a script: an HttpAnswer, or an exception to raise.

    The last step repeats once the script is used up. Every body it receives is recorded.
    """

    def __init__(self, *script: HttpAnswer | Exception) -> None:
        self.script = list(script)
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> HttpAnswer:
        self.bodies.append(body)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return step


class RoutedPost:
    """A fake transport answering per machineId, so a window's rows can get different answers."""

    def __init__(self, answers: dict[str, Callable[[], HttpAnswer]]) -> None:
        self.answers = answers
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> HttpAnswer:
        self.bodies.append(body)
        return self.answers[body["machineId"]]()


class Sleeps(list[float]):
    """A recording ``sleep``: the waits are asserted, never actually slept."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def refused() -> HttpAnswer:
    raise TransportError("ConnectionError on POST http://model-service:8001/predict/")


# --- classify ------------------------------------------------------------------------------


def test_204_is_normal() -> None:
    outcome = classify(NO_CONTENT)
    assert outcome.kind == NORMAL
    assert outcome.prediction is None
    assert outcome.error is None


def test_flat_200_record_is_an_anomaly_regression_of_the_original_simulator() -> None:
    """REGRESSION: the original simulator logged every real anomaly as NORMAL.

    On HTTP 200 it only looked for a ``predictions`` list, but the model service answers an
    anomaly with a *flat* record (the request record with ``issue`` filled in). So every
    anomaly the service found was recorded as a normal row. A flat record with an issue must
    be an anomaly, with that record as the prediction.
    """
    outcome = classify(ok(FLAT_RECORD))
    assert outcome.kind == ANOMALY
    assert outcome.prediction == FLAT_RECORD


@pytest.mark.parametrize(
    "issue", ["PAINT-EQ-MCH", "PAINT-EQ-CUR-LOW", "PAINT-EQ-TEM-INVALID", "PAINT-EQ-VOL-INVALID"]
)
def test_every_issue_code_of_the_service_is_an_anomaly(issue: str) -> None:
    outcome = classify(ok({**BODY, "issue": issue}))
    assert outcome.kind == ANOMALY
    assert outcome.prediction["issue"] == issue


def test_predictions_list_with_one_record_is_an_anomaly() -> None:
    outcome = classify(ok({"filename": "x.csv", "predictions": [FLAT_RECORD]}))
    assert outcome.kind == ANOMALY
    assert outcome.prediction == FLAT_RECORD


def test_empty_predictions_list_is_normal() -> None:
    assert classify(ok({"predictions": []})).kind == NORMAL


@pytest.mark.parametrize(
    ("text", "in_error"),
    [
        ("this is not json", "not JSON: this is not json"),
        ("", "an empty body"),
        ("   \n", "an empty body"),
        (json.dumps(BODY), "no 'issue'"),  # issue "" : the service echoed without a verdict
        (json.dumps({**BODY, "issue": None}), "no 'issue'"),
        (json.dumps({"status": "ok"}), "no 'issue'"),
        ("null", "no 'issue'"),
        (json.dumps([FLAT_RECORD]), "no 'issue'"),  # a bare list is not the contract
        (json.dumps({"predictions": FLAT_RECORD}), "'predictions' is not a list"),
        (json.dumps({"predictions": None}), "'predictions' is not a list"),
        (json.dumps({"predictions": [BODY]}), "expected one prediction record"),
        (json.dumps({"predictions": [FLAT_RECORD, FLAT_RECORD]}), "expected one prediction"),
    ],
    ids=[
        "invalid-json",
        "empty-body",
        "blank-body",
        "record-with-empty-issue",
        "record-with-null-issue",
        "object-without-issue",
        "json-null",
        "bare-list",
        "predictions-not-a-list",
        "predictions-null",
        "prediction-without-issue",
        "two-predictions-for-one-row",
    ],
)
def test_a_200_that_breaks_the_contract_is_an_error_with_status_200(
    text: str, in_error: str
) -> None:
    outcome = classify(HttpAnswer(200, text))
    assert outcome.kind == ERROR
    assert outcome.status == 200
    assert in_error in outcome.error
    assert outcome.prediction is None


def test_422_is_an_error_carrying_fastapis_detail_and_the_status() -> None:
    detail = [
        {
            "type": "float_parsing",
            "loc": ["body", "voltage"],
            "msg": "Input should be a valid number",
            "input": "abc",
        }
    ]
    outcome = classify(HttpAnswer(422, json.dumps({"detail": detail})))
    assert outcome.kind == ERROR
    assert outcome.status == 422
    assert "422" in outcome.error
    assert "Input should be a valid number" in outcome.error
    assert '"voltage"' in outcome.error


def test_404_is_an_error_with_the_service_text() -> None:
    outcome = classify(HttpAnswer(404, '{"detail":"Not Found"}'))
    assert outcome.kind == ERROR
    assert outcome.status == 404
    assert "Not Found" in outcome.error


def test_500_is_an_error_with_status_500_and_a_non_json_body_quoted() -> None:
    outcome = classify(HttpAnswer(500, "Internal Server Error"))
    assert outcome.kind == ERROR
    assert outcome.status == 500
    assert outcome.error == "model service failed (500): Internal Server Error"


def test_a_huge_error_body_is_shortened() -> None:
    outcome = classify(HttpAnswer(500, "x" * 10_000))
    assert len(outcome.error) < 700


@pytest.mark.parametrize("status", [100, 201, 302])
def test_other_statuses_are_errors_not_normals(status: int) -> None:
    outcome = classify(HttpAnswer(status, ""))
    assert outcome.kind == ERROR
    assert outcome.status == status


# --- send_with_retries ---------------------------------------------------------------------


def test_an_immediate_answer_is_not_retried_and_does_not_sleep() -> None:
    post, sleeps = ScriptedPost(NO_CONTENT), Sleeps()
    call = send_with_retries(post, BODY, sleep=sleeps)
    assert call.outcome.kind == NORMAL
    assert (call.attempts, call.reached) == (1, True)
    assert post.bodies == [BODY]
    assert sleeps == []


def test_every_normal_answer_to_a_first_try_is_one_shared_result() -> None:
    """The result of nearly every row is one object (a replay pickles each chunk's results once
    between its processes: pickle writes it once); others are their own."""
    import pickle

    first, second = (send_with_retries(ScriptedPost(NO_CONTENT), BODY) for _ in range(2))
    retried = send_with_retries(ScriptedPost(HttpAnswer(500, ""), NO_CONTENT), BODY,
                                sleep=Sleeps())  # fmt: skip
    assert first is second
    assert retried is not first
    assert (retried.outcome.kind, retried.attempts) == (NORMAL, 2)
    copies = [model_client.CallResult(first.outcome, 1, reached=True) for _ in range(1000)]
    assert copies[0] == first
    assert 5 * len(pickle.dumps([first] * 1000)) < len(pickle.dumps(copies))  # then referenced


def test_transport_errors_are_retried_with_back_off_1_then_2_seconds() -> None:
    post = ScriptedPost(TransportError("refused"), TransportError("timeout"), ok(FLAT_RECORD))
    sleeps = Sleeps()
    call = send_with_retries(post, BODY, attempts=3, sleep=sleeps)
    assert call.outcome.kind == ANOMALY
    assert call.attempts == 3
    assert call.reached is True
    assert sleeps == [1.0, 2.0]
    assert len(post.bodies) == 3


def test_persistent_5xx_is_an_error_after_all_attempts() -> None:
    post, sleeps = ScriptedPost(HttpAnswer(503, "busy")), Sleeps()
    call = send_with_retries(post, BODY, attempts=3, sleep=sleeps)
    assert call.outcome.kind == ERROR
    assert call.outcome.status == 503
    assert call.attempts == 3
    assert call.reached is True  # it answered, only badly
    assert sleeps == [1.0, 2.0]  # no sleep after the last attempt
    assert len(post.bodies) == 3


def test_back_off_doubles_from_the_configured_base() -> None:
    post, sleeps = ScriptedPost(HttpAnswer(500, "")), Sleeps()
    send_with_retries(post, BODY, attempts=5, backoff_seconds=0.5, sleep=sleeps)
    assert sleeps == [0.5, 1.0, 2.0, 4.0]


def test_429_too_many_requests_is_retried() -> None:
    post, sleeps = ScriptedPost(HttpAnswer(429, "slow down"), NO_CONTENT), Sleeps()
    call = send_with_retries(post, BODY, attempts=3, sleep=sleeps)
    assert call.outcome.kind == NORMAL
    assert call.attempts == 2
    assert sleeps == [1.0]


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_4xx_is_final_and_not_retried(status: int) -> None:
    post, sleeps = ScriptedPost(HttpAnswer(status, '{"detail":"no"}'), NO_CONTENT), Sleeps()
    call = send_with_retries(post, BODY, attempts=3, sleep=sleeps)
    assert call.outcome.kind == ERROR
    assert call.outcome.status == status
    assert call.attempts == 1
    assert len(post.bodies) == 1
    assert sleeps == []


def test_a_5xx_then_success_is_the_success() -> None:
    post, sleeps = ScriptedPost(HttpAnswer(500, "model not loaded"), NO_CONTENT), Sleeps()
    call = send_with_retries(post, BODY, sleep=sleeps)
    assert call.outcome.kind == NORMAL
    assert call.attempts == 2
    assert sleeps == [1.0]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), (" 12 ", 12.0), ("Wed, 21 Oct 2026 07:28:00 GMT", None), ("-1", None), ("", None)],
)
def test_retry_after_is_read_from_either_clients_headers(value: str, seconds: float | None) -> None:
    from requests.structures import CaseInsensitiveDict

    # requests' headers keep the sender's spelling; the replay client's are lower-case.
    assert model_client.retry_after_seconds(CaseInsensitiveDict({"Retry-After": value})) == seconds
    assert model_client.retry_after_seconds({"retry-after": value}) == seconds
    assert model_client.retry_after_seconds({}) is None


def test_retry_after_longer_than_the_back_off_is_honoured() -> None:
    post = ScriptedPost(HttpAnswer(503, "", retry_after=7), HttpAnswer(503, "", retry_after=1))
    sleeps = Sleeps()
    send_with_retries(post, BODY, attempts=3, sleep=sleeps)
    # 7 > back-off 1; then Retry-After 1 < back-off 2 keeps the back-off.
    assert sleeps == [7, 2.0]


def test_retry_after_is_capped() -> None:
    post, sleeps = ScriptedPost(HttpAnswer(503, "", retry_after=3600), NO_CONTENT), Sleeps()
    send_with_retries(post, BODY, attempts=3, sleep=sleeps)
    assert sleeps == [MAX_RETRY_AFTER_SECONDS]


def test_retry_after_cap_is_the_module_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_client, "MAX_RETRY_AFTER_SECONDS", 5.0)
    post, sleeps = ScriptedPost(HttpAnswer(503, "", retry_after=60), NO_CONTENT), Sleeps()
    send_with_retries(post, BODY, attempts=2, sleep=sleeps)
    assert sleeps == [5.0]


def test_never_reaching_the_service_is_not_reached() -> None:
    post, sleeps = ScriptedPost(TransportError("Connection refused")), Sleeps()
    call = send_with_retries(post, BODY, attempts=3, sleep=sleeps)
    assert call.reached is False
    assert call.outcome.kind == ERROR
    assert call.outcome.status is None
    assert "unreachable" in call.outcome.error
    assert "Connection refused" in call.outcome.error
    assert call.attempts == 3
    assert sleeps == [1.0, 2.0]


def test_a_5xx_between_transport_errors_counts_as_reached() -> None:
    post = ScriptedPost(TransportError("a"), HttpAnswer(502, "bad gateway"), TransportError("b"))
    call = send_with_retries(post, BODY, attempts=3, sleep=Sleeps())
    assert call.reached is True
    assert call.outcome.kind == ERROR


def test_other_exceptions_are_not_swallowed_as_transport_errors() -> None:
    post = ScriptedPost(KeyError("bug in the caller"))
    with pytest.raises(KeyError):
        send_with_retries(post, BODY, sleep=Sleeps())


def test_one_attempt_means_no_retry() -> None:
    post, sleeps = ScriptedPost(HttpAnswer(500, "")), Sleeps()
    call = send_with_retries(post, BODY, attempts=1, sleep=sleeps)
    assert call.attempts == 1
    assert len(post.bodies) == 1
    assert sleeps == []


def test_zero_attempts_is_rejected() -> None:
    with pytest.raises(ValueError, match="attempts"):
        send_with_retries(ScriptedPost(NO_CONTENT), BODY, attempts=0, sleep=Sleeps())


# --- call_window ---------------------------------------------------------------------------


def _item(machine: str, blob: str = "a.csv", row: int = 0) -> dict[str, Any]:
    return {"source": {"blob": blob, "row": row}, "body": {**BODY, "machineId": machine}}


def _unmappable(blob: str = "a.csv", row: int = 0) -> dict[str, Any]:
    raw = {"machineId": "9", "timeStamp": "t", "Thick": "abc"}
    error = f"blob {blob!r} row {row}: column 'Thick': 'abc' is not a number"
    return {"source": {"blob": blob, "row": row}, "raw": raw, "error": error}


def test_window_results_keep_input_order_with_each_kind() -> None:
    post = RoutedPost(
        {
            "PAINT-A": lambda: ok(FLAT_RECORD),
            "PAINT-N": lambda: NO_CONTENT,
            "PAINT-E": lambda: HttpAnswer(422, '{"detail":[{"msg":"bad timeStamp"}]}'),
        }
    )
    items = [_item("PAINT-N", row=0), _item("PAINT-A", row=1), _item("PAINT-E", row=2)]
    results = call_window(items, post, sleep=Sleeps())
    assert [r["source"]["row"] for r in results] == [0, 1, 2]
    assert [r["kind"] for r in results] == [NORMAL, ANOMALY, ERROR]
    assert results[1]["prediction"] == FLAT_RECORD
    assert results[2]["status"] == 422
    assert "bad timeStamp" in results[2]["error"]
    for item, result in zip(items, results, strict=True):
        assert result["original_data"] == item["body"]
        assert result["attempts"] == 1
    assert "prediction" not in results[0]
    assert "error" not in results[0]


def test_unmappable_items_pass_through_as_errors_and_are_not_sent() -> None:
    post = RoutedPost({"PAINT-N": lambda: NO_CONTENT})
    bad = _unmappable(row=1)
    results = call_window([_item("PAINT-N", row=0), bad, _item("PAINT-N", row=2)], post)
    assert len(post.bodies) == 2
    assert results[1] == {
        "source": {"blob": "a.csv", "row": 1},
        "kind": ERROR,
        "original_data": bad["raw"],  # the CSV row as read, since there is no body
        "error": bad["error"],
    }


def test_each_result_carries_its_items_expectation_and_only_then() -> None:
    post = RoutedPost({"PAINT-A": lambda: ok(FLAT_RECORD), "PAINT-N": lambda: NO_CONTENT})
    items = [
        {**_item("PAINT-A", row=0), "expected": "PAINT-EQ-VOL-HIGH"},
        {**_item("PAINT-N", row=1), "expected": None},
        {**_unmappable(row=2), "expected": "PAINT-EQ-MCH"},
        _item("PAINT-N", row=3),
    ]
    results = call_window(items, post, sleep=Sleeps())
    assert [r.get("expected", "absent") for r in results] == [
        "PAINT-EQ-VOL-HIGH",
        None,
        "PAINT-EQ-MCH",
        "absent",
    ]
    assert "expected" not in post.bodies[0]  # never sent


def test_a_window_of_only_unmappable_rows_sends_nothing() -> None:
    post = ScriptedPost(TransportError("must not be called"))
    results = call_window([_unmappable(row=0), _unmappable(row=1)], post, sleep=Sleeps())
    assert post.bodies == []
    assert [r["kind"] for r in results] == [ERROR, ERROR]


def test_service_unreachable_for_the_first_sent_row_fails_the_window() -> None:
    post, sleeps = ScriptedPost(TransportError("Connection refused")), Sleeps()
    items = [_unmappable(row=4), _item("PAINT-1", blob="b.csv", row=5), _item("PAINT-1", row=6)]
    with pytest.raises(ModelServiceUnreachable) as caught:
        call_window(items, post, attempts=3, sleep=sleeps)
    message = str(caught.value)
    assert "'b.csv'" in message
    assert "row 5" in message
    assert "3 attempts" in message
    assert "Connection refused" in message
    assert len(post.bodies) == 3  # it gave up after the first sent row, not the whole window
    assert sleeps == [1.0, 2.0]


def test_unreachable_after_an_answered_row_becomes_an_error_record() -> None:
    post = RoutedPost({"PAINT-N": lambda: NO_CONTENT, "PAINT-X": refused})
    items = [_item("PAINT-N", row=0), _item("PAINT-X", row=1), _item("PAINT-N", row=2)]
    results = call_window(items, post, attempts=2, sleep=Sleeps())
    assert [r["kind"] for r in results] == [NORMAL, ERROR, NORMAL]
    assert "unreachable" in results[1]["error"]
    assert "status" not in results[1]  # there was no HTTP answer
    assert results[1]["attempts"] == 2
    assert results[1]["original_data"]["machineId"] == "PAINT-X"


def test_an_answered_error_counts_as_reaching_the_service() -> None:
    post = RoutedPost({"PAINT-E": lambda: HttpAnswer(500, "boom"), "PAINT-X": refused})
    results = call_window([_item("PAINT-E", row=0), _item("PAINT-X", row=1)], post, sleep=Sleeps())
    assert [r["kind"] for r in results] == [ERROR, ERROR]
    assert results[0]["status"] == 500
    assert results[0]["attempts"] == 3


def test_window_records_the_attempts_each_row_needed() -> None:
    flaky = iter([TransportError("reset"), NO_CONTENT])

    def flaky_once() -> HttpAnswer:
        step = next(flaky, NO_CONTENT)
        if isinstance(step, Exception):
            raise step
        return step

    post = RoutedPost({"PAINT-F": flaky_once, "PAINT-N": lambda: NO_CONTENT})
    sleeps = Sleeps()
    results = call_window([_item("PAINT-F", row=0), _item("PAINT-N", row=1)], post, sleep=sleeps)
    assert [r["attempts"] for r in results] == [2, 1]
    assert [r["kind"] for r in results] == [NORMAL, NORMAL]
    assert sleeps == [1.0]


def test_empty_window_gives_no_results() -> None:
    assert call_window([], ScriptedPost(NO_CONTENT)) == []
