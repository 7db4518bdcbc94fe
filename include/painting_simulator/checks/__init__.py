"""The connection-check DAGs' conclusions (plain Python) and their sensor classes (Airflow glue).

* :mod:`.sensor_base` what both sensors share: timing from params, :class:`CheckFailed`;
* :mod:`.storage` / :mod:`.storage_sensor` the storage check (``check_azure_storage_connection``);
* :mod:`.model_service` / :mod:`.model_service_sensor` the model-service check
  (``check_model_service_connection``).
"""
