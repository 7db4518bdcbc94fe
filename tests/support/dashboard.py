"""What the dashboard plugin's tests share: logging in to Airflow, the api-server, markup rows.

Both ways of serving the plugin use the simple auth manager (Airflow's default) with its
generated ``admin`` password, and JWTs signed with :data:`JWT_SECRET`.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts import local_services

ADMIN = "admin"


def admin_password() -> str:
    """The password the simple auth manager generated for ``admin`` in this AIRFLOW_HOME."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    path = Path(SimpleAuthManager.get_generated_password_file())
    return json.loads(path.read_text())[ADMIN]


@dataclass
class AirflowApp:
    client: Any  # starlette.testclient.TestClient

    def token(self) -> str:
        """A JWT from the auth manager's real login endpoint."""
        body = {"username": ADMIN, "password": admin_password()}
        answer = self.client.post("/auth/token", json=body)
        assert answer.status_code == 201, answer.text
        return answer.json()["access_token"]


# The api-server signs its JWTs with [api_auth] jwt_secret. Airflow generates one when it writes
# a fresh airflow.cfg, which depends on which test imported Airflow first: set one for ours.
JWT_SECRET = secrets.token_urlsafe(64)


@dataclass
class ApiServer:
    service: local_services.ServiceProcess
    base_url: str


def chromium_available() -> bool:
    return os.path.exists("/usr/bin/chromium") and os.path.exists("/usr/bin/chromedriver")


# Two rows for a window with every outcome (with those of tests.support.rows, whose verdicts are
# known) whose machine ids are markup: a dashboard that put data into HTML would run them.
SCRIPT_MACHINE = "<script>alert(1)</script>"
IMG_MACHINE = "<img src=x onerror=window.__xss=1>"
XSS_ROWS = (
    f"{SCRIPT_MACHINE},2025-07-23T08:02:00,19.90,400.0,260.1,70.0,34.0,4.60,OP-03",
    f"{IMG_MACHINE},2025-07-23T08:02:10,19.90,260.0,260.1,70.0,18.0,4.60,OP-03",
)
