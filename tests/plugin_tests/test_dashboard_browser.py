"""The dashboard in a real browser, inside the Airflow UI of a running api-server.

Debian's headless Chromium, driven by Selenium through ``/usr/bin/chromedriver``, logs in through
the simple auth manager's real login form, opens "Painting anomalies" from the UI (the plugin's
external view: an iframe of ``/painting/``), sees the empty state, then sees the results of a real
DAG run (``dag.test()`` against Azurite and the model service) appear without reloading the page.
Machine ids that are markup must show as text and never run. A screenshot is saved (set
``DASHBOARD_SCREENSHOT=docs/dashboard.png`` to refresh the one docs/dashboard.md shows).
A hostile ledger (values of thousands of characters, a record stamped in the future), written
the way a hand-edited ledger would be, must leave the page's layout within the window.
A results database that cannot be read makes the page show the API's 503 message.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.dashboard import (
    ADMIN,
    IMG_MACHINE,
    SCRIPT_MACHINE,
    XSS_ROWS,
    admin_password,
    chromium_available,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium + chromedriver"),
]

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1440,1500", "--hide-scrollbars",
)  # fmt: skip

# The page's layout: its width, height, every table row's width, and the cut cells.
LAYOUT = """
const page = document.documentElement;
const cut = (selector) => [...document.querySelectorAll(selector)].map((span) => {
  const box = span.getBoundingClientRect();
  return {text: span.textContent, title: span.title, elements: span.children.length,
          width: box.width, height: box.height, cut: span.scrollWidth > span.clientWidth};
});
return {
  viewport: page.clientWidth, width: page.scrollWidth, height: page.scrollHeight,
  rows: [...document.querySelectorAll("table tr")].map((tr) => tr.getBoundingClientRect().width),
  machines: cut("#machine-table td.machine .cut"),
  recent: cut("#recent-table td .cut"),
};
"""

# The issue chart's axis: its labels as drawn and the room it takes.
ISSUE_AXIS = """
const chart = Chart.getChart("issue-chart");
const y = chart.scales.y;
return {labels: y.ticks.map((t) => t.label), left: y.left, width: y.width, chart: chart.width};
"""

# Non-transparent pixels of a canvas (a chart that drew something has many).
CANVAS_INK = """
const canvas = document.getElementById(arguments[0]);
const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
let ink = 0;
for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) ink++;
return ink;
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    # Leave a JavaScript alert open instead of dismissing it, so the test can see it.
    options.unhandled_prompt_behavior = "ignore"
    # The driver path is given: Selenium Manager must not try to download one.
    # A zone other than UTC: the page must not shift times that carry no zone.
    service = Service("/usr/bin/chromedriver", env={**os.environ, "TZ": "Asia/Seoul"})
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(what: str, condition: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def log_in(driver: Any, base_url: str) -> None:
    """Through the auth manager's login form, as a person would."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/painting/")  # no session: sent to the login page
    wait_until("the login form", lambda: driver.find_elements(By.NAME, "username"))
    assert "/auth/login" in driver.current_url
    driver.find_element(By.NAME, "username").send_keys(ADMIN)
    driver.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(admin_password())
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until("the session cookie", lambda: driver.get_cookie("_token"))


def open_dashboard_in_the_ui(driver: Any, base_url: str) -> Any:
    """The UI page of the plugin's nav entry; switch into its iframe (the dashboard)."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/plugin/painting-anomalies")
    frame = wait_until(
        "the dashboard's iframe in the UI",
        lambda: driver.find_elements(By.CSS_SELECTOR, "iframe[title='Painting anomalies']"),
    )[0]
    driver.switch_to.frame(frame)
    wait_until(
        "the dashboard's first data",
        lambda: driver.execute_script("return document.body.dataset.loaded === 'true'"),
    )
    return frame


def no_alert(driver: Any) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        return True
    pytest.fail(f"a JavaScript alert opened: {text!r}")


def test_dashboard_shows_a_real_run_in_the_airflow_ui_and_escapes_markup(
    simulator, api_server, browser, logs_dir: Path
):
    from selenium.webdriver.common.by import By

    from tests.support import rows

    driver, base_url = browser, api_server.base_url
    log_in(driver, base_url)
    open_dashboard_in_the_ui(driver, base_url)

    # Nothing recorded yet: the empty state, and an empty table.
    assert driver.find_element(By.ID, "empty").is_displayed()
    assert driver.execute_script("return document.body.dataset.empty") == "true"
    table = driver.find_element(By.ID, "recent-table")
    assert table.find_element(By.CSS_SELECTOR, "tbody").text == "No anomalies recorded yet."

    # A real run of the DAG while the page is open.
    window = [rows.NORMAL_1, rows.VOLTAGE_TOO_HIGH, rows.THICK_TOO_HIGH, *XSS_ROWS]
    simulator.upload({"line.csv": rows.csv_bytes(*window)})
    simulator.set_variable("painting_batch_size", str(len(window)))
    run = simulator.run()
    assert run.state == "success"
    anomalies = simulator.ledger("anomaly")
    assert len(anomalies) == 4

    # The page refreshes itself (no reload here): the run's anomalies appear.
    def recent_rows() -> list[Any]:
        found = table.find_elements(By.CSS_SELECTOR, "tbody tr td.machine")
        return found if len(found) == len(anomalies) else []

    cells = wait_until("the run's anomalies in the table", recent_rows, timeout=60)
    newest_first = [r["original_data"]["machineId"] for r in reversed(anomalies)]
    assert [c.text for c in cells] == newest_first
    assert not driver.find_element(By.ID, "empty").is_displayed()
    first = table.find_elements(By.CSS_SELECTOR, "tbody tr")[0].find_elements(By.TAG_NAME, "td")
    newest = anomalies[-1]
    assert [td.text for td in first[2:5]] == [
        newest["original_data"]["machineId"],
        newest["prediction"]["issue"],
        f"{newest['original_data']['thick']:.2f}",
    ]

    # The markup machine ids are text: shown literally, no element made of them, never run.
    assert f"PAINT-{SCRIPT_MACHINE}" in [c.text for c in cells]
    assert f"PAINT-{IMG_MACHINE}" in [c.text for c in cells]
    machine_table = driver.find_element(By.ID, "machine-table").text
    assert f"PAINT-{SCRIPT_MACHINE}" in machine_table
    injected = driver.execute_script(
        "return document.querySelectorAll('table script, table img').length"
    )
    assert injected == 0
    assert driver.execute_script("return window.__xss === undefined")
    assert no_alert(driver)

    # Both charts drew: the canvases hold pixels, and the charts hold the run's numbers.
    for canvas in ("rate-chart", "issue-chart"):
        assert driver.execute_script(CANVAS_INK, canvas) > 500, f"{canvas} is blank"
    issue_labels = driver.execute_script("return Chart.getChart('issue-chart').data.labels")
    assert sorted(issue_labels) == sorted({r["prediction"]["issue"] for r in anomalies})
    assert driver.find_element(By.ID, "count-anomaly").text == "4"
    assert driver.find_element(By.ID, "count-normal").text == "1"
    assert driver.find_element(By.ID, "sim-last-run").text.startswith(run.run_id)
    # The run's records are written before the run ends: a refresh in between shows it still
    # running, the next one (15 s later) its outcome.
    outcome = driver.find_element(By.ID, "sim-last-outcome")
    wait_until("the run's outcome", lambda: outcome.text.startswith("success"), timeout=40)

    # The chart library came from the plugin (no other origin was asked for anything).
    origins = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
    )
    assert set(origins) == {base_url}

    driver.switch_to.default_content()
    shot = logs_dir / "dashboard.png"
    driver.save_screenshot(str(shot))
    if target := os.environ.get("DASHBOARD_SCREENSHOT"):
        shutil.copyfile(shot, target)

    # Paging through the table: 2 rows a page (an extra choice added to the page-size menu).
    driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe"))
    driver.execute_script(
        "const s = document.getElementById('page-size'); s.add(new Option('2', '2'));"
        "s.value = '2'; s.dispatchEvent(new Event('change'));"
    )
    info = driver.find_element(By.ID, "page-info")
    wait_until("page 1 of 2 rows", lambda: info.text.startswith("page 1 of 2"))
    driver.find_element(By.ID, "older").click()
    wait_until("page 2", lambda: info.text.startswith("page 2 of 2"))
    machines = [c.text for c in table.find_elements(By.CSS_SELECTOR, "tbody tr td.machine")]
    assert machines == newest_first[2:4]
    assert not driver.find_element(By.ID, "older").is_enabled()
    driver.find_element(By.ID, "newer").click()
    wait_until("page 1 again", lambda: info.text.startswith("page 1 of 2"))


