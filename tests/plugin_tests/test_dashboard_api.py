"""The dashboard's JSON API, served by Airflow's own api-server app, on ledgers of a real DAG run.

The app is built by Airflow's factory (``airflow.api_fastapi.app.create_app``), which loads
``plugins/`` as the api-server does; the ledgers come from ``dag.test()`` against real Azurite
and the real model service; logging in uses the auth manager's real ``/auth/token``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from include.painting_simulator.settings import LEDGER_FILES
from tests.support.dashboard import IMG_MACHINE, SCRIPT_MACHINE

pytestmark = pytest.mark.integration

RECENT = "/painting/api/anomalies/recent"
SUMMARY = "/painting/api/summary"
REPLAYS = "/painting/api/replays/recent"
SHADOW = "/painting/api/shadow"
DISAGREEMENTS = "/painting/api/shadow/disagreements"


def test_recent_anomalies_and_summary_match_the_ledgers_of_the_run(dag_run_ledgers, airflow_app):
    simulator, run = dag_run_ledgers
    client = airflow_app.client
    auth = {"Authorization": f"Bearer {airflow_app.token()}"}
    ledgers = simulator.ledgers()
    anomalies = ledgers["anomaly"]
    assert len(anomalies) == 5, "the window holds five anomalies"

    # Like the original GET /simulator/logs/recent: the newest anomaly records, as written.
    answer = client.get(RECENT, params={"limit": 10}, headers=auth)
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert page["total"] == 5
    assert page["records"] == anomalies[::-1]
    second = client.get(RECENT, params={"limit": 2, "offset": 2}, headers=auth).json()
    assert second["records"] == anomalies[::-1][2:4]
    # The markup machine ids travel as JSON strings, untouched (the page escapes them).
    machines = {r["original_data"]["machineId"] for r in page["records"]}
    assert {f"PAINT-{SCRIPT_MACHINE}", f"PAINT-{IMG_MACHINE}"} <= machines

    answer = client.get(SUMMARY, params={"range": "1h"}, headers=auth)
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    counts = {kind: len(records) for kind, records in ledgers.items()}
    assert summary["counts"] == {**counts, "total": 9}
    assert counts == {"anomaly": 5, "normal": 2, "error": 2}
    assert summary["totals"] == summary["counts"]
    assert summary["anomaly_rate"] == round(5 / 7, 4)
    issues = Counter(r["prediction"]["issue"] for r in anomalies)
    assert {i["issue"]: i["count"] for i in summary["by_issue"]} == issues
    assert [i["count"] for i in summary["by_issue"]] == sorted(issues.values(), reverse=True)
    by_machine = Counter(r["original_data"]["machineId"] for r in anomalies)
    assert {m["machine"]: m["count"] for m in summary["by_machine"]} == by_machine
    assert summary["range"]["name"] == "1h"
    assert summary["range"]["bucket_minutes"] == 1
    assert sum(b["anomaly"] for b in summary["timeline"]) == 5
    assert sum(b["normal"] + b["error"] for b in summary["timeline"]) == 4
    assert summary["skipped_lines"] == 0

    # The simulator's state from the metadata DB: the DAG (created paused) and its last run.
    sim = summary["simulator"]
    assert sim["dag_id"] == "painting_simulator"
    assert sim["status"] == "paused"
    assert sim["next_run"] is None
    assert sim["last_run"]["run_id"] == run.run_id
    assert sim["last_run"]["state"] == "success"
    assert sim["last_run"]["records"] == counts

    # The run just happened: the shortest range and "everything" hold all of it.
    for name in ("15m", "all"):
        answer = client.get(SUMMARY, params={"range": name}, headers=auth).json()
        assert answer["counts"] == {**counts, "total": 9}, name
    assert client.get(SUMMARY, params={"range": "forever"}, headers=auth).status_code == 422
    assert client.get(RECENT, params={"limit": 0}, headers=auth).status_code == 422


def test_the_index_follows_a_growing_ledger(dag_run_ledgers, airflow_app):
    """A second run's records show up in the next answer (the index reads only what is new)."""
    simulator, _ = dag_run_ledgers
    client = airflow_app.client
    auth = {"Authorization": f"Bearer {airflow_app.token()}"}
    before = client.get(SUMMARY, params={"range": "1h"}, headers=auth).json()
    simulator.run({"start_row": 0})  # the same window again: a new run, new records
    after = client.get(SUMMARY, params={"range": "1h"}, headers=auth).json()
    assert after["counts"]["anomaly"] == 2 * before["counts"]["anomaly"]
    assert after["totals"]["total"] == 2 * before["totals"]["total"]
    newest = client.get(RECENT, params={"limit": 1}, headers=auth).json()["records"][0]
    assert newest["run_id"] == simulator.runs[-1].run_id == after["simulator"]["last_run"]["run_id"]


