"""Storage faults, each through the real pipeline: dag.test() of painting_simulator against real
Azurite and the real model service.

Every fault ends in a failed task or a logged skip whose message names the container or blob
and the cause, never the account key; the stored position never moves past rows that were not
recorded. (test_simulator_dag.py covers the same faults on a fresh simulator: a wrong key and a
missing container before any progress, no CSV under the prefix, a blob deleted between runs.)

Two faults must happen *inside* pull_window, between listing the blobs and reading one; no
storage can be told to do that on demand, so those tests wrap ``blob_storage.blob_version`` and
``blob_storage.download_blob`` (the row cache's properties request and the download; dag.test()
runs tasks in this process) to stop Azurite or delete the blob right before the real request.
The request itself and the failure it meets are real.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from include.painting_simulator import blob_storage
from scripts import local_services
from scripts.local_services import AZURITE_KEY
from tests.support.azurite import AzuriteHandle, run_azurite
from tests.support.dag_runs import PREFIX, all_keys, fast_retries, task_output
from tests.support.rows import numbered_rows

pytestmark = pytest.mark.integration

LINE = PREFIX + "line.csv"


def where(simulator: Any) -> tuple[str, int] | None:
    """The stored position as (blob, row)."""
    position = simulator.position()
    return None if position is None else (position["blob"], position["row"])


def failed_task(run: Any) -> str:
    (failed,) = [ti.task_id for ti in run.get_task_instances() if ti.state == "failed"]
    return failed


def before_each_download(
    monkeypatch: pytest.MonkeyPatch, action: Callable[[str], None]
) -> list[str]:
    """Run ``action(blob)`` before every real read of a blob in pull_window (the row cache's
    properties request and the download); return the blobs seen, once per read."""
    seen: list[str] = []

    def wrap(real: Callable[..., Any]) -> Callable[..., Any]:
        def read(hook: Any, container: str, blob: str) -> Any:
            seen.append(blob)
            action(blob)
            return real(hook, container, blob)

        return read

    for name in ("blob_version", "download_blob"):
        monkeypatch.setattr(blob_storage, name, wrap(getattr(blob_storage, name)))
    return seen


def after_one_window(simulator: Any, rows: int = 4) -> Any:
    """``line.csv`` with ``rows`` rows, batches of 2, one successful run; return the DAG."""
    simulator.upload({"line.csv": numbered_rows(rows)})
    simulator.set_variable("painting_batch_size", "2")
    dag = fast_retries(simulator.dag())
    assert simulator.run(dag=dag).state == "success"
    assert where(simulator) == (LINE, 2)
    return dag


@pytest.fixture
def own_azurite(logs_dir: Any, tmp_path: Any) -> Iterator[AzuriteHandle]:
    """An Azurite of this test alone, so that stopping it leaves the session's one alone."""
    port = local_services.free_port()
    with run_azurite(tmp_path / "azurite", port, logs_dir / f"azurite-{port}.log") as handle:
        yield handle


def test_azurite_stopped_mid_run_fails_pull_window_and_the_position_stays(
    simulator, own_azurite, monkeypatch, caplog, capfd
):
    # The Azure SDK retries an unreachable account for about a minute by default (15 s, 18 s,
    # 24 s); retry_total, passed through the connection extra, makes each try fail at once.
    connection = local_services.wasb_connection(own_azurite.connection_string)
    connection["extra"]["retry_total"] = 0
    monkeypatch.setenv("AIRFLOW_CONN_PAINTING_BLOB_STORAGE", json.dumps(connection))
    simulator.azurite = own_azurite
    dag = after_one_window(simulator, rows=5)
    capfd.readouterr()
    caplog.clear()

    stopped: list[str] = []

    def stop_azurite(blob: str) -> None:
        if not stopped:
            stopped.append(blob)
            own_azurite.service.stop()

    before_each_download(monkeypatch, stop_azurite)
    broken = simulator.run(dag=dag)

    assert stopped == [LINE]  # listed, then Azurite went away before the read
    assert broken.state == "failed"
    assert failed_task(broken) == "pull_window"
    out = task_output(caplog, capfd)
    assert (
        f"storage unreachable (connection 'painting_blob_storage') while reading blob "
        f"'{LINE}' in container '{simulator.container}'" in out
    )
    # Airflow's retries found the storage still down, at the listing this time.
    assert (
        "storage unreachable (connection 'painting_blob_storage') while reading container "
        f"'{simulator.container}'" in out
    )
    assert AZURITE_KEY not in out
    assert where(simulator) == (LINE, 2)  # nothing recorded, nothing skipped
    assert all_keys(simulator, broken.run_id) == []

    own_azurite.service.start()
    resumed = simulator.run(dag=dag)

    assert resumed.state == "success"
    assert all_keys(simulator, resumed.run_id) == [(LINE, 2), (LINE, 3)]
    assert where(simulator) == (LINE, 4)


