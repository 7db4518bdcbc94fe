"""The alerts' rules: the Variable checked, the rules judged on row records, the digests made.

Plain Python for the ``painting_alerts`` DAG and the replay's gate mail (``docs/alerts.md``):

* :func:`parse_config` reads the Variable ``painting_alert_rules`` (JSON) into an
  :class:`AlertConfig`, or raises :class:`AlertConfigError` naming the Variable and the key at
  fault (an unknown rule type, a malformed limit...); an unset Variable means alerts are off.
* :func:`read_range` says which records a run reads: the new ones are those logged after the
  watermark (:class:`AlertState`), and window rules look back ``minutes`` before it.
* :func:`evaluate` judges every rule on those records and gives one digest per rule that
  passed (:func:`anomaly_digest`: machines, issue codes, counts, links to the runs);
  :func:`gate_digest` is the same kind of message for a replay whose thresholds failed.
* :func:`decide` is the rate limit and the idempotence: one digest per rule per interval, and
  never twice the same digest key (a retried task).
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from include.painting_simulator import settings
from include.painting_simulator.row_mapping import MACHINE_ID_PREFIX

ANOMALIES_IN_WINDOW = "anomalies_in_window"
MACHINE_IN_A_ROW = "machine_in_a_row"
# Each rule type and its limits: (key, kind of number, smallest value).
RULE_TYPES: dict[str, tuple[tuple[str, type, float], ...]] = {
    ANOMALIES_IN_WINDOW: (("min_anomalies", int, 1), ("minutes", float, 0)),
    MACHINE_IN_A_ROW: (("in_a_row", int, 1),),
}
CONFIG_KEYS = ("conn_id", "to", "from_email", "interval_minutes", "rules")
DEFAULT_INTERVAL_MINUTES = 60.0
# A digest lists at most this many runs (with links); the counts always cover every record.
MAX_RUNS_LISTED = 20
# Where a digest's links point when Airflow's [api] base_url is not set.
DEFAULT_BASE_URL = "http://localhost:8080"
# The digest key's status while its mail is being sent, and once it went out.
PENDING, SENT = "pending", "sent"


class AlertConfigError(ValueError):
    """The Variable painting_alert_rules (or painting_alert_state) cannot be used."""


@dataclass(frozen=True)
class Rule:
    """One rule of the Variable: its name, type and limits (by the type's keys)."""

    name: str
    type: str
    limits: Mapping[str, float]

    def describe(self) -> str:
        """What the rule asks, in words: ``at least 5 anomalies in 10 minutes``."""
        if self.type == ANOMALIES_IN_WINDOW:
            return (
                f"at least {self.limits['min_anomalies']:g} anomalies in "
                f"{self.limits['minutes']:g} minutes"
            )
        return f"a machine with {self.limits['in_a_row']:g} anomalies in a row"


@dataclass(frozen=True)
class AlertConfig:
    """The Variable painting_alert_rules, checked."""

    conn_id: str
    to: tuple[str, ...]
    from_email: str | None
    interval_minutes: float
    rules: tuple[Rule, ...]

    @property
    def lookback(self) -> timedelta:
        """How far before the watermark the window rules need records."""
        minutes = [r.limits["minutes"] for r in self.rules if r.type == ANOMALIES_IN_WINDOW]
        return timedelta(minutes=max(minutes, default=0))

    @property
    def kinds(self) -> tuple[str, ...]:
        """The row kinds to read: all of them when a machine_in_a_row rule needs the order."""
        if any(r.type == MACHINE_IN_A_ROW for r in self.rules):
            return settings.KINDS
        return (settings.ANOMALY,)


def _fail(where: str, message: str) -> AlertConfigError:
    return AlertConfigError(f"Airflow Variable {settings.VAR_ALERT_RULES}: {where}: {message}")


def _number(where: str, raw: Any, kind: type, minimum: float) -> float:
    """A limit: a whole number at least ``minimum`` (``int``) or a number above it (``float``)."""
    valid = isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw)
    if not valid or (kind is int and raw != int(raw)):
        what = "a whole number" if kind is int else "a number"
        raise _fail(where, f"{json.dumps(raw)} is not {what}")
    if (raw <= minimum) if kind is float else (raw < minimum):
        relation = "greater than" if kind is float else "at least"
        raise _fail(where, f"{raw} must be {relation} {minimum:g}")
    return kind(raw)


