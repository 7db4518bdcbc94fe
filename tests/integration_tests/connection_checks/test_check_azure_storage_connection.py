"""check_azure_storage_connection, run with dag.test() against real Azurite.

Every failure cause is produced for real: an Azurite that was stopped, a port where nothing
listens, a wrong account key, a container that does not exist, an empty prefix, a prefix
without a .csv. The account key (right or wrong) never appears in what the tasks log.
"""

from __future__ import annotations

import base64
import contextlib
import sqlite3
import threading

import pytest

from scripts import local_services
from scripts.local_services import AZURITE_KEY

pytestmark = pytest.mark.integration

DAG_ID = "check_azure_storage_connection"
SENSOR, LISTING = "wait_for_blobs", "list_csv_blobs"
PREFIX = "painting-process-equipment/"
# Short timing for the checks under test: the poke interval and timeout are DAG params.
POKE, TIMEOUT = 1, 3
FAST = {"poke_interval_seconds": POKE, "timeout_seconds": TIMEOUT}
CSV = (
    b"machineId,timeStamp,Thick,PT_jo_V_1,PT_jo_A_Main_1,PT_jo_TP\n"
    b"1,2025-07-23T08:00:00,20,260,70,34\n"
)
# A well-formed key that is not the account's: every request is signed wrongly (403).
WRONG_KEY = base64.b64encode(bytes(range(64))).decode()


def assert_failed_at_once(result, task_id: str) -> None:
    assert result.state == "failed"
    assert result.task_states()[task_id] == "failed"
    assert result.reschedules(SENSOR) == []  # no waiting: the first poke decided
    assert_no_key(result.log)


def assert_failed_at_the_timeout(result, timeout: int = TIMEOUT, poke: int = POKE) -> None:
    assert result.state == "failed"
    assert result.task_states() == {SENSOR: "failed", LISTING: "upstream_failed"}
    # It waited (poked more than once), but no more often than the timeout allows.
    assert 1 <= len(result.reschedules(SENSOR)) <= timeout / poke + 1
    assert f"(still so at the timeout of {timeout} s)" in result.log
    assert_no_key(result.log)


def assert_no_key(text: str) -> None:
    assert AZURITE_KEY not in text
    assert WRONG_KEY not in text


def test_lists_the_csv_blobs_count_first_five_sizes_and_times(checks, storage):
    names = [f"line-{i}.csv" for i in range(7)]
    storage.upload({PREFIX + name: CSV * (i + 1) for i, name in enumerate(names)})
    storage.upload({PREFIX + "notes.txt": b"not a csv", "elsewhere/other.csv": CSV})

    result = checks.run(DAG_ID, **FAST)

    assert result.state == "success", result.log[-3000:]
    assert f"7 CSV blob(s) under prefix '{PREFIX}' in container '{storage.container}'" in result.log
    for i, name in enumerate(names[:5]):
        assert f"{PREFIX}{name}  {len(CSV) * (i + 1):,} bytes  last modified 20" in result.log
    assert PREFIX + names[5] not in result.log  # only the first five, by name
    assert "notes.txt" not in result.log
    assert "elsewhere/other.csv" not in result.log
    assert_no_key(result.log)


def test_blobs_arriving_while_the_sensor_waits_make_the_check_pass(checks, storage, airflow_db):
    storage.upload({"elsewhere/other.csv": CSV})  # the container exists, the prefix is empty
    uploaded = threading.Event()

    def upload_once_the_sensor_waits() -> None:
        # A plain read-only SQLite connection: it does not get in the way of dag.test()'s own.
        query = "SELECT count(*) FROM task_instance WHERE dag_id = ? AND state = ?"
        with contextlib.closing(
            sqlite3.connect(f"file:{airflow_db / 'airflow.db'}?mode=ro", uri=True, timeout=1)
        ) as db:
            while not uploaded.is_set():
                with contextlib.suppress(sqlite3.OperationalError):  # busy: ask again
                    if db.execute(query, (DAG_ID, "up_for_reschedule")).fetchone()[0]:
                        storage.upload({PREFIX + "late.csv": CSV})
                        uploaded.set()
                uploaded.wait(0.2)

    watcher = threading.Thread(target=upload_once_the_sensor_waits, daemon=True)
    watcher.start()
    try:
        result = checks.run(DAG_ID, poke_interval_seconds=POKE, timeout_seconds=60)
    finally:
        uploaded.set()
        watcher.join(timeout=10)

    assert result.state == "success", result.log[-3000:]
    assert "not yet: no CSV under prefix" in result.log  # it found nothing at first ...
    assert f"1 CSV blob(s) under prefix '{PREFIX}'" in result.log  # ... and then the new blob


