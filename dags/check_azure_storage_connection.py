"""
### Check the Azure Storage connection

**Checks** that the simulator can read its CSVs: the connection `painting_blob_storage`, the
container (Variable `painting_container`, default `simulator-data`) and the prefix (Variable
`painting_prefix`, default `painting-process-equipment/`).

```
wait_for_blobs (WasbPrefixSensor) ► list_csv_blobs
```

**Success**: `list_csv_blobs` logs how many `.csv` blobs are under the prefix and the first five
with size and last-modified time. The trigger form sets the poke interval (keep it ≥ 10 s) and
the timeout.

**Failures** (the cause is in the task log):

* `connection 'painting_blob_storage' is not defined …` — define it (fails at once).
* `storage unreachable …` — nothing answers at the endpoint (fails at the timeout).
* `storage authentication failed …` — wrong key, SAS token or permissions (fails at once).
* `container '…' not found …` — no such container in that account (fails at once).
* `no CSV under prefix …` — nothing there yet (at the timeout) or no `.csv` (at once).

More: `docs/troubleshooting.md`.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import dag, task

from include.painting_simulator import settings
from include.painting_simulator.checks import sensor_base, storage
from include.painting_simulator.checks.storage_sensor import CsvPrefixSensor, storage_endpoint_of

log = logging.getLogger(settings.STORAGE_CHECK_DAG_ID)

CONTAINER = sensor_base.variable_template(settings.VAR_CONTAINER, settings.DEFAULT_CONTAINER)
PREFIX = sensor_base.variable_template(settings.VAR_PREFIX, settings.DEFAULT_PREFIX)


# Reschedule mode, not deferrable: between pokes the sensor gives its worker slot back, and each
# poke runs this package's own code, so a failure names its cause. The provider's deferrable
# variant reports raw SDK errors from its trigger. Each poke makes one storage request without
# the Azure SDK's own retries (up to a minute per poke on an unreachable endpoint): the poke
# interval is the retry. No Airflow retries either: a check answers within the chosen timeout.
@dag(
    dag_id=settings.STORAGE_CHECK_DAG_ID,
    schedule=None,
    catchup=False,
    is_paused_upon_creation=False,  # manual only: a trigger must run without unpausing first
    doc_md=__doc__,
    tags=["painting", "connection-check", "azure-storage"],
    default_args=sensor_base.DEFAULT_ARGS,
    params=sensor_base.timing_params(
        poke_what="How often the sensor looks for blobs under the prefix.",
        timeout_what="How long to wait for the storage and the blobs before the check fails.",
    ),
)
def check_azure_storage_connection() -> None:
    wait = CsvPrefixSensor(
        task_id="wait_for_blobs",
        wasb_conn_id=settings.BLOB_CONN_ID,
        container_name=CONTAINER,
        prefix=PREFIX,
        mode="reschedule",
        poke_interval=sensor_base.param_template(sensor_base.PARAM_POKE_INTERVAL),
        timeout=sensor_base.param_template(sensor_base.PARAM_TIMEOUT),
    )

    @task(multiple_outputs=False)
    def list_csv_blobs(container: str, prefix: str) -> dict[str, Any]:
        """Log how many CSV blobs there are, and the first five with size and last-modified."""
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
        from airflow.sdk.exceptions import AirflowFailException

        conn_id = settings.BLOB_CONN_ID
        hook = WasbHook(wasb_conn_id=conn_id)
        try:
            client = hook.blob_service_client.get_container_client(container)
            blobs = [
                storage.BlobInfo(blob.name, blob.size, blob.last_modified)
                for blob in client.list_blobs(
                    name_starts_with=prefix, **storage.storage_request_options()
                )
            ]
            csvs, lines = storage.summarize_csv_blobs(blobs, container, prefix, conn_id)
        except Exception as exc:
            failure = storage.storage_failure(
                exc, container, prefix, conn_id, storage_endpoint_of(hook)
            )
            raise AirflowFailException(str(failure)) from None
        for line in lines:
            log.info("%s", line)
        return {
            "count": len(csvs),
            "first": [blob.name for blob in csvs[: storage.FIRST_BLOBS_SHOWN]],
        }

    wait >> list_csv_blobs(container=CONTAINER, prefix=PREFIX)


check_azure_storage_connection()
