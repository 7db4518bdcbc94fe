"""CSV rows of the painting line whose verdicts are known, and CSV blobs made of them."""

from __future__ import annotations

HEADER = "machineId,timeStamp,Thick,PT_jo_V_1,PT_jo_V_2,PT_jo_A_Main_1,PT_jo_TP,LineSpeed,Operator"

# Rows whose verdicts are known: typical readings are normal; the others break a rule of the
# service (see docs/model-service-contract.md) or cannot be mapped at all.
NORMAL_1 = "2,2025-07-23T08:00:10,19.89,258.4,259.7,68.9,34.4,4.66,OP-01"
NORMAL_2 = "3,2025-07-23T08:00:20,20.19,261.5,260.3,70.2,34.1,4.61,OP-01"
VOLTAGE_TOO_HIGH = "4,2025-07-23T08:00:30,19.90,400.0,260.1,70.0,34.0,4.60,OP-02"
TEMPERATURE_TOO_LOW = "1,2025-07-23T08:00:40,19.90,260.0,260.1,70.0,18.0,4.60,OP-02"
THICK_TOO_HIGH = "2,2025-07-23T08:00:50,30.00,260.0,260.1,70.0,34.0,4.60,OP-02"
BAD_TIMESTAMP = "3,not-a-time,19.90,260.0,260.1,70.0,34.0,4.60,OP-02"
BAD_NUMBER = "4,2025-07-23T08:01:10,19.90,260.0,260.1,seventy,34.0,4.60,OP-02"


def csv_bytes(*rows: str) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def numbered_rows(count: int, machine: int = 1) -> bytes:
    """``count`` normal rows; the minute field tells them apart in the ledgers."""
    return csv_bytes(
        *(
            f"{machine},2025-07-23T09:{i:02d}:00,19.89,258.4,259.7,68.9,34.4,4.66,OP-01"
            for i in range(count)
        )
    )