LONG_MACHINE = "PAINT-" + "7" * 4994  # 5,000 characters
LONG_ISSUE = "PAINT-EQ-" + "VERY-LONG-" * 30
LONG_READING_TIME = "shift B, " * 120  # not a time: shown as written


@pytest.fixture
def hostile_ledgers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Ledgers as a hand-edit could leave them: very long values, a record stamped 2099.
    Requested before ``api_server``, which then reads them (the output dir Variable)."""
    from include.painting_simulator.ledger import Ledgers
    from include.painting_simulator.records import row_record, utc_now
    from tests.support.contract_examples import BODY, FLAT_RECORD

    def anomaly(row: int, machine: str, issue: str, reading_time: str, at: str) -> Any:
        data = {**BODY, "machineId": machine, "timeStamp": reading_time}
        result = {
            "source": {"blob": "hand-edited.csv", "row": row}, "kind": "anomaly",
            "original_data": data, "prediction": {**FLAT_RECORD, **data, "issue": issue},
        }  # fmt: skip
        return row_record(result, "manual__hostile", at)

    output_dir = tmp_path / "painting_logs"
    records = [
        anomaly(0, "PAINT-2099", "PAINT-EQ-VOL-HIGH", "2099-01-01T00:00", "2099-01-01T00:00:00Z"),
        anomaly(1, "PAINT-1", "PAINT-EQ-VOL-HIGH", "2025-07-23T15:32:01", utc_now()),
        anomaly(2, LONG_MACHINE, LONG_ISSUE, LONG_READING_TIME, utc_now()),
    ]  # fmt: skip
    Ledgers(str(output_dir)).append_once("anomaly", "manual__hostile", records)
    monkeypatch.setenv("AIRFLOW_VAR_PAINTING_OUTPUT_DIR", str(output_dir))
    return output_dir


def test_very_long_values_are_cut_whole_on_hover_and_the_layout_holds(
    hostile_ledgers, api_server, browser
):
    from selenium.webdriver.common.by import By

    driver, base_url = browser, api_server.base_url
    log_in(driver, base_url)
    driver.get(f"{base_url}/painting/")
    wait_until(
        "the dashboard's data",
        lambda: driver.execute_script("return document.body.dataset.loaded === 'true'"),
    )
    wait_until(
        "the three anomalies in the table",
        lambda: len(driver.find_elements(By.CSS_SELECTOR, "#recent-table td.machine")) == 3,
    )
    layout = driver.execute_script(LAYOUT)
    viewport = layout["viewport"]

    # Nothing wider than the window: not the page, not a row of either table.
    assert layout["width"] <= viewport, layout["width"]
    assert max(layout["rows"]) <= viewport, max(layout["rows"])
    assert layout["height"] < 2500, "a long value made the page grow"

    # The long machineId: one line, cut, in both tables; whole in its title, and text only.
    long_cells = [c for c in layout["machines"] + layout["recent"] if c["text"] == LONG_MACHINE]
    assert len(long_cells) == 2
    for cell in long_cells:
        assert cell["cut"]
        assert cell["width"] < viewport / 2
        assert cell["height"] < 40  # one line, not a block of text
        assert cell["title"] == LONG_MACHINE
        assert cell["elements"] == 0
    issue = next(c for c in layout["recent"] if c["text"] == LONG_ISSUE)
    assert issue["cut"]
    assert issue["title"] == LONG_ISSUE
    reading = next(c for c in layout["recent"] if c["text"] == LONG_READING_TIME)
    assert reading["cut"]
    assert reading["title"] == LONG_READING_TIME

    # The issue chart's axis: labels shortened (an ellipsis), none clipped, bars keep room.
    axis = driver.execute_script(ISSUE_AXIS)
    assert all(len(label) <= 24 for label in axis["labels"]), axis["labels"]
    assert any(
        label.endswith("…") and label.startswith("PAINT-EQ-VERY") for label in axis["labels"]
    )
    assert axis["left"] >= 0
    assert axis["width"] < axis["chart"] / 2

    # Logged and reading time alike when the reading time parses (not shifted by the browser's
    # zone, Asia/Seoul here: a reading time has none), as written when it does not.
    times = driver.execute_script(
        "return [...document.querySelectorAll('#recent-table tbody tr')]"
        ".map((tr) => [...tr.cells].slice(0, 2).map((td) => td.firstChild.textContent))"
    )
    assert [reading for _, reading in times] == [
        LONG_READING_TIME, "2025-07-23 15:32:01", "2099-01-01 00:00:00",
    ]  # fmt: skip
    assert times[2][0] == "2099-01-01 00:00:00"
    assert all(len(logged) == 19 and logged[10] == " " for logged, _ in times)

    # The record stamped 2099 is flagged: above the cards, and on its row.
    assert driver.find_element(By.ID, "future").is_displayed()
    assert driver.find_element(By.ID, "future").text.startswith("1 record is stamped in the future")
    future_rows = driver.find_elements(By.CSS_SELECTOR, "#recent-table tr.future td.machine")
    assert [td.text for td in future_rows] == ["PAINT-2099"]
    assert no_alert(driver)

    # No candidate, no replay: the Model checks section says so instead of drawing a chart.
    assert driver.find_element(By.ID, "shadow-empty").is_displayed()
    assert not driver.find_element(By.ID, "shadow-panel").is_displayed()
    replays = driver.find_element(By.CSS_SELECTOR, "#replay-table tbody").text
    assert replays == "No replay reports yet: trigger painting_replay."
    assert driver.find_element(By.CSS_SELECTOR, "#disagreement-table tbody").text == (
        "No disagreements recorded."
    )


MCH, CUR = "PAINT-EQ-MCH", "PAINT-EQ-CUR-LOW"
# Shadow mode's rows of one simulator run: production's label, the candidate's.
SHADOW_PAIRS = [
    ("normal", "normal"), ("normal", "normal"), (CUR, CUR),  # agreed
    (CUR, MCH), ("normal", MCH),  # disagreed (two issue codes disagree too)
    ("normal", "error"),  # the candidate gave no verdict: counted apart
]  # fmt: skip
SHADOW_RUN = "scheduled__2026-12-01T10:00:00+00:00"
PASSED_REPLAY, FAILED_REPLAY = "manual__replay-passed", "manual__replay-failed"


@pytest.fixture
def model_check_ledgers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A shadow-mode run's rows and two replay reports (one passed, one failed), written by
    the real writers. Requested before ``api_server``, which then reads them."""
    from tests.support.model_checks import replay_summary, write_replay, write_shadow_rows

    output_dir = tmp_path / "painting_logs"
    write_shadow_rows(str(output_dir), SHADOW_RUN, SHADOW_PAIRS)
    limits = {"latency_p95_ms": 50, "agreement": 0.995}
    write_replay(str(output_dir), replay_summary(PASSED_REPLAY, [(CUR, CUR)], limits=limits))
    failed = replay_summary(FAILED_REPLAY, [(CUR, MCH)], latency_s=0.2, limits=limits)
    write_replay(str(output_dir), failed)
    monkeypatch.setenv("AIRFLOW_VAR_PAINTING_OUTPUT_DIR", str(output_dir))
    return output_dir


