"""The issue codes of the model service contract: which code names which cause.

Shared by the reference model (which answers them) and the sample generator (which writes the
code each planted anomaly should get, in the column ``expected_issue``); plain Python, so the
generator does not import the model's numpy. The codes: docs/model-service-contract.md.
"""

from __future__ import annotations

FEATURES: tuple[str, ...] = ("voltage", "current", "temper")
ISSUE_PREFIX: dict[str, str] = {
    "voltage": "PAINT-EQ-VOL",
    "current": "PAINT-EQ-CUR",
    "temper": "PAINT-EQ-TEM",
}
MACHINE_ISSUE = "PAINT-EQ-MCH"


def invalid_issue(feature: str) -> str:
    """The code of a reading out of its valid range, e.g. ``PAINT-EQ-VOL-INVALID``."""
    return f"{ISSUE_PREFIX[feature]}-INVALID"


def feature_issue(feature: str, positive: bool) -> str:
    """The code that blames a feature: ``-HIGH`` for a positive attribution, else ``-LOW``."""
    return f"{ISSUE_PREFIX[feature]}-{'HIGH' if positive else 'LOW'}"
