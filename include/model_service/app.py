"""FastAPI app of the reference defect-detection model service.

Its contract: docs/model-service-contract.md.

Endpoints: ``GET /health``, ``/ready``, ``/startup``, ``/``, ``/model/info``,
``POST /predict/`` (204 normal, 200 anomaly record, 422 invalid body, 500 model not loaded) and
``POST /predict/file`` (multipart CSV upload).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, File, HTTPException, Response, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from include.model_service.model import (
    CSV_COLUMNS,
    MCH_THRESHOLD,
    MODEL_VERSION,
    THRESHOLD,
    ThicknessModel,
)

SERVICE_NAME = "painting-process-equipment-defect-detection-model-service"
SERVICE_VERSION = "1.0.0-reference"
SERVICE_DESCRIPTION = (
    "Reference stand-in for the painting-process equipment defect-detection model service: "
    "range checks, a linear thickness model and exact linear attributions."
)
AnomalyBody = Literal["flat", "predictions"]

# Environment used to pass settings to uvicorn worker processes (see create_app_from_env).
ENV_DATA = "MODEL_SERVICE_DATA"
ENV_ANOMALY_BODY = "MODEL_SERVICE_ANOMALY_BODY"
ENV_ISSUE_LOG = "MODEL_SERVICE_ISSUE_LOG"
ENV_MODEL_VERSION = "MODEL_SERVICE_MODEL_VERSION"
ENV_THRESHOLD = "MODEL_SERVICE_THRESHOLD"
ENV_MCH_THRESHOLD = "MODEL_SERVICE_MCH_THRESHOLD"

logger = logging.getLogger(__name__)
_DATETIME = TypeAdapter(datetime)


class PaintingRecord(BaseModel):
    """Request body of ``POST /predict/`` (and the anomaly answer, with ``issue`` filled in)."""

    # Non-finite floats are rejected (422): they cannot be judged nor written back as JSON.
    model_config = ConfigDict(allow_inf_nan=False)

    machineId: str
    timeStamp: str
    thick: float
    voltage: float
    current: float
    temper: float
    issue: str = ""
    isSolved: bool = False

    @field_validator("timeStamp")
    @classmethod
    def _parsable_timestamp(cls, value: str) -> str:
        # Validate like a pydantic datetime field, but keep the caller's exact string for the echo.
        _DATETIME.validate_python(value)
        return value


class FilePredictions(BaseModel):
    """Answer of ``POST /predict/file``."""

    filename: str | None
    predictions: list[PaintingRecord] = Field(default_factory=list)


def _load_model(data_path: str | None) -> ThicknessModel | None:
    if data_path is None:
        return None
    try:
        return ThicknessModel.from_csv(data_path)
    except (OSError, ValueError) as exc:
        logger.warning("model not loaded from %s: %s", data_path, exc)
        return None


def create_app(
    data_path: str | None,
    anomaly_body: AnomalyBody = "flat",
    issue_log: str | None = None,
    *,
    model_version: str = MODEL_VERSION,
    threshold: float = THRESHOLD,
    mch_threshold: float = MCH_THRESHOLD,
) -> FastAPI:
    """Build the service app; the model is fitted on ``data_path`` now (None = no model).

    ``anomaly_body="predictions"`` wraps the 200 answer as ``{"predictions": [record]}`` (the shape
    the original simulator expected; a test switch). ``issue_log`` is a JSON-lines file to which
    every anomaly record is appended (None = not written). ``model_version``, ``threshold`` and
    ``mch_threshold`` make it another model version (:meth:`ThicknessModel.version_of`).
    """
    if anomaly_body not in ("flat", "predictions"):
        raise ValueError(f"anomaly_body must be 'flat' or 'predictions', not {anomaly_body!r}")
    fitted = _load_model(data_path)
    model = fitted and fitted.version_of(model_version, threshold, mch_threshold)
    log_lock = threading.Lock()

    app = FastAPI(title=SERVICE_NAME, version=SERVICE_VERSION, description=SERVICE_DESCRIPTION)
    app.state.model = model

    def require_model() -> ThicknessModel:
        if model is None:
            raise HTTPException(status_code=500, detail="Model not loaded")
        return model

    def log_issues(records: list[dict[str, object]]) -> None:
        if issue_log is None or not records:
            return
        path = Path(issue_log)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        with log_lock, path.open("a", encoding="utf-8") as fh:
            fh.write(lines)

    def judge_record(record: PaintingRecord) -> dict[str, object] | None:
        issue = require_model().judge(record.model_dump())
        if issue is None:
            return None
        return record.model_copy(update={"issue": issue, "isSolved": False}).model_dump()

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: always healthy while the process serves requests."""
        return {"status": "healthy", "timestamp": datetime.now(UTC).isoformat()}

    @app.get("/ready")
    def ready() -> JSONResponse:
        """Readiness: 200 when the model is loaded, 503 otherwise."""
        if model is None:
            return JSONResponse({"status": "not ready", "detail": "Model not loaded"}, 503)
        return JSONResponse({"status": "ready"})

    @app.get("/startup")
    def startup() -> dict[str, str]:
        """Start-up probe: 200 once the app is serving (the model is fitted before that)."""
        return {"status": "started"}

    @app.get("/")
    def root() -> dict[str, str]:
        """Service name, version and description."""
        return {
            "service": SERVICE_NAME,
            "version": SERVICE_VERSION,
            "description": SERVICE_DESCRIPTION,
        }

    @app.get("/model/info")
    def model_info() -> dict[str, object]:
        """Model, training, threshold and feature settings (503 when no model is loaded)."""
        if model is None:
            raise HTTPException(status_code=503, detail="Model not loaded")
        return {**model.info(), "data_path": data_path, "anomaly_body": anomaly_body}

    @app.post("/predict/", response_model=None)
    async def predict(record: PaintingRecord) -> Response | dict[str, object]:
        """204 (no body) for a normal record; 200 with the record and its issue for an anomaly."""
        answer = judge_record(record)
        if answer is None:
            return Response(status_code=204)
        log_issues([answer])
        return {"predictions": [answer]} if anomaly_body == "predictions" else answer

    @app.post("/predict/file")
    async def predict_file(
        file: Annotated[UploadFile, File(description="CSV with the simulator's columns")],
    ) -> FilePredictions:
        """Judge every row of an uploaded CSV; answer the records of the anomalous rows."""
        require_model()
        text = (await file.read()).decode("utf-8-sig")
        reader = csv.DictReader(io.StringIO(text))
        needed = ("machineId", "timeStamp", *CSV_COLUMNS.values())
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise HTTPException(status_code=422, detail=f"missing column(s): {', '.join(missing)}")
        anomalies: list[dict[str, object]] = []
        for line_no, row in enumerate(reader, start=2):
            machine = row["machineId"] or ""
            try:
                record = PaintingRecord(
                    # Same mapping as the simulator: plain machine numbers get the PAINT- prefix.
                    machineId=machine if machine.startswith("PAINT-") else f"PAINT-{machine}",
                    timeStamp=row["timeStamp"],
                    **{field: row[col] for field, col in CSV_COLUMNS.items()},
                )
            except ValidationError as exc:
                raise HTTPException(
                    status_code=422, detail=f"line {line_no}: {exc.errors()[0]['msg']}"
                ) from exc
            answer = judge_record(record)
            if answer is not None:
                anomalies.append(answer)
        log_issues(anomalies)
        return FilePredictions(filename=file.filename, predictions=anomalies)

    return app


def create_app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes: settings come from ``MODEL_SERVICE_*`` env vars."""
    anomaly_body = os.environ.get(ENV_ANOMALY_BODY, "flat")
    if anomaly_body not in ("flat", "predictions"):
        raise ValueError(f"{ENV_ANOMALY_BODY} must be 'flat' or 'predictions'")
    return create_app(
        data_path=os.environ.get(ENV_DATA) or None,
        anomaly_body=anomaly_body,  # type: ignore[arg-type]
        issue_log=os.environ.get(ENV_ISSUE_LOG) or None,
        model_version=os.environ.get(ENV_MODEL_VERSION) or MODEL_VERSION,
        threshold=float(os.environ.get(ENV_THRESHOLD) or THRESHOLD),
        mch_threshold=float(os.environ.get(ENV_MCH_THRESHOLD) or MCH_THRESHOLD),
    )
