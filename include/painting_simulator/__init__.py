"""The painting simulator's domain: plain Python, no Airflow and no pandas at import time.

The DAGs under ``dags/`` are wiring; everything they decide lives here, one job per module. A row
travels ``blob_rows`` (``blob_storage`` → ``csv_format``, cached by ``row_cache``) → ``sequence``
picks the window → ``row_mapping`` makes the request body → ``model_client`` gets the verdict →
``results`` writes the record; ``records`` types each shape on the way.

Core modules:

* ``settings``       every name (DAG ids, connection ids, Variables, kinds, files); RunConfig
* ``records``        the typed records: item, result, row record, failure record
* ``csv_format``     the CSV format: bytes of a blob -> one entry per data row
* ``blob_storage``   blob storage I/O through WasbHook: list, download, version, storage errors
* ``row_cache``      the worker-local cache of parsed blobs (keyed by ETag and csv_format's code)
* ``blob_rows``      the rows of a container's CSV blobs for one task (storage + cache + format)
* ``sequence``       the sequence of all rows, windows over it, and the stored position
* ``row_mapping``    entries -> items: a request body per row, or the row's error
* ``model_client``   the model service: what an answer means, retries, the HttpHook transport
* ``window``         one simulator run's window (the ``pull_window`` task's body)
* ``results``        the one results writer (rows, failure records, replay summaries)
* ``ledger``         JSON-lines files with exactly-once appends (the file store's mechanics)
* ``failures``       failure records from Airflow's failure callbacks
* ``airflow_runtime`` the DAG-side helper: run config from Variables, blob rows, results writer

Sub-packages, one per consumer: ``replay`` (the painting_replay DAG), ``dashboard`` (the UI
plugin's reader), ``checks`` (the connection-check DAGs).
"""
