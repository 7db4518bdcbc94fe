"""Example bodies from the model service's contract (docs/model-service-contract.md).

Shared by the unit tests and the fault-injection tests of the real HTTP transport.
"""

# The request body the simulator sends for one row.
BODY = {
    "machineId": "PAINT-1",
    "timeStamp": "2025-07-23T15:32:01",
    "thick": 19.9,
    "voltage": 263.0,
    "current": 72.0,
    "temper": 34.0,
    "issue": "",
    "isSolved": False,
}
# The real service's anomaly answer: the request record with ``issue`` filled in.
FLAT_RECORD = {**BODY, "issue": "PAINT-EQ-VOL-HIGH"}
BODY_FIELDS = list(BODY)