def test_a_wrong_key_after_progress_fails_naming_the_container_and_keeps_the_position(
    simulator, caplog, capfd
):
    dag = after_one_window(simulator)
    stored = simulator.position()
    wrong_key = "QmFkS2V5QmFkS2V5QmFkS2V5QmFkS2V5QmFkS2V5QmFkS2V5" * 2
    port = simulator.azurite.service.port
    simulator.monkeypatch.setenv(
        "AIRFLOW_CONN_PAINTING_BLOB_STORAGE",
        json.dumps(
            local_services.wasb_connection(
                local_services.azurite_connection_string(port, key=wrong_key)
            )
        ),
    )

    run = simulator.run(dag=dag)

    assert run.state == "failed"
    assert failed_task(run) == "pull_window"
    out = task_output(caplog, capfd)
    assert (
        "storage authentication failed (connection 'painting_blob_storage') for container "
        f"'{simulator.container}': check the account key" in out
    )
    assert wrong_key not in out
    assert AZURITE_KEY not in out
    assert simulator.position() == stored


def test_a_container_deleted_between_runs_fails_and_the_run_after_its_return_goes_on(
    simulator, caplog, capfd
):
    from azure.storage.blob import BlobServiceClient

    dag = after_one_window(simulator)
    BlobServiceClient.from_connection_string(simulator.azurite.connection_string).delete_container(
        simulator.container
    )

    run = simulator.run(dag=dag)

    assert run.state == "failed"
    assert failed_task(run) == "pull_window"
    out = task_output(caplog, capfd)
    assert (
        f"container '{simulator.container}' not found (connection 'painting_blob_storage')" in out
    )
    assert AZURITE_KEY not in out
    assert where(simulator) == (LINE, 2)

    simulator.upload({"line.csv": numbered_rows(4)})  # the container is back, same rows
    resumed = simulator.run(dag=dag)
    assert resumed.state == "success"
    assert all_keys(simulator, resumed.run_id) == [(LINE, 2), (LINE, 3)]


def test_a_blob_deleted_between_listing_and_reading_is_skipped_with_a_warning(
    simulator, monkeypatch, caplog, capfd
):
    a, b = PREFIX + "a.csv", PREFIX + "b.csv"
    simulator.upload({"a.csv": numbered_rows(4), "b.csv": numbered_rows(3, machine=2)})
    simulator.set_variable("painting_batch_size", "2")
    dag = simulator.dag()
    simulator.run(dag=dag)  # a.csv rows 0-1
    assert where(simulator) == (a, 2)

    def delete_a(blob: str) -> None:
        if blob == a:
            simulator.azurite.delete(simulator.container, a)

    seen = before_each_download(monkeypatch, delete_a)
    run = simulator.run(dag=dag)

    assert seen[0] == a  # a.csv was listed and about to be read
    assert run.state == "success"
    out = task_output(caplog, capfd)
    assert (
        f"container '{simulator.container}': blob '{a}' disappeared before it could be read; "
        "skipped" in out
    )
    # The rows of a.csv not yet sent are gone with it; the sequence goes on with b.csv.
    assert all_keys(simulator, run.run_id) == [(b, 0), (b, 1)]
    assert where(simulator) == (b, 2)


def test_a_blob_overwritten_between_runs_is_continued_by_position_and_the_change_logged(
    simulator, caplog, capfd
):
    dag = after_one_window(simulator, rows=6)
    old = simulator.position()
    assert old["etag"]  # the version of the blob is stored with the position
    capfd.readouterr()
    caplog.clear()

    simulator.upload({"line.csv": numbered_rows(6, machine=9)})  # same name, new rows
    run = simulator.run(dag=dag)

    assert run.state == "success"
    out = task_output(caplog, capfd)
    assert (
        f"blob '{LINE}' was overwritten since the position was stored (ETag {old['etag']} ->" in out
    )
    assert "the sequence goes on by position: row 2 of its new content (now 6 row(s))" in out
    assert all_keys(simulator, run.run_id) == [(LINE, 2), (LINE, 3)]
    sent = [r["original_data"]["machineId"] for r in simulator.ledger("normal")]
    assert sent == ["PAINT-1", "PAINT-1", "PAINT-9", "PAINT-9"]  # rows 2-3 of the new content
    new = simulator.position()
    assert (new["blob"], new["row"]) == (LINE, 4)
    assert new["etag"] != old["etag"]

    # Overwritten again, now shorter than the position: nothing before row 4 is re-sent; the
    # sequence moves past the blob's end, i.e. wraps to its first row.
    simulator.upload({"line.csv": numbered_rows(2, machine=7)})
    capfd.readouterr()
    caplog.clear()
    shorter = simulator.run(dag=dag)

    assert shorter.state == "success"
    assert "row 4 of its new content (now 2 row(s))" in task_output(caplog, capfd)
    assert all_keys(simulator, shorter.run_id) == [(LINE, 0), (LINE, 1)]


def test_an_empty_prefix_fails_naming_container_and_prefix_and_keeps_the_position(
    simulator, caplog, capfd
):
    simulator.upload({"readme.txt": b"the folder exists, no blob under the prefix"}, "other/")
    dag = after_one_window(simulator)
    stored = simulator.position()
    simulator.set_variable("painting_prefix", "empty-folder/")

    run = simulator.run(dag=dag)

    assert run.state == "failed"
    assert failed_task(run) == "pull_window"
    out = task_output(caplog, capfd)
    assert f"no .csv blob under {simulator.container}/empty-folder/" in out
    assert AZURITE_KEY not in out
    assert simulator.position() == stored
