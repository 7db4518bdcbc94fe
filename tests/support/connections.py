"""Airflow connections given as environment variables: the storage and the model service.

The values of ``AIRFLOW_CONN_PAINTING_BLOB_STORAGE`` and ``AIRFLOW_CONN_PAINTING_MODEL_SERVICE``
(JSON), built from :mod:`scripts.local_services` like the local stack builds them.
"""

from __future__ import annotations

import json

from scripts import local_services


def http_connection(port: int, host: str = "127.0.0.1") -> str:
    """``AIRFLOW_CONN_PAINTING_MODEL_SERVICE`` for a model service on ``host:port``."""
    return json.dumps(local_services.http_connection(port, host))


def wasb_connection(connection_string: str) -> str:
    """``AIRFLOW_CONN_PAINTING_BLOB_STORAGE`` for a storage connection string."""
    return json.dumps(local_services.wasb_connection(connection_string))
