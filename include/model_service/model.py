"""Decision logic of the reference defect-detection model (pure Python + numpy, no web framework).

It follows the model service contract in docs/model-service-contract.md:

1. Range checks (voltage [20, 350], current [5, 400], temperature [25, 40], bounds inclusive);
   the first one violated gives ``PAINT-EQ-VOL-INVALID`` / ``-CUR-INVALID`` / ``-TEM-INVALID``.
2. A regression predicts thickness from (voltage, current, temperature); a row whose relative
   error ``|thick - predicted| / predicted`` is below 0.1 is normal (``None``).
3. Otherwise per-feature attributions name the cause: ``PAINT-EQ-MCH`` if the sum of absolute
   attributions is below 2.0, else the feature with the largest absolute attribution gives
   ``PAINT-EQ-VOL`` / ``-CUR`` / ``-TEM`` with ``-HIGH`` (attribution > 0) or ``-LOW``.

The original service used a random forest with SHAP; this stand-in uses a linear regression, for
which the exact SHAP values are known in closed form (see :meth:`ThicknessModel.attributions`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from include.model_service.issue_codes import (
    FEATURES,
    MACHINE_ISSUE,
    feature_issue,
    invalid_issue,
)

# CSV column of each request field, as the simulator maps them.
CSV_COLUMNS: dict[str, str] = {
    "thick": "Thick",
    "voltage": "PT_jo_V_1",
    "current": "PT_jo_A_Main_1",
    "temper": "PT_jo_TP",
}
RANGES: dict[str, tuple[float, float]] = {
    "voltage": (20.0, 350.0),
    "current": (5.0, 400.0),
    "temper": (25.0, 40.0),
}
THRESHOLD = 0.1  # relative thickness error at or above which a row is an anomaly
MCH_THRESHOLD = 2.0  # sum of |attributions| below which the machine (not an input) is blamed
# The model version /model/info names when none is given (another --model-version, --threshold
# or --mch-threshold makes a candidate that disagrees with this one on known rows).
MODEL_VERSION = "reference-1"


def check_version(version: str, threshold: float, mch_threshold: float) -> None:
    """Refuse decision settings no model version can have (ValueError naming the setting)."""
    if not threshold > 0:
        raise ValueError(f"threshold must be greater than 0, not {threshold}")
    if not mch_threshold >= 0:
        raise ValueError(f"mch_threshold must be at least 0, not {mch_threshold}")
    if not version.strip():
        raise ValueError("the model version must not be empty")


def range_issue(record: Mapping[str, float]) -> str | None:
    """Return the ``-INVALID`` code of the first out-of-range input, or ``None`` if all are valid.

    A non-finite value (NaN, inf) is out of range.
    """
    for feature in FEATURES:
        lo, hi = RANGES[feature]
        if not lo <= float(record[feature]) <= hi:  # NaN fails both comparisons
            return invalid_issue(feature)
    return None


def read_samples(path: str | Path) -> list[dict[str, float]]:
    """Read training samples (keys thick/voltage/current/temper) from a simulator-style CSV.

    Rows with a missing or non-numeric value in one of the four columns are skipped.
    Raises ``ValueError`` if a required column is absent.
    """
    samples: list[dict[str, float]] = []
    with Path(path).open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in CSV_COLUMNS.values() if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        for row in reader:
            try:
                sample = {field: float(row[col]) for field, col in CSV_COLUMNS.items()}
            except (TypeError, ValueError):
                continue
            if all(math.isfinite(v) for v in sample.values()):
                samples.append(sample)
    return samples


@dataclass(frozen=True)
class ThicknessModel:
    """Linear thickness model ``thick = intercept + sum(coef_i * x_i)`` with exact attributions."""

    coefficients: tuple[float, float, float]
    intercept: float
    feature_means: tuple[float, float, float]
    training_rows: int
    # The decision settings (the fit always trims at the contract's THRESHOLD).
    threshold: float = THRESHOLD
    mch_threshold: float = MCH_THRESHOLD
    version: str = MODEL_VERSION

    @classmethod
    def fit(cls, rows: Iterable[Mapping[str, float]]) -> ThicknessModel:
        """Fit by least squares on ``rows`` (mappings with thick/voltage/current/temper).

        Only rows passing the range checks are used. After a first fit, rows whose relative
        residual is >= :data:`THRESHOLD` are dropped and the model is refitted once, so the
        anomalies in the data do not bias it. Deterministic for a given input order.
        Raises ``ValueError`` if fewer than 4 usable rows remain.
        """
        valid = [r for r in rows if range_issue(r) is None and math.isfinite(float(r["thick"]))]
        x = np.array([[float(r[f]) for f in FEATURES] for r in valid], dtype=float).reshape(-1, 3)
        y = np.array([float(r["thick"]) for r in valid], dtype=float)
        first = cls._lstsq(x, y)
        predicted = first.intercept + x @ np.array(first.coefficients)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(y - predicted) / predicted
        keep = (predicted > 0) & (rel < THRESHOLD)
        return cls._lstsq(x[keep], y[keep])

    @classmethod
    def _lstsq(cls, x: np.ndarray, y: np.ndarray) -> ThicknessModel:
        if len(y) < len(FEATURES) + 1:
            raise ValueError(f"need at least {len(FEATURES) + 1} usable rows, got {len(y)}")
        design = np.column_stack([np.ones(len(y)), x])
        solution, *_ = np.linalg.lstsq(design, y, rcond=None)
        means = x.mean(axis=0)
        return cls(
            coefficients=tuple(float(c) for c in solution[1:]),
            intercept=float(solution[0]),
            feature_means=tuple(float(m) for m in means),
            training_rows=len(y),
        )

    @classmethod
    def from_csv(cls, path: str | Path) -> ThicknessModel:
        """Fit the model on a simulator-style CSV (see :func:`read_samples`)."""
        return cls.fit(read_samples(path))

    def version_of(self, version: str, threshold: float, mch_threshold: float) -> ThicknessModel:
        """The same fit judging with other decision settings: another model version (a
        candidate), e.g. a tighter thickness tolerance or another attribution threshold."""
        check_version(version, threshold, mch_threshold)
        return replace(self, threshold=threshold, mch_threshold=mch_threshold, version=version)

    def predict(self, record: Mapping[str, float]) -> float:
        """Return the predicted thickness for a record with voltage/current/temper."""
        return self.intercept + sum(
            c * float(record[f]) for c, f in zip(self.coefficients, FEATURES, strict=True)
        )

    def attributions(self, record: Mapping[str, float]) -> dict[str, float]:
        """Return the per-feature attribution ``phi_i = coef_i * (x_i - mean_i)``.

        For a linear model with independent features this is exactly what SHAP's linear explainer
        returns (with the training data as background): the attributions sum to
        ``predict(record) - predict(feature_means)``.
        """
        return {
            f: c * (float(record[f]) - m)
            for f, c, m in zip(FEATURES, self.coefficients, self.feature_means, strict=True)
        }

    def judge(self, record: Mapping[str, float]) -> str | None:
        """Return the issue code for a record (thick/voltage/current/temper), ``None`` if normal.

        A non-positive prediction (only possible far outside the training data) counts as an
        anomaly, since no relative error can be computed.
        """
        invalid = range_issue(record)
        if invalid is not None:
            return invalid
        predicted = self.predict(record)
        thick = float(record["thick"])
        if predicted > 0 and abs(thick - predicted) / predicted < self.threshold:
            return None
        phi = self.attributions(record)
        if sum(abs(v) for v in phi.values()) < self.mch_threshold:
            return MACHINE_ISSUE
        feature = max(FEATURES, key=lambda f: abs(phi[f]))  # ties: first feature in FEATURES
        return feature_issue(feature, phi[feature] > 0)

    def info(self) -> dict[str, object]:
        """Return a JSON-ready description of the model and its decision settings."""
        return {
            "model_type": "LinearRegression (numpy least squares, one trimming pass)",
            "explainer": "linear attribution coef_i * (x_i - mean_i), as SHAP LinearExplainer",
            "features": list(FEATURES),
            "coefficients": dict(zip(FEATURES, self.coefficients, strict=True)),
            "intercept": self.intercept,
            "feature_means": dict(zip(FEATURES, self.feature_means, strict=True)),
            "training_rows": self.training_rows,
            "model_version": self.version,
            "threshold": self.threshold,
            "mch_threshold": self.mch_threshold,
            "ranges": {f: list(r) for f, r in RANGES.items()},
        }