def _text(where: str, raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise _fail(where, f"{json.dumps(raw)} is not a non-empty string")
    return raw.strip()


def _rule(index: int, raw: Any, seen: set[str]) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(raw, dict):
        raise _fail(where, f"{json.dumps(raw)[:100]} is not an object")
    name = _text(f"{where}.name", raw.get("name"))
    where = f"rules[{index}] ({name!r})"
    if name in seen:
        raise _fail(where, "the name is used by another rule (each rule is rate-limited by it)")
    if name == settings.REPLAY_GATE_ALERT:
        raise _fail(where, "the name is reserved for the replay's gate mail")
    kind = raw.get("type")
    if kind not in RULE_TYPES:
        raise _fail(f"{where}.type", f"unknown rule type {json.dumps(kind)} "
                    f"(known: {', '.join(RULE_TYPES)})")  # fmt: skip
    spec = RULE_TYPES[kind]
    unknown = sorted(set(raw) - {"name", "type"} - {key for key, _, _ in spec})
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(map(repr, unknown))} for type {kind!r} "
                    f"(its keys: {', '.join(key for key, _, _ in spec)})")  # fmt: skip
    limits = {}
    for key, number, minimum in spec:
        if key not in raw:
            raise _fail(where, f"missing key {key!r} (type {kind!r} needs it)")
        limits[key] = _number(f"{where}.{key}", raw[key], number, minimum)
    seen.add(name)
    return Rule(name, kind, limits)


def parse_config(raw: str | None, *, rules_required: bool = True) -> AlertConfig | None:
    """The checked Variable painting_alert_rules; None when it is not set (alerts are off).

    ``rules_required=False`` (the replay's gate mail) accepts a Variable without rules: it
    needs only the connection, the recipients and the interval."""
    if raw is None or not str(raw).strip():
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise AlertConfigError(
            f"Airflow Variable {settings.VAR_ALERT_RULES} is not JSON ({exc}): {str(raw)[:100]!r}"
        ) from None
    if not isinstance(value, dict):
        raise _fail("the value", f"{json.dumps(value)[:100]} is not an object")
    unknown = sorted(set(value) - set(CONFIG_KEYS))
    if unknown:
        raise _fail("the value", f"unknown key(s) {', '.join(map(repr, unknown))} "
                    f"(known: {', '.join(CONFIG_KEYS)})")  # fmt: skip
    conn_id = _text("conn_id", value.get("conn_id"))
    to = value.get("to")
    recipients = [to] if isinstance(to, str) else to
    if not isinstance(recipients, list) or not recipients:
        raise _fail("to", f"{json.dumps(to)} is not an address or a list of addresses")
    addresses = tuple(_text(f"to[{i}]", address) for i, address in enumerate(recipients))
    from_email = value.get("from_email")
    if from_email is not None:
        from_email = _text("from_email", from_email)
    interval = value.get("interval_minutes", DEFAULT_INTERVAL_MINUTES)
    if interval != 0:  # 0: no rate limit
        interval = _number("interval_minutes", interval, float, 0)
    raw_rules = value.get("rules", [])
    if not isinstance(raw_rules, list) or (rules_required and not raw_rules):
        raise _fail("rules", f"{json.dumps(raw_rules)[:100]} is not a non-empty list of rules")
    seen: set[str] = set()
    rules = tuple(_rule(i, rule, seen) for i, rule in enumerate(raw_rules))
    return AlertConfig(conn_id, addresses, from_email, float(interval), rules)


