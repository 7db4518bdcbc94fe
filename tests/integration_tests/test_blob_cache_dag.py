"""A warm tick of painting_simulator does not download its blob again; a changed blob does.

Counted where it happens: this module starts its own Azurite with ``--debug``, whose log names
every operation it serves (``Operation=Blob_Download``) and the blob it was for.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import local_services

pytestmark = pytest.mark.integration

PREFIX = "painting-process-equipment/"
HEADER = "machineId,timeStamp,Thick,PT_jo_V_1,PT_jo_A_Main_1,PT_jo_TP"


class DebugAzurite:
    """Azurite with its debug log, and the operations it served per blob."""

    def __init__(self, service: local_services.ServiceProcess, debug_log: Path) -> None:
        self.service, self.debug_log = service, debug_log
        self.connection_string = local_services.azurite_connection_string(service.port)

    def operations(self, blob: str) -> Counter[str]:
        """``Operation=...`` lines of the requests on ``blob``, matched by request id."""
        text = self.debug_log.read_text(errors="replace")
        on_blob = set(re.findall(rf"^\S+ (\S+) info: .*Blob={re.escape(blob)}$", text, re.M))
        return Counter(
            op for request, op in re.findall(r"^\S+ (\S+) info: .*Operation=(\w+)", text, re.M)
            if request in on_blob
        )  # fmt: skip


@pytest.fixture(scope="module")
def debug_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DebugAzurite]:
    root = tmp_path_factory.mktemp("azurite-debug")
    port = local_services.free_port()
    service = local_services.azurite(root / "data", port, root / "azurite.log")
    service.command += ["--debug", str(root / "debug.log")]
    with service:
        yield DebugAzurite(service, root / "debug.log")


def rows(count: int, thick: str = "19.89") -> bytes:
    lines = [
        f"1,2025-07-23T09:{i // 60:02d}:{i % 60:02d},{thick},258.4,68.9,34.4" for i in range(count)
    ]
    return ("\n".join([HEADER, *lines]) + "\n").encode()


def test_a_warm_tick_reads_only_properties_and_a_new_etag_rebuilds(
    simulator, debug_azurite, tmp_path
):
    container = f"cache-{uuid.uuid4().hex[:12]}"
    blob = PREFIX + "line.csv"
    simulator.monkeypatch.setenv(  # this module's Azurite, not the session one
        "AIRFLOW_CONN_PAINTING_BLOB_STORAGE",
        json.dumps(local_services.wasb_connection(debug_azurite.connection_string)),
    )
    simulator.set_variable("painting_container", container)
    simulator.monkeypatch.setenv("PAINTING_CACHE_DIR", str(tmp_path / "row-cache"))
    local_services.upload_blobs(debug_azurite.connection_string, container, {blob: rows(50)})
    dag = simulator.dag()

    assert simulator.run(dag=dag).state == "success"  # cold: downloads once, builds the cache
    cold = debug_azurite.operations(blob)
    assert cold["Blob_Download"] == 1
    assert list((tmp_path / "row-cache").glob("*.rows"))

    for _ in range(2):
        assert simulator.run(dag=dag).state == "success"  # warm
    warm = debug_azurite.operations(blob) - cold
    assert warm == Counter({"Blob_GetProperties": 2})  # one properties request per tick
    assert simulator.position()["row"] == 30

    # The blob changes (new ETag): the next tick downloads it once and reads the new rows.
    local_services.upload_blobs(
        debug_azurite.connection_string, container, {blob: rows(50, thick="30.00")}
    )
    before = debug_azurite.operations(blob)
    run = simulator.run(dag=dag)
    assert run.state == "success"
    changed = debug_azurite.operations(blob) - before
    assert changed["Blob_Download"] == 1
    anomalies = [r for r in simulator.ledger("anomaly") if r["run_id"] == run.run_id]
    thick = {r["original_data"]["thick"] for r in anomalies}
    assert thick == {30.0}  # rows 30..39 of the new version: all far too thick
    assert len(list((tmp_path / "row-cache").glob("*.rows"))) == 1  # the old version is gone

    # Wiping the cache costs one download, nothing else.
    for path in (tmp_path / "row-cache").iterdir():
        path.unlink()
    before = debug_azurite.operations(blob)
    assert simulator.run(dag=dag).state == "success"
    assert (debug_azurite.operations(blob) - before)["Blob_Download"] == 1

    # A cache directory that cannot be created only costs speed: the tick still succeeds.
    (tmp_path / "a-file").write_text("not a directory")
    simulator.monkeypatch.setenv("PAINTING_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    assert simulator.run(dag=dag).state == "success"
