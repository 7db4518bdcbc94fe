"""The replay sender's body encoding: the bytes POSTed and the ledger line, as before, once."""

from __future__ import annotations

import json

import pytest

from include.painting_simulator.ledger import json_line
from include.painting_simulator.records import EncodedBody, row_record
from include.painting_simulator.replay.sender import encode_body
from tests.support.contract_examples import BODY

BODIES = [
    BODY,
    {**BODY, "machineId": "PAINT-도장-1"},  # non-ASCII: escaped in the request, not the ledger
    {**BODY, "timeStamp": 'quote " back\\slash \n tab\t nul\x00 del\x7f'},
    {**BODY, "thick": 1e-7, "voltage": float("nan"), "current": 10**20},
]


@pytest.mark.parametrize("body", BODIES)
def test_the_request_bytes_are_json_dumps_of_the_body(body):
    encoded, payload = encode_body(body)

    assert payload == json.dumps(body).encode()
    assert encoded == body
    assert type(encoded) is EncodedBody


@pytest.mark.parametrize("kind", ["normal", "anomaly", "error"])
@pytest.mark.parametrize("body", BODIES)
def test_the_ledger_line_of_an_encoded_body_is_byte_for_byte_json_dumps_of_the_record(body, kind):
    encoded, _ = encode_body(body)
    result = {"source": {"blob": "p/ü.csv", "row": 7}, "kind": kind, "original_data": encoded,
              "attempts": 1, "expected": "PAINT-EQ-MCH", "prediction": {**body, "issue": "X"},
              "error": "model service failed (500): é", "status": 500}  # fmt: skip
    record = row_record(result, "manual__2026-12-01T20:00:00+00:00", "2026-12-01T20:00:00.000Z")

    assert json_line(record) == json.dumps(record, ensure_ascii=False)
    assert json_line(dict(record)) == json_line(record)


def test_a_stale_or_misplaced_encoded_body_is_not_trusted_blindly():
    encoded, _ = encode_body(BODY)
    record = {"original_data": encoded, "run_id": "r"}  # not the last key: encoded as a dict

    assert json_line(record) == json.dumps(record, ensure_ascii=False)
    assert json_line({"original_data": encoded}) == json.dumps({"original_data": BODY})
