"""The tests' throw-away AIRFLOW_HOME, set in the environment as soon as this is imported.

Airflow reads its configuration when first imported, so the root conftest imports this module
before anything imports Airflow. A developer's own ``PAINTING_*`` settings (and Variables and
connections given as ``AIRFLOW_VAR_PAINTING_*``/``AIRFLOW_CONN_PAINTING_*``) are removed from
the environment: they must not leak into the tests.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="painting-tests-airflow-"))
atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
)
for name in list(os.environ):  # a developer's own settings must not leak into the tests
    if name.startswith(("AIRFLOW_VAR_PAINTING_", "AIRFLOW_CONN_PAINTING_", "PAINTING_")):
        del os.environ[name]
