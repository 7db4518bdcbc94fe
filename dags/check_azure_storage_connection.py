"""
### Check the Azure Storage connection

Trigger it (▶) to see whether the simulator can read its CSVs: the connection
`painting_blob_storage`, the container (Variable `painting_container`, default `simulator-data`)
and the prefix (Variable `painting_prefix`, default `painting-process-equipment/`).

```
wait_for_blobs (WasbPrefixSensor) ► list_csv_blobs
```

* **wait_for_blobs** pokes the prefix every *poke interval* until a blob is stored under it, for
  at most *timeout* seconds (both are fields of the trigger form).
* **list_csv_blobs** lists the `.csv` blobs under the prefix (recursively, sorted by name) and
  logs how many there are and the first five with their size and last-modified time.

A red run names the cause in the task log:

* `connection 'painting_blob_storage' is not defined …`: define it. Fails at once.
* `storage unreachable …`: nothing answered at the endpoint (host and port of the connection
  string). Fails at the timeout: the storage may still be starting.
* `storage authentication failed …`: the account key, SAS token or permissions are wrong (the
  key itself is never logged). Fails at once.
* `container '…' not found …`: no such container in that account. Fails at once.
* `no CSV under prefix …`: the prefix is empty (fails at the timeout: the files may still be
  on their way) or holds no `.csv` (fails at once, naming what is there).

**Reschedule mode, not deferrable.** Between pokes the sensor gives its worker slot back (mode
`reschedule`), so a waiting check holds no slot. The provider's deferrable variant would wait
in the triggerer instead, but its trigger reports raw SDK errors and the deferral timeout is
generic; a poke in reschedule mode runs this package's own code, so a failure names its cause,
and it needs nothing but a scheduler. Each poke makes one storage request without the Azure
SDK's own retries (they would wait up to a minute per poke on an unreachable endpoint): the
sensor's poke interval is the retry.

Keep the poke interval at 10 s or more on a real scheduler: with a few seconds, Airflow 3.3's
scheduler can re-queue the next poke before it has processed the end of the previous one and
then marks the sensor failed ("… finished with state success, but the task instance's state
attribute is queued", apache/airflow#71172).

No Airflow retries: the sensor already waits and pokes again, and a check should answer within
the timeout you chose, not three times that.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.providers.microsoft.azure.sensors.wasb import WasbPrefixSensor
from airflow.sdk import dag, task

from include.painting_simulator import connection_checks as checks
from include.painting_simulator import settings

log = logging.getLogger("check_azure_storage_connection")

CONTAINER = checks.variable_template(settings.VAR_CONTAINER, settings.DEFAULT_CONTAINER)
PREFIX = checks.variable_template(settings.VAR_PREFIX, settings.DEFAULT_PREFIX)


def _endpoint(hook: Any) -> str | None:
    try:
        return checks.storage_endpoint(hook.blob_service_client.url)
    except Exception:  # a connection too broken to name an endpoint: the cause says why
        return None


class CsvPrefixSensor(checks.CheckSensorMixin, WasbPrefixSensor):
    """``WasbPrefixSensor`` with its timing from DAG params and failures that name the cause."""

    template_fields = (*WasbPrefixSensor.template_fields, *checks.TIMING_FIELDS)

    def __init__(self, **kwargs: Any) -> None:
        # Airflow applies default_args only to an __init__ the operator class itself defines.
        super().__init__(**kwargs)

    def poke(self, context: Any) -> bool:
        # One storage request per poke, never waiting longer than the check's timeout.
        self.check_options = checks.storage_request_options(limit=float(self.timeout))
        return super().poke(context)

    def explain(self, exc: BaseException) -> checks.CheckFailed:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        endpoint = _endpoint(WasbHook(wasb_conn_id=self.wasb_conn_id))
        return checks.storage_failure(
            exc, self.container_name, self.prefix, self.wasb_conn_id, endpoint
        )

    def not_yet(self) -> str:
        return checks.no_blobs(self.container_name, self.prefix, self.wasb_conn_id)


@dag(
    dag_id="check_azure_storage_connection",
    schedule=None,
    catchup=False,
    is_paused_upon_creation=False,  # manual only: a trigger must run without unpausing first
    doc_md=__doc__,
    tags=["painting", "connection-check", "azure-storage"],
    default_args=checks.DEFAULT_ARGS,
    params=checks.timing_params(
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
        poke_interval=checks.param_template(checks.PARAM_POKE_INTERVAL),
        timeout=checks.param_template(checks.PARAM_TIMEOUT),
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
                checks.BlobInfo(blob.name, blob.size, blob.last_modified)
                for blob in client.list_blobs(
                    name_starts_with=prefix, **checks.storage_request_options()
                )
            ]
            csvs, lines = checks.summarize_csv_blobs(blobs, container, prefix, conn_id)
        except Exception as exc:
            failure = checks.storage_failure(exc, container, prefix, conn_id, _endpoint(hook))
            raise AirflowFailException(str(failure)) from None
        for line in lines:
            log.info("%s", line)
        return {
            "count": len(csvs),
            "first": [blob.name for blob in csvs[: checks.FIRST_BLOBS_SHOWN]],
        }

    wait >> list_csv_blobs(container=CONTAINER, prefix=PREFIX)


check_azure_storage_connection()
