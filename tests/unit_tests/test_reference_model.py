"""Tests of the reference model's decision rules (include/model_service/model.py)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from include.model_service.model import (
    MACHINE_ISSUE,
    ThicknessModel,
    range_issue,
    read_samples,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CSV = REPO_ROOT / "include" / "sample_data" / "painting_sample.csv"

# Known law used for the synthetic training set: thick = -17 + 0.05 V + 0.1 A + 0.5 T,
# which gives 20 µm at the grid means (260 V, 70 A, 34 °C).
COEF = {"voltage": 0.05, "current": 0.1, "temper": 0.5}
INTERCEPT = -17.0


def _law(v: float, a: float, t: float) -> float:
    return INTERCEPT + COEF["voltage"] * v + COEF["current"] * a + COEF["temper"] * t


def _grid() -> list[dict[str, float]]:
    # A symmetric grid: feature means are exactly (260, 70, 34).
    rows = []
    for v in (250.0, 260.0, 270.0):
        for a in (60.0, 70.0, 80.0):
            for t in (32.0, 34.0, 36.0):
                rows.append({"voltage": v, "current": a, "temper": t, "thick": _law(v, a, t)})
    return rows


@pytest.fixture(scope="module")
def exact_model() -> ThicknessModel:
    return ThicknessModel.fit(_grid())


@pytest.fixture(scope="module")
def sample_model() -> ThicknessModel:
    return ThicknessModel.from_csv(SAMPLE_CSV)


def rec(thick: float, voltage: float = 260.0, current: float = 70.0, temper: float = 34.0):
    return {"thick": thick, "voltage": voltage, "current": current, "temper": temper}


def test_fit_recovers_the_law(exact_model: ThicknessModel) -> None:
    assert exact_model.coefficients == pytest.approx(tuple(COEF.values()), abs=1e-9)
    assert exact_model.intercept == pytest.approx(INTERCEPT, abs=1e-7)
    assert exact_model.feature_means == pytest.approx((260.0, 70.0, 34.0))
    assert exact_model.training_rows == 27
    assert exact_model.predict(rec(0, 260, 70, 34)) == pytest.approx(20.0)


def test_fit_ignores_out_of_range_rows_and_trims_outliers() -> None:
    rows = _grid()
    rows.append({"voltage": 500.0, "current": 70.0, "temper": 34.0, "thick": 0.1})  # invalid
    rows.append({"voltage": 260.0, "current": 70.0, "temper": 34.0, "thick": 60.0})  # outlier
    model = ThicknessModel.fit(rows)
    assert model.training_rows == 27
    assert model.coefficients == pytest.approx(tuple(COEF.values()), abs=1e-9)


def test_fit_needs_enough_rows() -> None:
    with pytest.raises(ValueError, match="at least 4 usable rows"):
        ThicknessModel.fit(_grid()[:3])


def test_attributions_are_coef_times_deviation(exact_model: ThicknessModel) -> None:
    phi = exact_model.attributions(rec(0, 300.0, 60.0, 35.0))
    assert phi == pytest.approx({"voltage": 2.0, "current": -1.0, "temper": 0.5})
    # Local accuracy, as for SHAP: attributions sum to prediction minus prediction at the means.
    x = rec(0, 300.0, 60.0, 35.0)
    assert sum(phi.values()) == pytest.approx(
        exact_model.predict(x) - exact_model.predict(rec(0, 260, 70, 34))
    )


def test_range_rule_order_voltage_first(exact_model: ThicknessModel) -> None:
    assert exact_model.judge(rec(20.0, voltage=400.0, temper=50.0)) == "PAINT-EQ-VOL-INVALID"
    assert exact_model.judge(rec(20.0, current=1.0, temper=50.0)) == "PAINT-EQ-CUR-INVALID"
    assert exact_model.judge(rec(20.0, temper=50.0)) == "PAINT-EQ-TEM-INVALID"
    # Range checks come before the thickness rule: a perfect thickness does not rescue the row.
    assert exact_model.judge(rec(_law(10, 70, 34), voltage=10.0)) == "PAINT-EQ-VOL-INVALID"


@pytest.mark.parametrize(
    ("field", "lo", "hi", "code"),
    [
        ("voltage", 20.0, 350.0, "PAINT-EQ-VOL-INVALID"),
        ("current", 5.0, 400.0, "PAINT-EQ-CUR-INVALID"),
        ("temper", 25.0, 40.0, "PAINT-EQ-TEM-INVALID"),
    ],
)
def test_range_bounds_are_inclusive(field: str, lo: float, hi: float, code: str) -> None:
    base = rec(20.0)
    assert range_issue({**base, field: lo}) is None
    assert range_issue({**base, field: hi}) is None
    assert range_issue({**base, field: lo - 0.01}) == code
    assert range_issue({**base, field: hi + 0.01}) == code
    assert range_issue({**base, field: math.nan}) == code


def test_threshold(exact_model: ThicknessModel) -> None:
    predicted = 20.0  # at the means
    assert exact_model.judge(rec(predicted)) is None
    assert exact_model.judge(rec(predicted * 1.0999)) is None
    assert exact_model.judge(rec(predicted * 0.9001)) is None
    assert exact_model.judge(rec(predicted * 1.1001)) == MACHINE_ISSUE
    assert exact_model.judge(rec(predicted * 0.8999)) == MACHINE_ISSUE


def test_mch_when_attributions_small(exact_model: ThicknessModel) -> None:
    # phi: voltage 0.5, current -0.5, temper 0.5 -> sum |phi| = 1.5 < 2.0
    x = rec(0, 270.0, 65.0, 35.0)
    x["thick"] = exact_model.predict(x) * 1.3
    assert exact_model.judge(x) == MACHINE_ISSUE


@pytest.mark.parametrize(
    ("current", "code"),
    [
        (77.0, MACHINE_ISSUE),  # phi voltage 1.2 + current 0.7 = 1.9 < 2.0
        (79.0, "PAINT-EQ-VOL-HIGH"),  # 1.2 + 0.9 = 2.1 -> largest |phi| is voltage
    ],
)
def test_mch_boundary_near_two(exact_model: ThicknessModel, current: float, code: str) -> None:
    x = rec(0, 284.0, current, 34.0)
    x["thick"] = exact_model.predict(x) * 1.3
    assert exact_model.judge(x) == code


@pytest.mark.parametrize(
    ("inputs", "code"),
    [
        ({"voltage": 320.0}, "PAINT-EQ-VOL-HIGH"),  # phi = +3
        ({"voltage": 200.0}, "PAINT-EQ-VOL-LOW"),  # phi = -3
        ({"current": 100.0}, "PAINT-EQ-CUR-HIGH"),  # phi = +3
        ({"current": 40.0}, "PAINT-EQ-CUR-LOW"),  # phi = -3
        ({"temper": 39.0}, "PAINT-EQ-TEM-HIGH"),  # phi = +2.5
        ({"temper": 28.0}, "PAINT-EQ-TEM-LOW"),  # phi = -3
    ],
)
@pytest.mark.parametrize("thick_factor", [1.3, 0.7])
def test_named_feature_and_sign(
    exact_model: ThicknessModel, inputs: dict[str, float], code: str, thick_factor: float
) -> None:
    # The suffix follows the sign of the attribution (the input's deviation), not of the error.
    x = {**rec(0), **inputs}
    x["thick"] = exact_model.predict(x) * thick_factor
    assert exact_model.judge(x) == code


def test_largest_attribution_wins(exact_model: ThicknessModel) -> None:
    # phi: voltage +2.5, current -3.0 -> current, negative.
    x = rec(0, 310.0, 40.0, 34.0)
    x["thick"] = exact_model.predict(x) * 1.5
    assert exact_model.judge(x) == "PAINT-EQ-CUR-LOW"


def test_info_shape(exact_model: ThicknessModel) -> None:
    info = exact_model.info()
    assert info["features"] == ["voltage", "current", "temper"]
    assert info["threshold"] == 0.1
    assert info["mch_threshold"] == 2.0
    assert info["ranges"] == {
        "voltage": [20.0, 350.0],
        "current": [5.0, 400.0],
        "temper": [25.0, 40.0],
    }
    assert info["training_rows"] == 27


def test_sample_model_is_close_to_the_generating_law(sample_model: ThicknessModel) -> None:
    from include.sample_data.generator import TRUE_LAW

    assert sample_model.coefficients == pytest.approx(tuple(TRUE_LAW.values()), rel=0.1)
    assert 2400 <= sample_model.training_rows <= 2700


def test_sample_issue_codes(sample_model: ThicknessModel) -> None:
    samples = read_samples(SAMPLE_CSV)
    assert len(samples) == 3000
    codes = Counter(sample_model.judge(s) for s in samples)
    anomalies = sum(n for code, n in codes.items() if code is not None)
    assert 0.08 <= anomalies / len(samples) <= 0.18
    named = {c for c in codes if c and c.endswith(("-HIGH", "-LOW"))}
    assert len(named) >= 3
    assert codes[MACHINE_ISSUE] > 0
    for code in ("PAINT-EQ-VOL-INVALID", "PAINT-EQ-CUR-INVALID", "PAINT-EQ-TEM-INVALID"):
        assert codes[code] > 0


def test_sample_verdicts_match_planted_kinds(sample_model: ThicknessModel) -> None:
    # Normal rows must be judged normal, and each planted anomaly must be flagged.
    from include.sample_data.generator import anomaly_kinds

    kinds = anomaly_kinds(3000)
    for sample, kind in zip(read_samples(SAMPLE_CSV), kinds, strict=True):
        code = sample_model.judge(sample)
        if kind == "normal":
            assert code is None
        elif kind.endswith("_invalid"):
            assert code is not None
            assert code.endswith("-INVALID")
        else:
            assert code is not None
            assert not code.endswith("-INVALID")


def test_read_samples_skips_bad_rows_and_requires_columns(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text(
        "machineId,Thick,PT_jo_V_1,PT_jo_A_Main_1,PT_jo_TP\n1,20,260,70,34\n2,x,260,70,34\n",
        encoding="utf-8",
    )
    assert read_samples(good) == [rec(20.0)]
    bad = tmp_path / "bad.csv"
    bad.write_text("Thick,PT_jo_V_1\n20,260\n", encoding="utf-8")
    with pytest.raises(ValueError, match="PT_jo_A_Main_1"):
        read_samples(bad)


def test_another_model_version_judges_the_same_fit_with_its_own_settings(
    exact_model: ThicknessModel,
) -> None:
    candidate = exact_model.version_of("candidate-2", threshold=0.05, mch_threshold=0.4)
    assert candidate.coefficients == exact_model.coefficients  # the same fit
    # A row 7 % thick: normal for the reference (tolerance 10 %), an anomaly for the candidate.
    assert exact_model.judge(rec(20.0 * 1.07)) is None
    assert candidate.judge(rec(20.0 * 1.07)) == MACHINE_ISSUE
    # phi voltage 0.5, the others 0: the machine for the reference (sum below 2.0), the
    # voltage for a candidate that blames the machine only below 0.4.
    x = rec(0, 270.0, 70.0, 34.0)
    x["thick"] = exact_model.predict(x) * 1.3
    assert exact_model.judge(x) == MACHINE_ISSUE
    assert candidate.judge(x) == "PAINT-EQ-VOL-HIGH"
    info = candidate.info()
    assert (info["model_version"], info["threshold"], info["mch_threshold"]) == (
        "candidate-2",
        0.05,
        0.4,
    )
    assert exact_model.info()["model_version"] == "reference-1"


def test_a_candidate_disagrees_with_the_reference_on_known_rows_of_the_sample(
    sample_model: ThicknessModel,
) -> None:
    rows = read_samples(SAMPLE_CSV)
    candidate = sample_model.version_of("candidate-2", threshold=0.1, mch_threshold=3.0)
    changed = [
        (i, sample_model.judge(r), candidate.judge(r))
        for i, r in enumerate(rows)
        if sample_model.judge(r) != candidate.judge(r)
    ]
    # Thickness anomalies with a mildly unusual input: the candidate blames the machine.
    assert len(changed) == 23
    assert changed[0] == (114, "PAINT-EQ-CUR-LOW", MACHINE_ISSUE)
    assert {got for _, _, got in changed} == {MACHINE_ISSUE}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (("v2", 0.0, 2.0), "threshold must be greater than 0, not 0.0"),
        (("v2", 0.1, -1.0), "mch_threshold must be at least 0, not -1.0"),
        ((" ", 0.1, 2.0), "the model version must not be empty"),
    ],
)
def test_impossible_version_settings_are_refused(
    exact_model: ThicknessModel, settings: tuple, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        exact_model.version_of(*settings)
