"""The painting_alerts DAG: real simulator runs make anomalies, a real SMTP server gets the digest.

Nothing is mocked: the simulator runs with dag.test() against real Azurite and the real model
service, painting_alerts runs with dag.test() and sends through the smtp provider's
SmtpNotifier to an aiosmtpd server started by the test, whose received messages are read back.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from include.painting_simulator import settings
from scripts import local_services
from tests.support.dag_runs import alert_state, delete_alert_state, fast_retries, task_output
from tests.support.rows import (
    NORMAL_1,
    NORMAL_2,
    TEMPERATURE_TOO_LOW,
    THICK_TOO_HIGH,
    VOLTAGE_TOO_HIGH,
    csv_bytes,
)
from tests.support.smtp_server import FROM_EMAIL, smtp_connection, text

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONN_ID = "smtp_alerts"
TO = ["line-lead@example.com", "shift@example.com"]
BURST = {"name": "burst", "type": "anomalies_in_window", "min_anomalies": 3, "minutes": 10}
STREAK = {"name": "machine-streak", "type": "machine_in_a_row", "in_a_row": 2}
# Three anomalies on three machines (PAINT-4, PAINT-1, PAINT-2) between normal rows.
WINDOW = (NORMAL_1, VOLTAGE_TOO_HIGH, TEMPERATURE_TOO_LOW, THICK_TOO_HIGH, NORMAL_2)


def alerts_dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "painting_alerts.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(settings.ALERTS_DAG_ID)


def set_rules(simulator: Any, *rules: dict[str, Any], **extra: Any) -> None:
    value = {"conn_id": CONN_ID, "to": TO, "interval_minutes": 60, "rules": list(rules), **extra}
    simulator.set_variable(settings.VAR_ALERT_RULES, json.dumps(value))


@pytest.fixture
def alerts(simulator, smtp_server, monkeypatch):
    """The simulator with three anomalies per run, and an SMTP connection to the real server."""
    delete_alert_state()
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", smtp_server.connection())
    simulator.upload({"line.csv": csv_bytes(*WINDOW)})
    simulator.set_variable("painting_batch_size", str(len(WINDOW)))
    return simulator


def states(run: Any) -> dict[str, str | None]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def test_anomalies_of_real_runs_send_one_digest_and_none_again_within_the_interval(
    alerts, smtp_server, caplog, capfd
):
    set_rules(alerts, BURST)
    sim = alerts.run()
    assert sim.state == "success"
    assert len(alerts.ledger("anomaly")) == 3

    first = alerts_dag().test()

    assert first.state == "success"
    (message,) = smtp_server.messages  # one digest for three anomalies, not one mail per row
    assert message["From"] == FROM_EMAIL
    assert message["To"] == ", ".join(TO)
    assert smtp_server.handler.recipients == [TO]
    assert message["Subject"] == (
        "[painting] burst: 3 anomalies on 3 machine(s) (PAINT-1, PAINT-2, PAINT-4)"
    )
    body = text(message)
    assert "Rule burst (anomalies_in_window): at least 3 anomalies in 10 minutes." in body
    for machine in ("PAINT-1", "PAINT-2", "PAINT-4"):
        assert f"  {machine}  1" in body
    for code in ("PAINT-EQ-VOL-INVALID", "PAINT-EQ-TEM-INVALID", "PAINT-EQ-MCH"):
        assert code in body
    run_link = f"/dags/painting_simulator/runs/{urllib.parse.quote(sim.run_id, safe='')}"
    assert f"  {sim.run_id}  3 anomalies  http://" in body
    assert run_link in body
    assert 'href="http' in message.get_body(("html",)).get_content()  # the link is clickable
    state = alert_state()
    assert state["sent"]["burst"]["status"] == "sent"
    assert state["watermark"] is not None

    # The next simulator run makes three more anomalies: the burst rule passes again, but
    # one digest per rule per interval_minutes: nothing is sent.
    assert alerts.run().state == "success"
    capfd.readouterr()
    caplog.clear()
    second = alerts_dag().test()

    assert second.state == "success"
    assert len(smtp_server.messages) == 1
    out = task_output(caplog, capfd)
    assert "not sending burst@" in out
    assert "rate-limited: rule burst sent a digest at" in out
    assert alert_state()["watermark"] > state["watermark"]


def test_a_machine_with_anomalies_in_a_row_sends_its_digest(alerts, smtp_server):
    set_rules(alerts, STREAK)
    assert alerts.run().state == "success"  # one anomaly per machine: not in a row
    assert alerts_dag().test().state == "success"
    assert smtp_server.messages == []

    # The window again (the position wraps): PAINT-4's and PAINT-1's second anomaly in a row,
    # counted on from the streaks at the watermark; PAINT-2's normal row (NORMAL_1) comes
    # before its anomaly and breaks its streak.
    assert alerts.run().state == "success"
    assert alerts_dag().test().state == "success"
    (message,) = smtp_server.messages
    assert message["Subject"] == (
        "[painting] machine-streak: 2 anomalies on 2 machine(s) (PAINT-1, PAINT-4)"
    )
    assert alert_state()["streaks"] == {"PAINT-1": 2, "PAINT-2": 1, "PAINT-3": 0, "PAINT-4": 2}
    assert "a machine with 2 anomalies in a row" in text(message)


def test_a_retried_notify_sends_each_digest_once(alerts, smtp_server, caplog, capfd):
    from tests.support.smtp_server import ACCEPTED

    # Two rules pass; the server takes the first digest and refuses the second (451, as a busy
    # server does): notify fails, and its retry sends only the one that did not go out.
    set_rules(alerts, BURST, {**STREAK, "in_a_row": 1})
    smtp_server.handler.answers = [ACCEPTED, "451 Requested action aborted: try again later"]
    assert alerts.run().state == "success"

    run = fast_retries(alerts_dag()).test()

    assert run.state == "success"
    notify = run.get_task_instance("notify")
    assert notify.try_number == 2
    subjects = [m["Subject"].split(":")[0] for m in smtp_server.messages]
    assert subjects == ["[painting] burst", "[painting] machine-streak"]
    out = task_output(caplog, capfd)
    assert "through SMTP connection 'smtp_alerts' (127.0.0.1:" in out
    assert "SMTPDataError: (451, b'Requested action aborted: try again later')" in out
    assert "was already sent (a retry)" in out
    assert {rule: entry["status"] for rule, entry in alert_state()["sent"].items()} == {
        "burst": "sent",
        "machine-streak": "sent",
    }


def test_rules_that_are_not_met_send_nothing(alerts, smtp_server, caplog, capfd):
    set_rules(alerts, {**BURST, "min_anomalies": 4})
    assert alerts.run().state == "success"

    run = alerts_dag().test()

    assert run.state == "success"
    assert smtp_server.messages == []
    assert "rule(s) met: none" in task_output(caplog, capfd)


def test_without_the_variable_alerts_are_off_and_the_run_succeeds(
    alerts, smtp_server, caplog, capfd
):
    assert alerts.run().state == "success"

    run = alerts_dag().test()

    assert run.state == "success"
    assert smtp_server.messages == []
    assert "Variable painting_alert_rules is not set: alerts are off" in task_output(caplog, capfd)


def test_a_bad_variable_fails_the_run_naming_it_and_the_key(alerts, smtp_server, caplog, capfd):
    set_rules(alerts, {**BURST, "type": "storm"})

    run = alerts_dag().test()

    assert run.state == "failed"
    evaluate = run.get_task_instance("evaluate")
    assert evaluate.state == "failed"
    assert evaluate.try_number == 1  # a bad Variable is not retried
    out = task_output(caplog, capfd)
    assert (
        "Airflow Variable painting_alert_rules: rules[0] ('burst').type: unknown rule type "
        '"storm"'
    ) in out
    assert smtp_server.messages == []


def test_a_refused_smtp_connection_fails_notify_naming_the_connection_without_its_password(
    alerts, monkeypatch, caplog, capfd
):
    password = "alert-password-" + local_services.free_port().__str__()
    port = local_services.free_port()  # nothing listens there: connections are refused
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        smtp_connection(port, login="alerts", password=password),
    )
    set_rules(alerts, BURST)
    assert alerts.run().state == "success"

    run = fast_retries(alerts_dag()).test()

    assert run.state == "failed"
    assert states(run) == {"evaluate": "success", "notify": "failed"}
    out = task_output(caplog, capfd)
    assert (
        f"through SMTP connection 'smtp_alerts' (127.0.0.1:{port}): ConnectionRefusedError" in out
    )
    assert password not in out
    state = alert_state()
    # The digest is not remembered as sent: the next run sends it.
    assert "burst" not in (state or {}).get("sent", {})
    assert (state or {}).get("watermark") is None  # nor is the watermark moved