def test_the_poke_interval_and_timeout_params_drive_the_sensor(checks, storage):
    """Without the params reaching the sensor it would poke every 10 s for 60 s (the defaults)."""
    storage.upload({"elsewhere/other.csv": CSV})

    result = checks.run(DAG_ID, poke_interval_seconds=2, timeout_seconds=4)

    assert_failed_at_the_timeout(result, timeout=4, poke=2)
    gaps = [(r.reschedule_date - r.end_date).total_seconds() for r in result.reschedules(SENSOR)]
    assert gaps
    assert all(1 < gap <= 2 for gap in gaps), gaps  # each poke asked to be rescheduled in 2 s
    assert "next poke in 2 s, timeout 4 s" in result.log


def test_an_empty_prefix_fails_at_the_timeout_with_no_csv(checks, storage):
    storage.upload({"elsewhere/other.csv": CSV})

    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_the_timeout(result)
    assert (
        f"no CSV under prefix '{PREFIX}' in container '{storage.container}' "
        f"(connection 'painting_blob_storage'): nothing is stored under it"
    ) in result.log


def test_a_prefix_without_csv_fails_at_once_naming_what_is_there(checks, storage):
    storage.upload({PREFIX + "notes.txt": b"x", PREFIX + "data.csv.bak": CSV})

    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_once(result, LISTING)
    assert result.task_states()[SENSOR] == "success"
    assert f"no CSV under prefix '{PREFIX}'" in result.log
    assert f"2 other blob(s) ({PREFIX}data.csv.bak, {PREFIX}notes.txt) but no .csv" in result.log


def test_a_wrong_key_fails_at_once_as_authentication_without_showing_a_key(checks, storage):
    storage.upload({PREFIX + "a.csv": CSV})
    port = storage.azurite.service.port
    storage.use_connection_string(local_services.azurite_connection_string(port, key=WRONG_KEY))

    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_once(result, SENSOR)
    assert "storage authentication failed (connection 'painting_blob_storage')" in result.log
    assert "check the account key, SAS token or permissions" in result.log
    assert f"endpoint http://127.0.0.1:{port}/devstoreaccount1" in result.log


def test_a_missing_container_fails_at_once(checks, storage):
    storage.set_variable("painting_container", "no-such-container")

    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_once(result, SENSOR)
    assert "container 'no-such-container' not found (connection 'painting_blob_storage')" in (
        result.log
    )
    assert "set the Variable painting_container" in result.log


def test_a_stopped_azurite_is_unreachable_named_by_host_and_port(checks, storage, tmp_path):
    port = local_services.free_port()
    own = local_services.azurite(tmp_path / "azurite", port, tmp_path / "azurite.log")
    with own:
        local_services.upload_blobs(
            local_services.azurite_connection_string(port), storage.container, {PREFIX + "a": CSV}
        )
    storage.use_connection_string(local_services.azurite_connection_string(port))

    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_the_timeout(result)
    assert "storage unreachable (connection 'painting_blob_storage')" in result.log
    assert f"host='127.0.0.1', port={port}): Failed to establish a new connection" in result.log
    assert f"is the storage service running at http://127.0.0.1:{port}/devstoreaccount1" in (
        result.log
    )


def test_a_port_where_nothing_listens_is_unreachable(checks, storage, closed_port):
    storage.use_connection_string(local_services.azurite_connection_string(closed_port))

    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_the_timeout(result)
    assert "storage unreachable" in result.log
    assert f"http://127.0.0.1:{closed_port}/devstoreaccount1" in result.log


def test_an_undefined_connection_fails_at_once_saying_where_to_define_it(checks, storage):
    storage.monkeypatch.delenv("AIRFLOW_CONN_PAINTING_BLOB_STORAGE")

    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_once(result, SENSOR)
    assert "connection 'painting_blob_storage' is not defined" in result.log
