"""No row lost or duplicated while 30 % of the model service's answers are faults.

Many windows (RUNS runs x BATCH rows, over two blobs and a wrap) run with dag.test() against real
Azurite and the reference model service, 30 % of whose answers are faults:

* the first half of the runs meets every fault kind (500, 503 + Retry-After, slow past the
  client timeout, dropped connection, bad JSON, empty body, a record without ``issue``), and the
  client retries each call (``painting_request_attempts`` 3);
* the second half meets the faults that give no answer at all (slow, dropped) and the client
  does not retry (1): a window whose first row gets no answer fails ``call_model_service`` and
  Airflow retries the task (so task retries happen by design, not by luck of the seed). A run
  whose four tries all fail is a failed run: it records no row and one failure record, and the
  next run sends the same window.

It runs on every store: the JSON-lines files, a SQLite results database and a real PostgreSQL one
(under two minutes each on the 2-core machine; what a run costs is mostly dag.test()'s own
overhead per run, so the 300 rows go in 20 windows of 15 rather than 30 of 10).
The invariant, checked on the ledgers read back from disk (or the database's records): every row
of every window of a successful run is in exactly one ledger, once; a failed run has no row
record; no verdict is invented or changed (each anomaly is the fault-free service's answer for
that row, each normal row is normal without faults); a fault-free anomaly is missing from the
anomaly ledger only when its last attempt met a fault, and then it is an error record whose cause
names that fault. The figures are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from typing import Any

import pytest
import requests

from scripts.local_services import SAMPLE_CSV
from tests.support.dag_runs import PREFIX, fast_retries, task_output
from tests.support.results_db import STORES
from tests.support.secret_leaks import secret_hits

pytestmark = pytest.mark.integration

RUNS, BATCH = 20, 15
BLOB_ROWS = {"a.csv": 120, "b.csv": 60}  # 180 rows: the 300 rows sent wrap once
FAULT_RATE, FAULT_SEED = 0.3, 20261126
CLIENT_TIMEOUT, SLOW_SECONDS = 1.0, 3.0

# The cause an error record carries for each fault kind (see model_client.classify).
FAULT_CAUSES = {
    "500": 'model service failed (500): "injected fault: internal error"',
    "503": 'model service failed (503): "injected fault: service unavailable"',
    "slow": "model service unreachable: ReadTimeout on POST",
    "drop": "model service unreachable: ConnectionError on POST",
    "empty": "200 answer is not JSON: an empty body",
    "badjson": "200 answer is not JSON: ",
    "noissue": "200 answer is not an anomaly record (no 'issue')",
}


def fault_of(error: str) -> str | None:
    return next((kind for kind, cause in FAULT_CAUSES.items() if error.startswith(cause)), None)


def sample_blobs() -> dict[str, bytes]:
    lines = SAMPLE_CSV.read_text(encoding="utf-8").splitlines()
    header, rows, blobs, start = lines[0], lines[1:], {}, 0
    for name, count in BLOB_ROWS.items():
        blobs[name] = ("\n".join([header, *rows[start : start + count]]) + "\n").encode()
        start += count
    return blobs


def expected_window(start: int) -> list[tuple[str, int]]:
    """The window that starts at row ``start`` of the whole sequence (wrapping)."""
    sequence = [(PREFIX + name, row) for name, count in BLOB_ROWS.items() for row in range(count)]
    return [sequence[(start + k) % len(sequence)] for k in range(BATCH)]


def fault_stats(service) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/faults", timeout=5) as answer:
        return json.load(answer)


def fault_free_answers(port: int, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """What the service answers without faults: None (204) or the anomaly record, per body."""
    answers: dict[str, Any] = {}
    with requests.Session() as session:
        for body in bodies:
            key = json.dumps(body, sort_keys=True)
            if key not in answers:
                answer = session.post(f"http://127.0.0.1:{port}/predict/", json=body, timeout=10)
                assert answer.status_code in (200, 204), answer.text
                answers[key] = answer.json() if answer.status_code == 200 else None
    return answers


@pytest.mark.parametrize("results_db", STORES, indirect=True)
def test_no_row_is_lost_or_duplicated_with_30_percent_faulty_answers(
    simulator, start_model_service, model_service, account_key, caplog, capfd
):
    common = ("--fault-rate", str(FAULT_RATE), "--fault-seed", str(FAULT_SEED),
              "--slow-seconds", str(SLOW_SECONDS), "--retry-after", "1")  # fmt: skip
    every_kind = start_model_service(*common)
    no_answer = start_model_service(*common, "--fault-mix", "slow,drop")
    simulator.upload(sample_blobs())
    simulator.set_variable("painting_batch_size", str(BATCH))
    simulator.set_variable("painting_request_timeout_seconds", str(CLIENT_TIMEOUT))
    dag = fast_retries(simulator.dag())

    task_retries, start, windows, failed_runs = 0, 0, {}, []
    for run_number in range(RUNS):
        first_half = run_number < RUNS // 2
        simulator.use_model_service(every_kind if first_half else no_answer)
        simulator.set_variable("painting_request_attempts", "3" if first_half else "1")
        run = simulator.run(dag=dag)
        task_retries += sum(max(ti.try_number - 1, 0) for ti in run.get_task_instances())
        if run.state == "success":
            windows[run.run_id] = expected_window(start)
            start += BATCH
        else:
            assert run.state == "failed", run.state
            failed_runs.append(run.run_id)  # the next run sends the same window

    # --- the invariant ---
    ledgers = simulator.ledgers()
    recorded: Counter[tuple[str, str, int]] = Counter()
    kind_of: dict[tuple[str, str, int], str] = {}
    for kind, records in ledgers.items():
        for r in records:
            key = (r["run_id"], r["source"]["blob"], r["source"]["row"])
            recorded[key] += 1
            kind_of[key] = kind
    expected = {(run_id, blob, row) for run_id, keys in windows.items() for blob, row in keys}
    lost = sorted(expected - set(recorded))
    duplicated = {key: n for key, n in recorded.items() if n > 1}
    unexpected = sorted(set(recorded) - expected)

    all_records = [r for records in ledgers.values() for r in records]
    truth = fault_free_answers(model_service.port, [r["original_data"] for r in all_records])

    def fault_free(record: dict[str, Any]) -> Any:
        return truth[json.dumps(record["original_data"], sort_keys=True)]

    changed = [r for r in ledgers["anomaly"] if r["prediction"] != fault_free(r)]
    invented = [r for r in ledgers["normal"] if fault_free(r) is not None]
    errors_by_fault = Counter(fault_of(r["error"]) for r in ledgers["error"])
    unexplained = [r for r in ledgers["error"] if fault_of(r["error"]) is None]
    free_anomalies = sum(fault_free(r) is not None for r in all_records)
    anomalies_lost_to_faults = sum(fault_free(r) is not None for r in ledgers["error"])

    stats_by_service = [fault_stats(every_kind), fault_stats(no_answer)]
    stats = {
        "calls": sum(s["calls"] for s in stats_by_service),
        "injected_total": sum(s["injected_total"] for s in stats_by_service),
        "injected": dict(sum((Counter(s["injected"]) for s in stats_by_service), Counter())),
    }
    failures = simulator.failures()

    figures = {
        "runs (successful / failed)": f"{len(windows)} / {len(failed_runs)}",
        "rows of the successful windows": len(expected),
        "records": sum(recorded.values()),
        "calls to /predict/": stats["calls"],
        "faults injected": stats["injected_total"],
        "faults by kind": stats["injected"],
        "Airflow task retries": task_retries,
        "failure records (failed runs)": len(failures),
        "anomaly / normal / error records": [len(ledgers[k]) for k in ledgers],
        "error records by fault": dict(errors_by_fault),
        "fault-free anomalies": free_anomalies,
        "anomalies recorded as such": len(ledgers["anomaly"]),
        "anomalies turned into error records by a fault": anomalies_lost_to_faults,
        "lost": len(lost),
        "duplicated": sum(n - 1 for n in duplicated.values()),
    }
    with capfd.disabled():  # the figures go to the terminal, not into the captured task output
        print("\nrow accounting under faults")
        for name, value in figures.items():
            print(f"  {name:48} {value}")

    assert lost == [], lost
    assert duplicated == {}, duplicated
    assert unexpected == [], unexpected
    assert changed == [], changed
    assert invented == [], invented
    assert unexplained == [], unexplained
    assert len(ledgers["anomaly"]) + anomalies_lost_to_faults == free_anomalies
    assert free_anomalies > 0
    # Every error record is one fault met on a row's last attempt: never more than injected.
    for kind, count in errors_by_fault.items():
        assert count <= stats["injected"][kind], (kind, count, stats["injected"])
    # What the test claims to exercise did happen.
    assert stats["injected_total"] >= 0.2 * stats["calls"]
    assert all(stats["injected"][kind] > 0 for kind in FAULT_CAUSES), stats["injected"]
    assert task_retries > 0, "no Airflow task retry happened: the test proves less than it says"
    # A failed run: no row record, exactly one failure record naming it and the call task.
    assert sorted(r["run_id"] for r in failures) == sorted(failed_runs)
    assert all(r["task_id"] == "call_model_service" for r in failures), failures
    assert not any(key[0] in failed_runs for key in recorded)
    assert len(windows) >= RUNS - 3, "most runs succeed"
    # Nothing of the storage secret reached the task output or the ledgers.
    out = task_output(caplog, capfd)
    ledger_text = "".join(json.dumps(r) for r in all_records)
    conn = simulator.azurite.connection_string
    assert secret_hits(out + ledger_text, account_key, conn) == {}