def test_lines_that_are_not_records_are_neither_listed_nor_counted(dag_run_ledgers, airflow_app):
    """The table and ``total`` agree, so paging "Older" until ``offset + limit >= total``
    reaches the oldest record; the index counts those lines in ``skipped_lines``."""
    simulator, _ = dag_run_ledgers
    client = airflow_app.client
    auth = {"Authorization": f"Bearer {airflow_app.token()}"}
    anomalies = simulator.ledger("anomaly")
    path = simulator.output_dir / LEDGER_FILES["anomaly"]
    not_records = ['{"note": "hand-edited, no timestamp"}', '{"timestamp": "soon"}', "[1, 2]"]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n".join(not_records) + "\n")

    listed: list[dict[str, Any]] = []
    offset, limit = 0, 2
    while True:  # what the page's pager does
        page = client.get(RECENT, params={"limit": limit, "offset": offset}, headers=auth).json()
        assert page["total"] == len(anomalies)
        listed += page["records"]
        if offset + limit >= page["total"]:
            break
        offset += limit
    assert listed == anomalies[::-1]
    summary = client.get(SUMMARY, params={"range": "all"}, headers=auth).json()
    assert summary["skipped_lines"] == len(not_records)
    assert summary["totals"]["anomaly"] == len(anomalies)


def test_a_record_stamped_far_in_the_future_leaves_the_recent_counts_right(
    dag_run_ledgers, airflow_app
):
    """One line stamped 2099 (a machine with a wrong clock) must not fold the present into
    hours: the 15 min and 1 h answers and the 1 h timeline stay exact, and the record is
    counted apart as ``future`` (and in "all")."""
    from include.painting_simulator.ledger import Ledgers
    from include.painting_simulator.records import row_record

    simulator, _ = dag_run_ledgers
    client = airflow_app.client
    auth = {"Authorization": f"Bearer {airflow_app.token()}"}
    anomalies = simulator.ledger("anomaly")
    wrong_clock = {**anomalies[0], "source": {"blob": "hand-edited.csv", "row": 0}}
    late = row_record({**wrong_clock, "kind": "anomaly"}, "manual__wrong-clock",
                      "2099-01-01T00:00:00.000Z")  # fmt: skip
    Ledgers(str(simulator.output_dir)).append_once("anomaly", "manual__wrong-clock", [late])

    per_minute = Counter(r["timestamp"][:16] + "Z" for r in anomalies)
    for name in ("15m", "1h"):
        summary = client.get(SUMMARY, params={"range": name}, headers=auth).json()
        assert summary["counts"]["anomaly"] == len(anomalies), name
        assert summary["range"]["bucket_minutes"] == 1, name
        timeline = {b["start"]: b["anomaly"] for b in summary["timeline"] if b["anomaly"]}
        assert timeline == per_minute, name  # each record in its own minute, none folded
        assert summary["future"] == {"anomaly": 1, "normal": 0, "error": 0, "total": 1}
    everything = client.get(SUMMARY, params={"range": "all"}, headers=auth).json()
    assert everything["counts"]["anomaly"] == len(anomalies) + 1
    assert sum(b["anomaly"] for b in everything["timeline"]) == len(anomalies)
    assert everything["range"]["to"] < "2099"


