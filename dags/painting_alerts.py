"""
### Painting alerts

Tells someone: whenever the simulator records anomalies (the Asset `painting_issue_logs`,
updated by its `log_anomalies` task), this DAG reads the anomalies recorded since its last
run, judges them against the rules of the Variable `painting_alert_rules` and mails one digest
per rule that passed (machines, issue codes, counts, links to the runs) through the smtp
provider's `SmtpNotifier`.

```
evaluate ► notify
```

* **evaluate** reads the rules (unset Variable: alerts are off, the run succeeds and says so;
  a bad Variable fails the run naming it and the key at fault), reads the row records logged
  after the watermark from the results store (window rules look back their `minutes`), and
  judges each rule: `anomalies_in_window` (at least `min_anomalies` in `minutes`) and
  `machine_in_a_row` (a machine with `in_a_row` anomalies in a row, all kinds considered).
* **notify** sends each digest that is due: one digest per rule per `interval_minutes`,
  never one mail per row, never the same digest twice (a retry); then it moves the watermark
  (Variable `painting_alert_state`). The connection id (`conn_id`) and the recipients (`to`)
  come from `painting_alert_rules`.

Reference: `docs/alerts.md`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pendulum

from airflow.sdk import Asset, dag, task

from include.painting_simulator import settings

log = logging.getLogger("painting_simulator")


@dag(
    dag_id=settings.ALERTS_DAG_ID,
    schedule=[Asset(name=settings.ANOMALY_LEDGER_ASSET_NAME)],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # One run at a time: each run moves the watermark the next one starts from.
    max_active_runs=1,
    doc_md=__doc__,
    tags=["painting", "alerts", "smtp"],
    default_args={
        "owner": "painting-simulator",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=5),
    },
)
def painting_alerts() -> None:
    @task(multiple_outputs=False)
    def evaluate() -> dict[str, Any]:
        """Read the rules and the records since the last run; the digests of the rules met."""
        from airflow.sdk.exceptions import AirflowFailException

        from include.painting_simulator import airflow_runtime, alert_mail, alert_rules
        from include.painting_simulator.records import utc_now

        try:
            config = alert_mail.load_config()
            state = alert_mail.load_state()
        except alert_rules.AlertConfigError as exc:
            raise AirflowFailException(str(exc)) from None  # a retry would not fix it
        if config is None:
            log.info("Variable %s is not set: alerts are off", settings.VAR_ALERT_RULES)
            return {"off": True}
        until = utc_now()
        since, read_from = alert_rules.read_range(config, state, until)
        store = airflow_runtime.results(airflow_runtime.run_config())
        records = {kind: store.read_rows(kind, read_from, until) for kind in config.kinds}
        found = alert_rules.evaluate(config, state, records, since, until, alert_mail.base_url())
        log.info(
            "%d new anomaly record(s) logged after %s up to %s in %s; rule(s) met: %s",
            found.new_anomalies, since, until, store.describe(),
            ", ".join(d["rule"] for d in found.digests) or "none",
        )  # fmt: skip
        return {"off": False, "until": until, "streaks": found.streaks, "digests": found.digests}

    @task
    def notify(found: dict[str, Any], **context: Any) -> list[str]:
        """Send the digests that are due (rate limit, once per digest); move the watermark."""
        from airflow.sdk.exceptions import AirflowFailException

        from include.painting_simulator import alert_mail, alert_rules

        if found["off"]:
            log.info("Variable %s is not set: alerts are off", settings.VAR_ALERT_RULES)
            return []
        try:
            config = alert_mail.load_config()
        except alert_rules.AlertConfigError as exc:
            raise AirflowFailException(str(exc)) from None
        if config is None:
            log.info("Variable %s was removed: alerts are off", settings.VAR_ALERT_RULES)
            return []
        for digest in found["digests"]:
            log.info("%s\n%s", digest["subject"], digest["text"])
        sent = alert_mail.deliver(config, found["digests"], context)
        state = alert_mail.load_state()
        state.watermark, state.streaks = found["until"], found["streaks"]
        alert_mail.save_state(state)
        log.info("%d digest(s) sent; the next run reads after %s", len(sent), found["until"])
        return sent

    notify(evaluate())


painting_alerts()