def test_model_checks_show_replay_gates_agreement_over_time_and_disagreements(
    model_check_ledgers, api_server, browser, logs_dir: Path
):
    from selenium.webdriver.common.by import By

    driver, base_url = browser, api_server.base_url
    log_in(driver, base_url)
    open_dashboard_in_the_ui(driver, base_url)

    # The replay reports, newest first: the failed one with ✗, the passed one with ✓.
    table = driver.find_element(By.ID, "replay-table")
    reports = wait_until(
        "the two replay reports",
        lambda: table.find_elements(By.CSS_SELECTOR, "tbody tr[data-run-id]"),
    )
    assert [r.get_attribute("data-run-id") for r in reports] == [FAILED_REPLAY, PASSED_REPLAY]
    failed, passed = reports
    assert failed.find_element(By.CSS_SELECTOR, "td.verdict").text == "✗ failed"
    assert passed.find_element(By.CSS_SELECTOR, "td.verdict").text == "✓ passed"
    badges = {
        row.get_attribute("data-run-id"): {
            b.get_attribute("data-name"): (b.text, b.get_attribute("title"))
            for b in row.find_elements(By.CSS_SELECTOR, ".threshold")
        }
        for row in reports
    }
    assert badges[PASSED_REPLAY]["agreement"][0] == "✓ agreement: 1 (limit 0.995)"
    text, title = badges[FAILED_REPLAY]["latency_p95_ms"]
    assert text.startswith("✗ latency_p95_ms: ")
    assert text.endswith("(limit 50)")
    assert title == text  # whole on hover when the cell cuts it
    assert (
        badges[FAILED_REPLAY]["agreement"][0] == f"✗ agreement: {round(100 / 101, 4)} (limit 0.995)"
    )
    assert failed.find_element(By.CSS_SELECTOR, "td.agreement").text == "99.0 %"
    assert passed.find_element(By.CSS_SELECTOR, "td.accuracy").text == "100.0 %"

    # Shadow mode's agreement over time: the chart, with the run's known rows.
    assert driver.find_element(By.ID, "shadow-panel").is_displayed()
    assert not driver.find_element(By.ID, "shadow-empty").is_displayed()
    assert driver.execute_script(CANVAS_INK, "agreement-chart") > 500, "the chart is blank"
    data = driver.execute_script(
        "const c = Chart.getChart('agreement-chart');"
        "return c.data.datasets.map((d) => [d.label, d.data.reduce((a, v) => a + (v || 0), 0)]);"
    )
    sums = dict(data)
    assert (sums["Agreed"], sums["Disagreed"], sums["Candidate errors"]) == (3, 2, 1)
    assert sums["Agreement (%)"] == 60.0  # one bucket: 3 of the 5 compared
    totals = driver.find_element(By.ID, "shadow-totals").text
    assert totals.startswith("5 rows compared, 3 agreed, 2 disagreed (agreement 60.0 %)")

    # The latest disagreements: exactly the two known rows, with both labels.
    rows = driver.find_elements(By.CSS_SELECTOR, "#disagreement-table tbody tr")
    seen = sorted(tuple(td.text for td in tr.find_elements(By.TAG_NAME, "td"))[1:] for tr in rows)
    blob = "painting-process-equipment/shadow.csv"
    assert seen == [
        ("PAINT-1", f"{blob} row 3", CUR, MCH, SHADOW_RUN),
        ("PAINT-1", f"{blob} row 4", "normal", MCH, SHADOW_RUN),
    ]
    assert no_alert(driver)
    shot = logs_dir / "dashboard-model-checks.png"
    section = driver.find_element(By.ID, "model-checks")
    driver.execute_script("arguments[0].scrollIntoView()", section)
    section.screenshot(str(shot))
    if target := os.environ.get("DASHBOARD_SCREENSHOT"):  # beside it: docs/dashboard.md shows it
        shutil.copyfile(shot, Path(target).with_name("dashboard-model-checks.png"))


@pytest.fixture
def unreadable_results_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A results database at a schema newer than the code (a SQLite file), as the connection
    ``painting_results_db``. Requested before ``api_server``, which then has the connection."""
    from tests.support.results_db import ENV, ResultsDb, normal_result

    results_db = ResultsDb.sqlite(tmp_path / "painting_results.db")
    results_db.store().write_rows("run-1", [normal_result("line.csv", 0)])
    results_db.execute("UPDATE painting_schema_version SET version = 99")
    monkeypatch.setenv(ENV, results_db.env_value)
    return results_db


def test_the_page_says_why_the_results_database_cannot_be_read(
    unreadable_results_db, api_server, browser
):
    from selenium.webdriver.common.by import By

    driver, base_url = browser, api_server.base_url
    log_in(driver, base_url)
    driver.get(f"{base_url}/painting/")

    box = driver.find_element(By.ID, "error")
    wait_until("the error box", box.is_displayed)
    named = "results database of connection 'painting_results_db' (sqlite:///"
    assert f": HTTP 503: {named}" in box.text
    assert "has schema version 99, newer than this code's" in box.text
    assert no_alert(driver)