def test_model_checks_on_ledgers_the_writers_wrote(airflow_app, tmp_path, monkeypatch):
    """Shadow mode's rows of two simulator runs, a replay with a candidate (its rows in the
    same ledgers, its report in the summary file) and a replay without: the reports table,
    the agreement over time (the simulator's rows only) and the disagreements."""
    from tests.support.model_checks import replay_summary, write_replay, write_shadow_rows

    mch, cur = "PAINT-EQ-MCH", "PAINT-EQ-CUR-LOW"
    output_dir = str(tmp_path / "painting_logs")
    monkeypatch.setenv("AIRFLOW_VAR_PAINTING_OUTPUT_DIR", output_dir)
    write_shadow_rows(output_dir, "scheduled__1", [("normal", "normal"), (cur, mch)])
    write_shadow_rows(output_dir, "scheduled__2", [(mch, mch), ("normal", "error")])
    replay_pairs = [(cur, mch), ("normal", mch), ("normal", "normal")]
    write_shadow_rows(output_dir, "manual__replay", replay_pairs)
    limits = {"agreement": 0.9}
    write_replay(output_dir, replay_summary("manual__replay", replay_pairs, limits=limits))
    write_replay(output_dir, replay_summary("manual__plain"))
    client = airflow_app.client
    auth = {"Authorization": f"Bearer {airflow_app.token()}"}

    reports = client.get(REPLAYS, params={"limit": 5}, headers=auth)
    assert reports.status_code == 200, reports.text
    answer = reports.json()
    assert answer["total"] == 2
    plain, replay = answer["reports"]  # newest first
    assert (plain["run_id"], replay["run_id"]) == ("manual__plain", "manual__replay")
    assert plain["agreement"] is None
    assert plain["thresholds"] == []
    assert plain["passed"] is True
    assert replay["agreement"] == round(101 / 103, 6)
    assert replay["thresholds"] == [
        {"name": "agreement", "limit": 0.9, "value": replay["agreement"], "passed": True}
    ]
    assert replay["accuracy"] == 1.0
    assert replay["rows"] == 103
    assert client.get(REPLAYS, params={"limit": 1}, headers=auth).json()["reports"] == [plain]

    shadow = client.get(SHADOW, params={"range": "1h"}, headers=auth).json()
    assert shadow["range"]["name"] == "1h"
    assert shadow["range"]["bucket_minutes"] == 1
    assert shadow["counts"] == {
        "compared": 3, "agreed": 2, "disagreed": 1, "candidate_errors": 1, "agreement": 0.6667,
    }  # fmt: skip
    assert shadow["replay_rows_left_out"] == 3
    assert sum(b["compared"] for b in shadow["timeline"]) == 3
    summary = client.get(SUMMARY, params={"range": "1h"}, headers=auth).json()
    assert [b["start"] for b in shadow["timeline"]] == [b["start"] for b in summary["timeline"]]

    found = client.get(DISAGREEMENTS, params={"limit": 10}, headers=auth).json()["records"]
    assert [(d["run_id"], d["production"], d["candidate"], d["row"]) for d in found] == [
        ("scheduled__1", cur, mch, 1)
    ]
    assert found[0]["machine"] == "PAINT-1"
    assert found[0]["blob"] == "painting-process-equipment/shadow.csv"
    assert client.get(SHADOW, params={"range": "forever"}, headers=auth).status_code == 422
    assert client.get(REPLAYS, params={"limit": 0}, headers=auth).status_code == 422


def test_model_checks_of_a_real_replay_with_a_candidate(
    simulator, start_model_service, airflow_app
):
    """A real painting_replay run (dag.test(), Azurite, two real model services) over rows
    100-129 of the sample, where the candidate (``--mch-threshold 3.0``) disagrees on one known
    row (114: PAINT-EQ-CUR-LOW -> PAINT-EQ-MCH): its report is in the table with the gate's
    verdict, and its rows stay out of shadow mode's figures."""
    from airflow.dag_processing.dagbag import DagBag

    from scripts import local_services
    from tests.support.connections import http_connection

    simulator.upload({"painting_sample.csv": local_services.SAMPLE_CSV.read_bytes()})
    candidate = start_model_service("--model-version", "candidate-2", "--mch-threshold", "3.0")
    conn = "AIRFLOW_CONN_PAINTING_MODEL_SERVICE_CANDIDATE"
    simulator.monkeypatch.setenv(conn, http_connection(candidate.port))
    bag = DagBag(dag_folder=str(local_services.REPO / "dags" / "painting_replay.py"))
    conf = {
        "start_row": 100, "rows": 30, "candidate_conn_id": "painting_model_service_candidate",
        "thresholds": {"agreement": 0.99, "expected_accuracy": 1},
    }  # fmt: skip
    run = bag.get_dag("painting_replay").test(run_conf=conf)
    assert run.state == "failed"  # agreement 29/30 < 0.99: the gate failed the run
    client = airflow_app.client
    auth = {"Authorization": f"Bearer {airflow_app.token()}"}

    answer = client.get(REPLAYS, headers=auth).json()
    assert answer["total"] == 1
    (report,) = answer["reports"]
    assert report["run_id"] == run.run_id
    assert report["rows"] == 30
    assert report["passed"] is False
    assert report["agreement"] == round(29 / 30, 6)
    assert report["candidate_conn_id"] == "painting_model_service_candidate"
    assert report["candidate_errors"] == 0
    assert report["accuracy"] == 1.0
    assert report["thresholds"] == [
        {"name": "agreement", "limit": 0.99, "value": round(29 / 30, 6), "passed": False},
        {"name": "expected_accuracy", "limit": 1, "value": 1.0, "passed": True},
    ]
    assert 0 < report["latency_p95_ms"] <= report["latency_p99_ms"]
    assert report["throughput_rows_per_second"] > 0

    shadow = client.get(SHADOW, params={"range": "1h"}, headers=auth).json()
    assert shadow["counts"]["compared"] == 0  # a replay is no shadow mode
    assert shadow["replay_rows_left_out"] == 30
    assert client.get(DISAGREEMENTS, headers=auth).json()["records"] == []


