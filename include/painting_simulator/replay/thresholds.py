"""A replay's release gate: the thresholds, checked before any row is sent, judged on the summary.

The limits come from the ``painting_replay`` param ``thresholds`` or, when it is not given, the
Variable ``painting_replay_thresholds`` (a param replaces the Variable as a whole). Every key is
optional; :data:`RULES` is the list of names and what each limits (``docs/replay.md#thresholds``).
:func:`limits` refuses an unknown name or a malformed limit at once, naming it;
:func:`evaluate` gives one ``{"name", "limit", "value", "passed"}`` per threshold from the
summary's own figures, and :func:`failure_message` names each that failed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from include.painting_simulator import settings
from include.painting_simulator.replay.figures import rate

MAX, MIN, RANGE = "max", "min", "range"


class ThresholdError(ValueError):
    """A thresholds object that cannot be used: an unknown name or a malformed limit."""


def _error_rate(summary: dict[str, Any]) -> float | None:
    return rate(summary["outcomes"][settings.ERROR], summary["rows"])


def _anomaly_rate(summary: dict[str, Any]) -> float | None:
    outcomes = summary["outcomes"]
    verdicts = outcomes[settings.ANOMALY] + outcomes[settings.NORMAL]
    return rate(outcomes[settings.ANOMALY], verdicts)


def _nested(*keys: str) -> Callable[[dict[str, Any]], float | None]:
    def value(summary: dict[str, Any]) -> float | None:
        node: Any = summary
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    return value


@dataclass(frozen=True)
class Rule:
    """One threshold: its bound (``max``, ``min`` or a ``[min, max]`` range), whether its limit
    is a rate (0..1), where its value comes from, and what it says when there is no value."""

    bound: str
    rate: bool
    value: Callable[[dict[str, Any]], float | None]
    no_value: str


RULES: dict[str, Rule] = {
    "latency_p95_ms": Rule(MAX, False, _nested("latency_ms", "p95"), "no row was sent"),
    "latency_p99_ms": Rule(MAX, False, _nested("latency_ms", "p99"), "no row was sent"),
    "error_rate": Rule(MAX, True, _error_rate, "no row was replayed"),
    "anomaly_rate": Rule(RANGE, True, _anomaly_rate, "no row got a verdict"),
    "throughput_rows_per_second": Rule(
        MIN, False, _nested("throughput_rows_per_second"), "no row was replayed"
    ),
    "agreement": Rule(
        MIN, True, _nested("candidate", "agreement"), "no row got a verdict from both services"
    ),
    "expected_accuracy": Rule(
        MIN,
        True,
        _nested("expected", "accuracy"),
        "no row has an expected verdict (CSV column expected_issue)",
    ),
}
# Thresholds that need a candidate model service (the param candidate_conn_id).
NEEDS_CANDIDATE = frozenset({"agreement"})


def _number(name: str, raw: Any, rate: bool) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ThresholdError(
            f"threshold {name!r}: {json.dumps(raw)} is not a number"
            + (" (leave the key out for no limit)" if raw is None else "")
        )
    if raw < 0 or (rate and raw > 1):
        raise ThresholdError(
            f"threshold {name!r}: {raw} is out of range ({'0 to 1' if rate else 'at least 0'})"
        )
    return raw


def _limit(name: str, raw: Any) -> float | list[float]:
    rule = RULES[name]
    if rule.bound != RANGE:
        return _number(name, raw, rule.rate)
    if not isinstance(raw, list) or len(raw) != 2:
        raise ThresholdError(f"threshold {name!r}: {json.dumps(raw)} is not a [min, max] pair")
    low, high = (_number(name, value, rule.rate) for value in raw)
    if low > high:
        raise ThresholdError(f"threshold {name!r}: min {low} is greater than max {high}")
    return [low, high]


def limits(raw: Any, origin: str, candidate_conn_id: str | None = None) -> dict[str, Any]:
    """The validated limits of a thresholds object (``origin`` names where it came from, for the
    error), or :class:`ThresholdError` naming the unknown threshold or the malformed limit."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ThresholdError(f"{origin}: {json.dumps(raw)[:100]} is not an object")
    unknown = sorted(set(raw) - set(RULES))
    if unknown:
        raise ThresholdError(
            f"{origin}: unknown threshold(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(RULES)})"
        )
    checked = {}
    for name in RULES:  # in the order of RULES, so reports list them the same way every time
        if name not in raw:
            continue
        try:
            checked[name] = _limit(name, raw[name])
        except ThresholdError as exc:
            raise ThresholdError(f"{origin}: {exc}") from None
        if name in NEEDS_CANDIDATE and not candidate_conn_id:
            raise ThresholdError(
                f"{origin}: threshold {name!r} needs {settings.PARAM_CANDIDATE_CONN_ID} "
                "(a candidate model service to compare with)"
            )
    return checked


def resolve(
    param: Any, variable: str | None, candidate_conn_id: str | None = None
) -> dict[str, Any]:
    """The run's limits: the param ``thresholds`` when given (it replaces the Variable as a
    whole, ``{}`` = none), else the Variable ``painting_replay_thresholds`` (JSON), else none."""
    if param is not None:
        return limits(param, f"param {settings.PARAM_THRESHOLDS}", candidate_conn_id)
    if variable is None or not str(variable).strip():
        return {}
    origin = f"Airflow Variable {settings.VAR_REPLAY_THRESHOLDS}"
    try:
        raw = json.loads(variable)
    except ValueError as exc:
        raise ThresholdError(f"{origin} is not JSON ({exc}): {str(variable)[:100]!r}") from None
    return limits(raw, origin, candidate_conn_id)


def _passes(bound: str, limit: Any, value: float | None) -> bool:
    if value is None:
        return False
    if bound == MAX:
        return value <= limit
    if bound == MIN:
        return value >= limit
    return limit[0] <= value <= limit[1]


def evaluate(checked: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One ``{"name", "limit", "value", "passed"}`` per threshold, judged on the summary's own
    figures (a threshold without a value, e.g. accuracy with no expected verdicts, fails)."""
    results = []
    for name, limit in checked.items():
        rule = RULES[name]
        value = rule.value(summary)
        results.append(
            {
                "name": name,
                "limit": limit,
                "value": value,
                "passed": _passes(rule.bound, limit, value),
            }
        )
    return results


def describe(result: dict[str, Any]) -> str:
    """One threshold as a report line: ``✓ error_rate 0.001 <= 0.01 (max)``."""
    rule, value, limit = RULES[result["name"]], result["value"], result["limit"]
    mark = "✓" if result["passed"] else "✗"
    if value is None:
        return f"{mark} {result['name']}: no value ({rule.no_value}); limit {_shown(rule, limit)}"
    if rule.bound == RANGE:
        relation = "in" if result["passed"] else "not in"
    else:
        relation = {(MAX, True): "<=", (MAX, False): ">", (MIN, True): ">=", (MIN, False): "<"}[
            (rule.bound, result["passed"])
        ]
    return f"{mark} {result['name']} {value:g} {relation} {_shown(rule, limit)}"


def _shown(rule: Rule, limit: Any) -> str:
    if rule.bound == RANGE:
        return f"[{limit[0]:g}, {limit[1]:g}]"
    return f"{limit:g} ({rule.bound})"


def failure_message(results: list[dict[str, Any]]) -> str | None:
    """Why the gate failed, naming each failed threshold; None when every threshold passed."""
    failed = [describe(result).removeprefix("✗ ") for result in results if not result["passed"]]
    if not failed:
        return None
    return f"{len(failed)} of {len(results)} replay threshold(s) failed: " + "; ".join(failed)