@dataclass
class AlertState:
    """What the alerts remember between runs (the Variable painting_alert_state).

    ``watermark``: the ``until`` of the last run that finished (records logged after it are
    new); ``streaks``: each machine's anomalies in a row at the watermark; ``sent``: per rule,
    the last digest's ``key``, when it was decided (``at``) and its ``status``."""

    watermark: str | None = None
    streaks: dict[str, int] = field(default_factory=dict)
    sent: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> AlertState:
        """The state from the Variable's JSON (unset: nothing remembered yet)."""
        if raw is None or not str(raw).strip():
            return cls()
        try:
            value = json.loads(raw)
            return cls(value.get("watermark"), dict(value.get("streaks") or {}),
                       dict(value.get("sent") or {}))  # fmt: skip
        except (ValueError, AttributeError, TypeError):
            raise AlertConfigError(
                f"Airflow Variable {settings.VAR_ALERT_STATE} is not the alerts' state "
                f"({str(raw)[:100]!r}); delete it to start over (the next run reads the last "
                "interval_minutes)"
            ) from None

    def to_json(self) -> str:
        return json.dumps(
            {"watermark": self.watermark, "streaks": self.streaks, "sent": self.sent},
            sort_keys=True,
        )


def _time(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


def spell(moment: datetime) -> str:
    """A time spelled as records spell it (ISO-8601 UTC, milliseconds, ``Z``)."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_range(config: AlertConfig, state: AlertState, until: str) -> tuple[str, str]:
    """``(since, read_from)``: records logged after ``since`` are new (the watermark; a first
    run takes the last ``interval_minutes``, 60 when it is 0); the store is read from
    ``read_from`` so that a window rule sees the records up to ``minutes`` before the new
    ones."""
    first = timedelta(minutes=config.interval_minutes or DEFAULT_INTERVAL_MINUTES)
    since = state.watermark or spell(_time(until) - first)
    return since, spell(_time(since) - config.lookback)


def machine(record: Mapping[str, Any]) -> str | None:
    """The machine of a row record: the request body's ``machineId`` (``PAINT-<n>``); an
    unmappable row's raw CSV value gets the same prefix; None when the file was unreadable."""
    data = record.get("original_data") or {}
    value = data.get("machineId")
    if value is None or str(value).strip() == "":
        return None
    if "isSolved" in data:  # a request body: the id is already mapped
        return str(value)
    return MACHINE_ID_PREFIX + str(value).strip()


def issue(record: Mapping[str, Any]) -> str:
    """The anomaly's issue code (``anomaly`` when the model gave none)."""
    return str((record.get("prediction") or {}).get("issue") or settings.ANOMALY)


def _order(record: Mapping[str, Any]) -> tuple[str, str, int]:
    """The order of logging: by ``timestamp``, then by blob and row."""
    return record["timestamp"], record["source"]["blob"], record["source"]["row"]


def _readings_in_order(pairs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """``(kind, record)`` pairs in the order the line produced the readings: run by run (a run
    at its first logged record), and in a run by blob and row. Not by ``timestamp`` alone: each
    kind of a run is logged by its own task, so a run's normals may be stamped after its
    anomalies although their rows came first."""
    first: dict[str, str] = {}
    for _, record in pairs:
        run = record["run_id"]
        first[run] = min(first.get(run, record["timestamp"]), record["timestamp"])
    return sorted(
        pairs,
        key=lambda pair: (
            first[pair[1]["run_id"]], pair[1]["run_id"],
            pair[1]["source"]["blob"], pair[1]["source"]["row"],
        ),
    )  # fmt: skip


def _in_window(rule: Rule, anomalies: list[dict[str, Any]], since: str) -> list[dict[str, Any]]:
    """The anomalies of every ``minutes`` window (both ends included) that ends at a new
    anomaly and holds at least ``min_anomalies``; empty when none does."""
    span = timedelta(minutes=rule.limits["minutes"])
    times = [_time(r["timestamp"]) for r in anomalies]
    involved: dict[int, None] = {}
    start = 0
    ends = sorted({i for i, r in enumerate(anomalies) if r["timestamp"] > since})
    for end_index in ends:
        end = times[end_index]
        last = end_index
        while last + 1 < len(times) and times[last + 1] == end:
            last += 1  # records logged at the same moment are all in the window
        while times[start] < end - span:
            start += 1
        if last - start + 1 >= rule.limits["min_anomalies"]:
            involved.update(dict.fromkeys(range(start, last + 1)))
    return [anomalies[i] for i in sorted(involved)]


def _in_a_row(
    rule: Rule, readings: list[tuple[str, dict[str, Any]]], streaks: dict[str, int]
) -> list[dict[str, Any]]:
    """The new anomalies of every machine's run of ``in_a_row`` or more anomalies in a row
    (``streaks`` goes on from the watermark and is updated in place)."""
    current: dict[str, list[dict[str, Any]]] = {}
    involved: list[dict[str, Any]] = []
    fired: set[int] = set()
    for kind, record in readings:
        name = machine(record)
        if name is None:
            continue
        if kind != settings.ANOMALY:
            streaks[name] = 0
            current[name] = []
            continue
        streaks[name] = streaks.get(name, 0) + 1
        current.setdefault(name, []).append(record)
        if streaks[name] >= rule.limits["in_a_row"]:
            for streak_record in current[name]:
                if id(streak_record) not in fired:
                    fired.add(id(streak_record))
                    involved.append(streak_record)
    return involved


@dataclass(frozen=True)
class Evaluation:
    """What a run found: the digests of the rules that passed, and the streaks to remember."""

    digests: list[dict[str, str]]
    streaks: dict[str, int]
    new_anomalies: int


def evaluate(
    config: AlertConfig,
    state: AlertState,
    records: Mapping[str, Iterable[dict[str, Any]]],
    since: str,
    until: str,
    base_url: str,
) -> Evaluation:
    """Judge every rule on ``records`` (kind -> row records read from ``read_from``, see
    :func:`read_range`); one digest per rule that passed."""
    anomalies = sorted(records.get(settings.ANOMALY, ()), key=_order)
    new = _readings_in_order(
        [(kind, r) for kind, rows in records.items() for r in rows if r["timestamp"] > since]
    )
    streaks = dict(state.streaks)
    digests = []
    for rule in config.rules:
        if rule.type == ANOMALIES_IN_WINDOW:
            involved = _in_window(rule, anomalies, since)
        else:
            involved = _in_a_row(rule, new, streaks)
        if involved:
            digests.append(anomaly_digest(rule, involved, since, until, base_url))
    new_anomalies = sum(kind == settings.ANOMALY for kind, _ in new)
    return Evaluation(digests, streaks, new_anomalies)


def run_url(base_url: str, dag_id: str, run_id: str) -> str:
    """The Airflow UI's page of a run: ``{base_url}/dags/{dag_id}/runs/{run_id}``."""
    base = (base_url or DEFAULT_BASE_URL).rstrip("/")
    return f"{base}/dags/{dag_id}/runs/{urllib.parse.quote(run_id, safe='')}"


def _counts(title: str, counter: Counter[str]) -> list[str]:
    width = max(len(name) for name in counter)
    rows = sorted(counter.items(), key=lambda pair: (-pair[1], pair[0]))
    return [title, *(f"  {name:<{width}}  {count}" for name, count in rows)]


def anomaly_digest(
    rule: Rule, records: list[dict[str, Any]], since: str, until: str, base_url: str
) -> dict[str, str]:
    """The digest of a rule that passed: ``{"rule", "key", "subject", "text"}``."""
    machines = Counter(machine(r) or "?" for r in records)
    runs = Counter(r["run_id"] for r in records)
    first, last = min(r["timestamp"] for r in records), max(r["timestamp"] for r in records)
    subject = (
        f"[painting] {rule.name}: {len(records)} anomalies on {len(machines)} machine(s) "
        f"({', '.join(sorted(machines))})"
    )
    lines = [
        f"Rule {rule.name} ({rule.type}): {rule.describe()}.",
        f"{len(records)} anomalies recorded from {first} to {last} "
        f"(this check read records logged after {since} up to {until}).",
        "",
        *_counts("Machines", machines),
        "",
        *_counts("Issue codes", Counter(issue(r) for r in records)),
        "",
        "Runs",
    ]
    for run_id, count in sorted(runs.items())[:MAX_RUNS_LISTED]:
        url = run_url(base_url, settings.SIMULATOR_DAG_ID, run_id)
        lines.append(f"  {run_id}  {count} anomalies  {url}")
    if len(runs) > MAX_RUNS_LISTED:
        lines.append(f"  ... and {len(runs) - MAX_RUNS_LISTED} more run(s)")
    key = f"{rule.name}@{until}"
    return {"rule": rule.name, "key": key, "subject": subject, "text": "\n".join(lines)}


def gate_digest(
    summary: Mapping[str, Any], failed: str, dag_id: str, base_url: str
) -> dict[str, str]:
    """The message of a replay whose thresholds failed: each threshold with its value and limit
    (``failed`` is :func:`thresholds.failure_message`), and a link to the run."""
    from include.painting_simulator.replay.thresholds import describe

    run_id = summary["run_id"]
    results = summary.get("thresholds") or []
    failing = [r for r in results if not r["passed"]]
    subject = (
        f"[painting] {settings.REPLAY_GATE_ALERT}: {len(failing)} of {len(results)} "
        f"threshold(s) failed in {run_id}"
    )
    lines = [
        f"The replay {run_id} failed its release gate: {failed}",
        "",
        "Thresholds",
        *(f"  {describe(result)}" for result in results),
        "",
        f"Run  {run_url(base_url, dag_id, run_id)}",
    ]
    key = f"{settings.REPLAY_GATE_ALERT}@{run_id}"
    return {"rule": settings.REPLAY_GATE_ALERT, "key": key, "subject": subject,
            "text": "\n".join(lines)}  # fmt: skip


def decide(state: AlertState, digest: Mapping[str, str], now: str, interval_minutes: float
           ) -> str | None:  # fmt: skip
    """Why ``digest`` must not be sent now, or None to send it: its key was already sent (or
    its sending was cut off: at most once), or its rule sent one less than an interval ago."""
    entry = state.sent.get(digest["rule"])
    if not entry:
        return None
    if entry.get("key") == digest["key"]:
        if entry.get("status") == SENT:
            return f"digest {digest['key']} was already sent (a retry)"
        return (
            f"digest {digest['key']} was being sent when an earlier try was cut off; not "
            "sent again (at most once)"
        )
    next_at = _time(entry["at"]) + timedelta(minutes=interval_minutes)
    if _time(now) < next_at:
        return (
            f"rate-limited: rule {digest['rule']} sent a digest at {entry['at']}; the next one "
            f"not before {spell(next_at)}"
        )
    return None


def mark(state: AlertState, digest: Mapping[str, str], now: str, status: str) -> None:
    """Remember that ``digest`` is being sent (``PENDING``) or was sent (``SENT``)."""
    state.sent[digest["rule"]] = {"key": digest["key"], "at": now, "status": status}


def html(text: str) -> str:
    """A digest's text as the HTML body the notifier sends: preformatted, links clickable."""
    import html as html_lib
    import re

    escaped = html_lib.escape(text)
    linked = re.sub(r"(https?://[^\s<]+)", r'<a href="\1">\1</a>', escaped)
    return f'<pre style="font-family: monospace">{linked}</pre>'
