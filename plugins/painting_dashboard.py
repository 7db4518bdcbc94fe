"""Painting anomalies: a dashboard of the simulator's ledgers inside the Airflow UI.

An Airflow 3 plugin, served by the api-server:

* ``fastapi_apps``: a FastAPI app under ``/painting`` with the page (``/painting/``), its
  static files (``/painting/static/``, Chart.js vendored: no CDN) and a JSON API
  (``/painting/api/summary``, ``/painting/api/anomalies/recent``, and for the "Model checks"
  section ``/painting/api/replays/recent``, ``/painting/api/shadow``,
  ``/painting/api/shadow/disagreements``).
* ``external_views``: "Painting anomalies" in the UI's navigation (Browse menu), showing the page
  inside the UI.

Airflow does not authenticate plugin apps (a mounted app inherits none of the core API's
dependencies), so every route here runs Airflow's own check: the JWT from the ``_token`` cookie
(the UI's session) or an ``Authorization: Bearer`` header is validated by the auth manager, and
the user must be allowed to read the ``painting_simulator`` DAG. The page redirects to the login
page when there is no valid session; the API answers 401/403. The static files (the page's
script, style sheet and the chart library; no data) are public, like the UI's own bundles.

The answers come from the results store the DAGs write (:func:`reader`): the results database
when Airflow has the connection ``painting_results_db``
(:mod:`include.painting_simulator.dashboard.database_reader`, one engine per process), else the
ledgers (:mod:`include.painting_simulator.dashboard.ledger_reader`); both without Airflow. This
module only adds what needs Airflow: the connection, the output directory (Variable
``painting_output_dir``) and the simulator's state from the metadata DB. Airflow imports stay
inside functions: every Airflow process loads plugins, only the api-server uses this one.

When the results database cannot be read (the server down, a refused login, a table of the wrong
shape, a newer schema: the store's :class:`ResultsDatabaseError`), every API route answers
**503** with the store's message as ``detail`` (it names the connection, never its password);
any other exception stays a 500 (docs/dashboard.md#errors).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from airflow.plugins_manager import AirflowPlugin

from include.painting_simulator import settings

DAG_ID = settings.SIMULATOR_DAG_ID
URL_PREFIX = "/painting"
STATIC_DIR = Path(__file__).resolve().parent / "painting_dashboard_static"
# Time ranges the page offers, in minutes (None: everything in the ledgers).
RANGES: dict[str, int | None] = {
    "15m": 15,
    "1h": 60,
    "6h": 360,
    "24h": 1440,
    "7d": 7 * 1440,
    "30d": 30 * 1440,
    "all": None,
}
MAX_PAGE = 500
MAX_REPORTS = 100


async def require_read_access(request: Request) -> Any:
    """Airflow's authentication and authorization for this app's routes.

    The same functions guard the core API: ``get_user`` validates the token (Bearer header
    first, else the UI's ``_token`` cookie) through the auth manager, and
    ``requires_access_dag`` asks the auth manager whether the user may read the DAG.
    """
    from fastapi.security import HTTPBearer

    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag

    credentials = await HTTPBearer(auto_error=False)(request)
    user = await get_user(request, None, credentials)
    await run_in_threadpool(requires_access_dag("GET", param_dag_id=DAG_ID), request, user)
    return user


def output_dir() -> str:
    """Where the DAG writes its ledgers: the Variable, else ``$AIRFLOW_HOME/painting_logs``."""
    from airflow.models.variable import Variable

    return settings.output_dir(lambda name: Variable.get(name, default_var=None))


_READERS: dict[str, Any] = {}
_READERS_LOCK = threading.Lock()


def reader() -> Any:
    """Who answers: a :class:`DatabaseReader` on the results database when Airflow has the
    connection ``painting_results_db`` (its engine made once per process and connection), else
    the output directory's :func:`ledger_set`."""
    from include.painting_simulator import airflow_runtime

    connection = airflow_runtime.results_connection()
    if connection is None:
        from include.painting_simulator.dashboard.ledger_reader import ledger_set

        return ledger_set(output_dir())
    key = f"{connection.conn_type} {connection.get_uri()}"
    with _READERS_LOCK:
        if key not in _READERS:
            from include.painting_simulator.dashboard.database_reader import DatabaseReader
            from include.painting_simulator.results_db import DatabaseResults

            conn_id = settings.RESULTS_DB_CONN_ID
            engine = airflow_runtime.results_engine(connection, conn_id, pooled=True)
            _READERS[key] = DatabaseReader(DatabaseResults(engine, conn_id))
        return _READERS[key]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def simulator_state(run_counts: Any) -> dict[str, Any]:
    """The DAG's state from the metadata DB: paused or not, its last run, the next one."""
    from sqlalchemy import select

    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        dag = session.get(DagModel, DAG_ID)
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == DAG_ID).order_by(DagRun.id.desc()).limit(1)
        ).first()
        last_run = None
        if run is not None:
            last_run = {
                "run_id": run.run_id,
                "state": str(run.state) if run.state else None,
                "run_type": str(run.run_type) if run.run_type else None,
                "start_date": _iso(run.start_date),
                "end_date": _iso(run.end_date),
                "records": run_counts(run.run_id),
            }
        if dag is None:
            return {"dag_id": DAG_ID, "status": "not registered", "last_run": last_run}
        return {
            "dag_id": DAG_ID,
            "status": "paused" if dag.is_paused else "running",
            "is_paused": bool(dag.is_paused),
            "next_run": None if dag.is_paused else _iso(dag.next_dagrun_create_after),
            "last_run": last_run,
        }


