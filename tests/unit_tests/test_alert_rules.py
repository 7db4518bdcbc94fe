"""The alerts' rules: the Variable, each rule at its boundary, the rate limit, the digest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from include.painting_simulator import alert_rules
from include.painting_simulator.alert_rules import AlertConfigError, AlertState
from tests.support.contract_examples import BODY

BASE = "http://airflow.example:8080"
SINCE = "2026-12-01T10:00:00.000Z"
UNTIL = "2026-12-01T11:00:00.000Z"


def config(*rules: dict[str, Any], **extra: Any) -> alert_rules.AlertConfig:
    value = {"conn_id": "smtp_alerts", "to": ["lead@example.com"], "rules": list(rules), **extra}
    parsed = alert_rules.parse_config(json.dumps(value))
    assert parsed is not None
    return parsed


BURST = {"name": "burst", "type": "anomalies_in_window", "min_anomalies": 3, "minutes": 10}
STREAK = {"name": "machine-streak", "type": "machine_in_a_row", "in_a_row": 3}


def at(minute: float) -> str:
    """A record timestamp ``minute`` minutes after SINCE (10:00)."""
    return alert_rules.spell(datetime(2026, 12, 1, 10, tzinfo=UTC) + timedelta(minutes=minute))


def row(
    minute: float,
    machine: int | None = 1,
    issue: str | None = "PAINT-EQ-VOL-HIGH",
    run_id: str = "scheduled__2026-12-01T10:00:00+00:00",
    n: int = 0,
) -> dict[str, Any]:
    body = {**BODY, "machineId": f"PAINT-{machine}"}
    record = {"timestamp": at(minute), "service_name": "painting-process-equipment",
              "run_id": run_id, "source": {"blob": "p/line.csv", "row": n},
              "original_data": body}  # fmt: skip
    if issue:
        record["prediction"] = {**body, "issue": issue}
    return record


def judge(cfg, records: dict[str, list[dict[str, Any]]], state: AlertState | None = None,
          since: str = SINCE) -> alert_rules.Evaluation:  # fmt: skip
    return alert_rules.evaluate(cfg, state or AlertState(), records, since, UNTIL, BASE)


# The Variable ---------------------------------------------------------------------------------


def test_an_unset_variable_means_alerts_are_off():
    assert alert_rules.parse_config(None) is None
    assert alert_rules.parse_config("  ") is None


def test_the_documented_example_parses():
    cfg = config(BURST, STREAK, interval_minutes=60, from_email="alerts@example.com")
    assert cfg.conn_id == "smtp_alerts"
    assert cfg.to == ("lead@example.com",)
    assert cfg.interval_minutes == 60
    assert [r.name for r in cfg.rules] == ["burst", "machine-streak"]
    assert cfg.rules[0].describe() == "at least 3 anomalies in 10 minutes"
    assert cfg.rules[1].describe() == "a machine with 3 anomalies in a row"
    assert cfg.kinds == ("anomaly", "normal", "error")  # the streak needs every kind
    assert config(BURST).kinds == ("anomaly",)
    assert config(BURST).interval_minutes == 60  # the default


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "Airflow Variable painting_alert_rules is not JSON"),
        ('["a"]', "painting_alert_rules: the value: [\"a\"] is not an object"),
        ({"to": "a@b", "rules": [BURST]}, "painting_alert_rules: conn_id: null is not"),
        ({"conn_id": "c", "rules": [BURST]}, "to: null is not an address or a list"),
        ({"conn_id": "c", "to": [], "rules": [BURST]}, "to: [] is not an address"),
        ({"conn_id": "c", "to": "a@b", "rules": []}, "rules: [] is not a non-empty list"),
        ({"conn_id": "c", "to": "a@b", "rules": [BURST], "cc": 1}, "unknown key(s) 'cc'"),
        ({"conn_id": "c", "to": "a@b", "rules": [BURST], "interval_minutes": -5},
         "interval_minutes: -5 must be greater than 0"),
        ({"conn_id": "c", "to": "a@b", "rules": [{**BURST, "type": "storm"}]},
         "rules[0] ('burst').type: unknown rule type \"storm\" (known: anomalies_in_window, "
         "machine_in_a_row)"),
        ({"conn_id": "c", "to": "a@b", "rules": [{**BURST, "min_anomalies": "5"}]},
         "rules[0] ('burst').min_anomalies: \"5\" is not a whole number"),
        ({"conn_id": "c", "to": "a@b", "rules": [{**BURST, "min_anomalies": 2.5}]},
         "rules[0] ('burst').min_anomalies: 2.5 is not a whole number"),
        ({"conn_id": "c", "to": "a@b", "rules": [{**BURST, "minutes": 0}]},
         "rules[0] ('burst').minutes: 0 must be greater than 0"),
        ({"conn_id": "c", "to": "a@b", "rules": [{**STREAK, "in_a_row": 0}]},
         "rules[0] ('machine-streak').in_a_row: 0 must be at least 1"),
        ({"conn_id": "c", "to": "a@b", "rules": [{"name": "x", "type": "machine_in_a_row"}]},
         "rules[0] ('x'): missing key 'in_a_row'"),
        ({"conn_id": "c", "to": "a@b", "rules": [{**STREAK, "minutes": 3}]},
         "rules[0] ('machine-streak'): unknown key(s) 'minutes' for type 'machine_in_a_row'"),
        ({"conn_id": "c", "to": "a@b", "rules": [BURST, BURST]},
         "rules[1] ('burst'): the name is used by another rule"),
        ({"conn_id": "c", "to": "a@b", "rules": [{**BURST, "name": "replay_gate"}]},
         "the name is reserved"),
        ({"conn_id": "c", "to": "a@b", "rules": [{"type": "machine_in_a_row"}]},
         "rules[0].name: null is not a non-empty string"),
    ],
)  # fmt: skip
def test_a_bad_variable_is_refused_naming_the_variable_and_the_key(value, message):
    raw = value if isinstance(value, str) else json.dumps(value)
    with pytest.raises(AlertConfigError) as caught:
        alert_rules.parse_config(raw)
    assert message in str(caught.value)
    assert "painting_alert_rules" in str(caught.value)


def test_the_gate_mail_needs_no_rules():
    raw = json.dumps({"conn_id": "c", "to": "a@b.example, c@d.example"})
    cfg = alert_rules.parse_config(raw, rules_required=False)
    assert cfg is not None
    assert cfg.rules == ()
    assert cfg.to == ("a@b.example, c@d.example",)


def test_a_corrupt_state_is_refused_naming_its_variable():
    assert AlertState.parse(None) == AlertState()
    with pytest.raises(AlertConfigError, match="painting_alert_state is not the alerts' state"):
        AlertState.parse("[1, 2]")
    state = AlertState("2026-12-01T10:00:00.000Z", {"PAINT-1": 2}, {})
    assert AlertState.parse(state.to_json()) == state


# Reading ------------------------------------------------------------------------------------


def test_the_read_starts_at_the_watermark_and_window_rules_look_back():
    state = AlertState(watermark=SINCE)
    assert alert_rules.read_range(config(BURST), state, UNTIL) == (SINCE, at(-10))
    assert alert_rules.read_range(config(STREAK), state, UNTIL) == (SINCE, SINCE)
    # A first run (no watermark) reads the last interval_minutes.
    first = alert_rules.read_range(config(STREAK, interval_minutes=15), AlertState(), UNTIL)
    assert first == ("2026-12-01T10:45:00.000Z", "2026-12-01T10:45:00.000Z")


# anomalies_in_window --------------------------------------------------------------------------


def test_a_window_rule_fires_at_exactly_min_anomalies_and_not_one_fewer():
    cfg = config(BURST)
    assert judge(cfg, {"anomaly": [row(1), row(2)]}).digests == []
    (digest,) = judge(cfg, {"anomaly": [row(1), row(2), row(3)]}).digests
    assert digest["rule"] == "burst"
    assert digest["key"] == f"burst@{UNTIL}"


def test_a_window_rule_counts_both_ends_of_its_minutes_and_no_further():
    cfg = config(BURST)
    assert len(judge(cfg, {"anomaly": [row(1), row(5), row(11)]}).digests) == 1  # 10 min exactly
    assert judge(cfg, {"anomaly": [row(1), row(5), row(11.001)]}).digests == []


def test_a_window_rule_sees_older_anomalies_but_fires_only_on_new_ones():
    cfg = config(BURST)
    older = [row(-8), row(-6)]  # before the watermark (SINCE): read for the look-back
    (digest,) = judge(cfg, {"anomaly": [*older, row(1)]}).digests
    assert "3 anomalies recorded" in digest["text"]
    assert judge(cfg, {"anomaly": [row(-8), row(-6), row(-1)]}).digests == []  # nothing new


def test_anomalies_logged_at_one_moment_are_all_in_the_window():
    cfg = config(BURST)
    batch = [row(2, n=n) for n in range(3)]  # one simulator run writes its batch at once
    (digest,) = judge(cfg, {"anomaly": batch}).digests
    assert "3 anomalies recorded" in digest["text"]


# machine_in_a_row -----------------------------------------------------------------------------


def readings(*kinds: str, machine: int = 1) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"anomaly": [], "normal": [], "error": []}
    for i, kind in enumerate(kinds):
        out[kind].append(row(1 + i, machine, "PAINT-EQ-MCH" if kind == "anomaly" else None, n=i))
    return out


def test_a_streak_rule_fires_at_in_a_row_and_not_one_fewer():
    cfg = config(STREAK)
    assert judge(cfg, readings("anomaly", "anomaly")).digests == []
    assert len(judge(cfg, readings("anomaly", "anomaly", "anomaly")).digests) == 1


def test_a_normal_or_an_error_between_breaks_the_streak():
    cfg = config(STREAK)
    assert judge(cfg, readings("anomaly", "anomaly", "normal", "anomaly")).digests == []
    assert judge(cfg, readings("anomaly", "error", "anomaly", "anomaly")).digests == []
    found = judge(cfg, readings("anomaly", "normal", "anomaly", "anomaly", "anomaly"))
    assert len(found.digests) == 1
    assert "3 anomalies" in found.digests[0]["text"]


def test_streaks_are_per_machine_and_go_on_from_the_watermark():
    cfg = config(STREAK)
    mixed = {"anomaly": [row(1, 1, n=0), row(2, 2, n=1), row(3, 1, n=2)], "normal": []}
    found = judge(cfg, mixed)
    assert found.digests == []  # two in a row on PAINT-1, one on PAINT-2
    assert found.streaks == {"PAINT-1": 2, "PAINT-2": 1}
    later = {"anomaly": [row(10, 1, n=3)], "normal": [row(11, 2, None, n=4)]}
    again = judge(cfg, later, AlertState(SINCE, found.streaks), since=at(5))
    (digest,) = again.digests
    assert "PAINT-1" in digest["subject"]
    assert "PAINT-2" not in digest["subject"]
    assert again.streaks == {"PAINT-1": 3, "PAINT-2": 0}


def test_a_runs_readings_are_in_row_order_whichever_kind_was_logged_first():
    # One run: log_anomalies stamps rows 0, 2 and 3 at minute 2, log_normals stamps row 1 at
    # minute 3. The line read A N A A: no three in a row (by timestamp it would be A A A N).
    cfg = config(STREAK)
    records = {"anomaly": [row(2, n=0), row(2, n=2), row(2, n=3)], "normal": [row(3, 1, None, n=1)]}
    found = judge(cfg, records)
    assert found.digests == []
    assert found.streaks == {"PAINT-1": 2}
    # The next run (a later first record) comes after this one, whatever its rows are.
    later = {"anomaly": [row(4, run_id="scheduled__2026-12-01T10:04:00+00:00", n=0)]}
    assert len(judge(cfg, {**records, **later, "anomaly": records["anomaly"] + later["anomaly"]}
                     ).digests) == 1  # fmt: skip


def test_an_unmappable_row_counts_for_its_machine_and_an_unreadable_file_for_none():
    raw = {**row(2, None), "error": "bad", "original_data": {"machineId": "1", "Thick": "x"}}
    assert alert_rules.machine(raw) == "PAINT-1"
    assert alert_rules.machine({**raw, "original_data": None}) is None
    cfg = config(STREAK)
    records = {
        "anomaly": [row(1, n=0), row(3, n=2), row(4, n=3)],
        "error": [{**raw, "source": {"blob": "p/line.csv", "row": 1}}],
    }
    assert judge(cfg, records).digests == []  # the error record broke PAINT-1's streak


# The digest ---------------------------------------------------------------------------------


def test_the_digest_names_machines_issue_codes_counts_and_links_to_the_runs():
    run_a, run_b = "scheduled__2026-12-01T10:00:00+00:00", "manual__2026-12-01T10:05:00+00:00"
    records = [
        row(1, 2, "PAINT-EQ-VOL-INVALID", run_a, 0),
        row(1, 4, "PAINT-EQ-VOL-INVALID", run_a, 1),
        row(2, 2, "PAINT-EQ-MCH", run_b, 2),
    ]
    (digest,) = judge(config(BURST), {"anomaly": records}).digests
    assert digest["subject"] == "[painting] burst: 3 anomalies on 2 machine(s) (PAINT-2, PAINT-4)"
    lines = digest["text"].splitlines()
    assert lines[0] == "Rule burst (anomalies_in_window): at least 3 anomalies in 10 minutes."
    assert "  PAINT-2  2" in lines
    assert "  PAINT-4  1" in lines
    assert "  PAINT-EQ-VOL-INVALID  2" in lines
    assert "  PAINT-EQ-MCH          1" in lines
    assert (
        f"  {run_b}  1 anomalies  {BASE}/dags/painting_simulator/runs/"
        "manual__2026-12-01T10%3A05%3A00%2B00%3A00"
    ) in lines
    assert f"  {run_a}  2 anomalies" in "\n".join(lines)


def test_the_html_body_escapes_and_links():
    body = alert_rules.html("a <b> & http://x.example/runs/r%3A1 end")
    assert "&lt;b&gt; &amp;" in body
    assert '<a href="http://x.example/runs/r%3A1">http://x.example/runs/r%3A1</a>' in body


def test_the_gate_digest_names_each_threshold_its_value_and_limit_and_links_the_run():
    summary = {
        "run_id": "manual__2026-12-01T10:00:00+00:00",
        "thresholds": [
            {"name": "latency_p99_ms", "limit": 5000, "value": 12.5, "passed": True},
            {"name": "error_rate", "limit": 0.01, "value": 0.032258, "passed": False},
        ],
    }
    digest = alert_rules.gate_digest(
        summary, "1 of 2 replay threshold(s) failed: x", "painting_replay", ""
    )
    assert digest["rule"] == "replay_gate"
    assert digest["key"] == "replay_gate@manual__2026-12-01T10:00:00+00:00"
    assert digest["subject"] == (
        "[painting] replay_gate: 1 of 2 threshold(s) failed in manual__2026-12-01T10:00:00+00:00"
    )
    assert "  ✗ error_rate 0.032258 > 0.01 (max)" in digest["text"]
    assert "  ✓ latency_p99_ms 12.5 <= 5000 (max)" in digest["text"]
    assert (
        "http://localhost:8080/dags/painting_replay/runs/manual__2026-12-01T10%3A00%3A00%2B00%3A00"
        in digest["text"]
    )


# Rate limit and idempotence -----------------------------------------------------------------


DIGEST = {"rule": "burst", "key": "burst@2026-12-01T11:00:00.000Z", "subject": "s", "text": "t"}


def test_one_digest_per_rule_per_interval():
    state = AlertState()
    assert alert_rules.decide(state, DIGEST, UNTIL, 60) is None
    alert_rules.mark(state, DIGEST, UNTIL, alert_rules.SENT)
    other = {**DIGEST, "key": "burst@later"}
    reason = alert_rules.decide(state, other, "2026-12-01T11:59:59.999Z", 60)
    assert reason == (
        "rate-limited: rule burst sent a digest at 2026-12-01T11:00:00.000Z; the next one not "
        "before 2026-12-01T12:00:00.000Z"
    )
    assert alert_rules.decide(state, other, "2026-12-01T12:00:00.000Z", 60) is None
    assert alert_rules.decide(state, {**other, "rule": "streak"}, UNTIL, 60) is None  # per rule


def test_the_same_digest_is_never_sent_twice_even_without_a_rate_limit():
    state = AlertState()
    alert_rules.mark(state, DIGEST, UNTIL, alert_rules.PENDING)
    assert "cut off" in alert_rules.decide(state, DIGEST, UNTIL, 0)
    alert_rules.mark(state, DIGEST, UNTIL, alert_rules.SENT)
    assert "already sent" in alert_rules.decide(state, DIGEST, UNTIL, 0)
    assert alert_rules.decide(state, {**DIGEST, "key": "burst@x"}, UNTIL, 0) is None
