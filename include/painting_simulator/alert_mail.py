"""Sending alert digests through the smtp provider's SmtpNotifier, once per digest: the DAG side.

``painting_alerts`` (its evaluate and notify tasks) and ``painting_replay`` (its gate mail)
call these; the rules themselves are plain Python in :mod:`alert_rules`. Airflow is imported
inside the functions: they run in tasks, never while a DAG file is parsed.

Idempotence (``docs/alerts.md#retries-and-idempotence``): before a digest goes out its key is
recorded as ``pending`` in the Variable ``painting_alert_state``, and as ``sent`` once the SMTP
server took it. A send that raises puts the rule's previous entry back, so the retry sends it;
a try killed between the two writes leaves ``pending``, and the retry does not send it again:
at most once, never twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from include.painting_simulator import alert_rules, settings
from include.painting_simulator.airflow_runtime import variable
from include.painting_simulator.records import utc_now

log = logging.getLogger("painting_simulator")


class MailError(RuntimeError):
    """A digest could not be sent (the message names the SMTP connection id)."""


def load_config(*, rules_required: bool = True) -> alert_rules.AlertConfig | None:
    """The checked Variable painting_alert_rules; None when it is not set (alerts are off)."""
    return alert_rules.parse_config(variable(settings.VAR_ALERT_RULES),
                                    rules_required=rules_required)  # fmt: skip


def load_state() -> alert_rules.AlertState:
    """What the alerts remember (the Variable painting_alert_state)."""
    return alert_rules.AlertState.parse(variable(settings.VAR_ALERT_STATE))


def save_state(state: alert_rules.AlertState) -> None:
    from airflow.sdk import Variable

    Variable.set(settings.VAR_ALERT_STATE, state.to_json())


def base_url() -> str:
    """Airflow's ``[api] base_url``: where the digests' links to runs point."""
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback="") or ""


def _where(conn_id: str) -> str:
    """``'smtp_alerts' (host:port)``: the connection and where it points (never its secrets)."""
    from airflow.sdk import BaseHook

    try:
        connection = BaseHook.get_connection(conn_id)
    except Exception:  # a missing connection: the notifier's own error says so
        return f"{conn_id!r}"
    return f"{conn_id!r} ({connection.host}:{connection.port})"


def send(config: alert_rules.AlertConfig, digest: Mapping[str, str], context: Any) -> None:
    """Send one digest with ``SmtpNotifier`` through the Variable's connection and recipients;
    :class:`MailError` naming the connection id when it could not be sent."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    notifier = SmtpNotifier(
        to=list(config.to),
        from_email=config.from_email,
        subject=digest["subject"],
        html_content=alert_rules.html(digest["text"]),
        smtp_conn_id=config.conn_id,
    )
    try:
        # notify(), not notifier(context): the digest is final text, not a template to render.
        notifier.notify(context)
    except Exception as exc:
        raise MailError(
            f"could not send digest {digest['key']} through SMTP connection "
            f"{_where(config.conn_id)}: {type(exc).__name__}: {exc}"
        ) from exc


def deliver(
    config: alert_rules.AlertConfig, digests: Iterable[Mapping[str, str]], context: Any
) -> list[str]:
    """Send each digest that is due (:func:`alert_rules.decide`); the keys sent. Raises
    :class:`MailError` at the first that could not be sent (those before it stay sent)."""
    sent = []
    for digest in digests:
        now = utc_now()
        state = load_state()
        reason = alert_rules.decide(state, digest, now, config.interval_minutes)
        if reason:
            log.info("not sending %s: %s", digest["key"], reason)
            continue
        previous = state.sent.get(digest["rule"])
        alert_rules.mark(state, digest, now, alert_rules.PENDING)
        save_state(state)
        try:
            send(config, digest, context)
        except MailError:
            state = load_state()
            if previous is None:
                state.sent.pop(digest["rule"], None)
            else:
                state.sent[digest["rule"]] = previous
            save_state(state)
            raise
        state = load_state()
        alert_rules.mark(state, digest, now, alert_rules.SENT)
        save_state(state)
        log.info("sent %s to %s: %s", digest["key"], ", ".join(config.to), digest["subject"])
        sent.append(digest["key"])
    return sent


def gate_mail(summary: Mapping[str, Any], failed: str, context: Any) -> None:
    """The replay's failed-gate message, through the Variable painting_alert_rules' connection
    and recipients and rate-limited the same way (rule ``replay_gate``)."""
    config = load_config(rules_required=False)
    if config is None:
        log.info("Variable %s is not set: alerts are off, no gate mail", settings.VAR_ALERT_RULES)
        return
    digest = alert_rules.gate_digest(summary, failed, settings.REPLAY_DAG_ID, base_url())
    deliver(config, [digest], context)