def create_app() -> FastAPI:
    from include.painting_simulator.dashboard.answers import now_minute
    from include.painting_simulator.results_db import ResultsDatabaseError

    app = FastAPI(
        title="Painting anomalies",
        description="The painting simulator's ledgers, for the dashboard in the Airflow UI.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    guarded = [Depends(require_read_access)]

    @app.exception_handler(ResultsDatabaseError)
    async def results_database_unavailable(
        request: Request, exc: ResultsDatabaseError
    ) -> JSONResponse:
        """The results database cannot be read: 503, its message (the connection named, never
        the password) as ``detail``. Only this error: any other stays a 500."""
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.get("/", include_in_schema=False)
    async def page(request: Request) -> Any:
        """The dashboard; without a valid session, the auth manager's login page."""
        try:
            await require_read_access(request)
        except HTTPException as exc:
            if exc.status_code != 401:
                raise
            from airflow.api_fastapi.app import get_auth_manager

            login = get_auth_manager().get_url_login(next_url=str(request.url))
            return RedirectResponse(login, status_code=303)
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    def range_minutes(range_: str) -> tuple[int | None, int]:
        """The first minute of a named range (None: everything) and the minute after now."""
        if range_ not in RANGES:
            raise HTTPException(422, f"range={range_!r} is not one of {', '.join(RANGES)}")
        end = now_minute() + 1
        minutes = RANGES[range_]
        return None if minutes is None else end - minutes, end

    @app.get("/api/summary", dependencies=guarded)
    def summary(
        range_: str = Query("24h", alias="range", description=f"One of {', '.join(RANGES)}"),
    ) -> dict[str, Any]:
        """Counts, anomaly rate over time, anomalies by issue code and by machine in the time
        range ending now, all-time totals, and the simulator's state."""
        store = reader()
        result = store.summary(*range_minutes(range_))
        if result["indexing"] is None:
            result["range"]["name"] = range_
            run_counts = store.run_counts
        else:  # the first pass over big ledgers is still running: the state, without counts
            run_counts = lambda run_id: None  # noqa: E731
        result["simulator"] = simulator_state(run_counts)
        result["generated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        return result

    @app.get("/api/replays/recent", dependencies=guarded)
    def recent_replays(limit: int = Query(10, ge=1, le=MAX_REPORTS)) -> dict[str, Any]:
        """The newest painting_replay reports (thresholds, throughput, latency, agreement,
        accuracy), newest first."""
        return reader().replay_reports(limit)

    @app.get("/api/shadow", dependencies=guarded)
    def shadow(
        range_: str = Query("24h", alias="range", description=f"One of {', '.join(RANGES)}"),
    ) -> dict[str, Any]:
        """Shadow mode's agreement with the candidate model service over the time range, in
        the summary's buckets (the simulator's rows; replay runs left out)."""
        result = reader().shadow(*range_minutes(range_))
        if result["indexing"] is None:
            result["range"]["name"] = range_
        return result

    @app.get("/api/shadow/disagreements", dependencies=guarded)
    def disagreements(limit: int = Query(20, ge=1, le=MAX_REPORTS)) -> dict[str, Any]:
        """The newest rows on which production and the candidate disagreed, newest first."""
        return reader().disagreements(limit)

    @app.get("/api/anomalies/recent", dependencies=guarded)
    def recent_anomalies(
        limit: int = Query(10, ge=1, le=MAX_PAGE), offset: int = Query(0, ge=0)
    ) -> dict[str, Any]:
        """The newest anomaly records as the ledger holds them, newest first, a page at a
        time (``offset`` counts from the newest)."""
        return reader().recent("anomaly", limit, offset)

    return app


class PaintingDashboardPlugin(AirflowPlugin):
    name = "painting_dashboard"
    fastapi_apps = [  # noqa: RUF012 (the plugin interface is class attributes)
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "Painting anomalies"}
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Painting anomalies",
            "href": URL_PREFIX.lstrip("/") + "/",  # relative to the UI's base URL
            "destination": "nav",
            "url_route": "painting-anomalies",
            "category": "browse",
        }
    ]
