"""The painting_simulator DAG run with dag.test() against real Azurite and the real model service."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

HEADER = "machineId,timeStamp,Thick,PT_jo_V_1,PT_jo_V_2,PT_jo_A_Main_1,PT_jo_TP,LineSpeed,Operator"


def csv_bytes(*rows: str) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def test_smoke(simulator):
    simulator.upload({"a.csv": csv_bytes(
        "2,2025-07-23T08:00:10,19.89,258.4,259.7,68.9,34.4,4.66,OP-01",
        "3,2025-07-23T08:00:20,19.89,400,259.7,68.9,34.4,4.66,OP-01",
    )})
    simulator.set_variable("painting_batch_size", "2")
    run = simulator.run()
    print(run.state, simulator.ledgers(), simulator.position())
    assert run.state == "success"