def test_model_checks_without_any_candidate_or_replay(airflow_app, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_PAINTING_OUTPUT_DIR", str(tmp_path / "empty"))
    client = airflow_app.client
    auth = {"Authorization": f"Bearer {airflow_app.token()}"}
    assert client.get(REPLAYS, headers=auth).json() == {"total": 0, "limit": 10, "reports": []}
    shadow = client.get(SHADOW, params={"range": "all"}, headers=auth).json()
    assert shadow["counts"]["compared"] == 0
    assert shadow["counts"]["agreement"] is None
    assert client.get(DISAGREEMENTS, headers=auth).json()["records"] == []


@pytest.mark.parametrize("path", [RECENT, SUMMARY, REPLAYS, SHADOW, DISAGREEMENTS])
def test_the_api_refuses_requests_without_a_valid_airflow_token(airflow_app, path: str):
    client = airflow_app.client
    client.cookies.clear()
    assert client.get(path).status_code == 401
    bad = client.get(path, headers={"Authorization": "Bearer not-a-jwt"})
    assert bad.status_code == 403
    # A token signed with another key is not accepted either.
    forged = _forged_token()
    assert client.get(path, headers={"Authorization": f"Bearer {forged}"}).status_code == 403
    assert client.get(path, headers={"Authorization": f"Bearer {airflow_app.token()}"}).is_success


def test_the_page_needs_the_ui_session_and_sends_others_to_the_login_page(airflow_app):
    client = airflow_app.client
    client.cookies.clear()
    answer = client.get("/painting/", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/auth/login")
    assert "next=" in answer.headers["location"]

    # The UI's session is the `_token` cookie: with it, the page and its API work.
    client.cookies.set("_token", airflow_app.token())
    try:
        page = client.get("/painting/")
        assert page.status_code == 200
        assert "Painting anomalies" in page.text
        assert client.get(SUMMARY).status_code == 200
    finally:
        client.cookies.clear()
    # The chart library is served by the plugin itself (no CDN), like the UI's own bundles.
    lib = client.get("/painting/static/vendor/chart.js-4.6.1/chart.umd.min.js")
    assert lib.status_code == 200
    assert "Chart.js v4.6.1" in lib.text[:200]


def test_the_plugin_is_registered_with_its_navigation_entry(airflow_app):
    auth = {"Authorization": f"Bearer {airflow_app.token()}"}
    plugins = airflow_app.client.get("/api/v2/plugins", headers=auth).json()["plugins"]
    plugin = next(p for p in plugins if p["name"] == "painting_dashboard")
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/painting"
    view = plugin["external_views"][0]
    assert view["name"] == "Painting anomalies"
    assert (view["href"], view["url_route"], view["destination"]) == (
        "painting/",
        "painting-anomalies",
        "nav",
    )


def _forged_token() -> Any:
    import jwt

    claims = {"sub": "admin", "role": "ADMIN", "aud": "apache-airflow", "exp": 4102444800}
    return jwt.encode(claims, "not-the-secret-key-of-this-airflow-" * 3, algorithm="HS512")
