"""Tests of the deterministic sample-data generator and the committed sample CSV."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from include.sample_data import generator
from include.sample_data.generator import (
    ANOMALY_KINDS,
    COLUMNS,
    REQUIRED_COLUMNS,
    anomaly_kinds,
    generate_rows,
    law_thickness,
    write_csv,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED_CSV = REPO_ROOT / "include" / "sample_data" / "painting_sample.csv"


def _floats(row: dict[str, str]) -> tuple[float, float, float, float]:
    return (
        float(row["Thick"]),
        float(row["PT_jo_V_1"]),
        float(row["PT_jo_A_Main_1"]),
        float(row["PT_jo_TP"]),
    )


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", n_rows=500, seed=11)
    b = write_csv(tmp_path / "b.csv", n_rows=500, seed=11)
    assert a.read_bytes() == b.read_bytes()


def test_different_seed_gives_different_data() -> None:
    assert generate_rows(200, seed=1) != generate_rows(200, seed=2)


def test_columns_and_order(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", n_rows=20)
    header = path.read_text(encoding="utf-8").split("\n", 1)[0].split(",")
    assert header == list(COLUMNS)
    # The six required columns keep their order but are not one contiguous block.
    positions = [header.index(c) for c in REQUIRED_COLUMNS]
    assert positions == sorted(positions)
    assert positions[-1] - positions[0] + 1 > len(REQUIRED_COLUMNS)
    assert len(set(header) - set(REQUIRED_COLUMNS)) >= 3


def test_file_format(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "s.csv", n_rows=30).read_bytes()
    assert b"\r" not in data
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 31  # header + rows
    data.decode("utf-8")


def test_row_values_are_well_formed() -> None:
    rows = generate_rows(400, machines=4)
    assert [r["machineId"] for r in rows[:5]] == ["1", "2", "3", "4", "1"]
    assert {r["machineId"] for r in rows} == {"1", "2", "3", "4"}
    assert rows[0]["timeStamp"] == "2025-07-23T08:00:00"
    assert rows[1]["timeStamp"] == "2025-07-23T08:00:10"
    assert rows[-1]["timeStamp"] == "2025-07-23T09:06:30"
    for row in rows:
        assert list(row) == list(COLUMNS)
        _floats(row)  # every number parses
        assert len(row["Thick"].split(".")[1]) == 2
        assert len(row["PT_jo_V_1"].split(".")[1]) == 1


def test_normal_rows_follow_the_law_closely() -> None:
    rows = generate_rows(3000)
    kinds = anomaly_kinds(3000)
    normal = [_floats(r) for r, k in zip(rows, kinds, strict=True) if k == "normal"]
    thick = [t for t, *_ in normal]
    assert 19.0 < sum(thick) / len(thick) < 21.0
    for t, v, a, tp in normal:
        assert 20 <= v <= 350
        assert 5 <= a <= 400
        assert 25 <= tp <= 40
        assert abs(t - law_thickness(v, a, tp)) / law_thickness(v, a, tp) < 0.05


def test_anomaly_proportions_and_kinds() -> None:
    n = 3000
    rows = generate_rows(n)
    kinds = anomaly_kinds(n)
    counts = Counter(kinds)
    for kind in ANOMALY_KINDS:
        assert 0.02 * n <= counts[kind] <= 0.03 * n, kind
    ranges = {"PT_jo_V_1": (20, 350), "PT_jo_A_Main_1": (5, 400), "PT_jo_TP": (25, 40)}
    column_of = {
        "voltage_invalid": "PT_jo_V_1",
        "current_invalid": "PT_jo_A_Main_1",
        "temper_invalid": "PT_jo_TP",
    }
    for row, kind in zip(rows, kinds, strict=True):
        out_of_range = {c for c, (lo, hi) in ranges.items() if not lo <= float(row[c]) <= hi}
        if kind in column_of:
            assert out_of_range == {column_of[kind]}
            continue
        assert not out_of_range
        t, v, a, tp = _floats(row)
        rel = (t - law_thickness(v, a, tp)) / law_thickness(v, a, tp)
        if kind == "thick_high":
            assert rel >= 0.2
        elif kind == "thick_low":
            assert rel <= -0.2


def test_anomaly_kinds_match_generate_rows_stream() -> None:
    # anomaly_kinds must describe the rows generate_rows produced with the same seed.
    rows = generate_rows(1000, seed=3)
    kinds = anomaly_kinds(1000, seed=3)
    assert all(
        float(r["PT_jo_TP"]) < 25 or float(r["PT_jo_TP"]) > 40
        for r, k in zip(rows, kinds, strict=True)
        if k == "temper_invalid"
    )


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="n_rows"):
        generate_rows(-1)
    with pytest.raises(ValueError, match="machines"):
        generate_rows(10, machines=0)


def test_committed_csv_equals_generated_output(tmp_path: Path) -> None:
    fresh = write_csv(tmp_path / "fresh.csv")  # the defaults: 3000 rows, seed 7
    assert COMMITTED_CSV.read_bytes() == fresh.read_bytes(), (
        "painting_sample.csv differs from the generator; regenerate it with "
        "`python -m include.sample_data.generator`"
    )


def test_committed_csv_is_readable_with_csv_module() -> None:
    with COMMITTED_CSV.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == generator.DEFAULT_ROWS


def test_cli_writes_file(tmp_path: Path) -> None:
    out = tmp_path / "cli.csv"
    assert generator.main(["--rows", "25", "--seed", "5", "--out", str(out)]) == 0
    assert out.read_bytes() == write_csv(tmp_path / "ref.csv", n_rows=25, seed=5).read_bytes()


def test_expected_issue_is_empty_for_normal_rows_and_the_code_of_each_planted_anomaly() -> None:
    rows = generate_rows(3000)
    kinds = anomaly_kinds(3000)
    assert COLUMNS[-1] == "expected_issue"
    codes = {
        "voltage_invalid": {"PAINT-EQ-VOL-INVALID"},
        "current_invalid": {"PAINT-EQ-CUR-INVALID"},
        "temper_invalid": {"PAINT-EQ-TEM-INVALID"},
    }
    blamed = {"PAINT-EQ-MCH"} | {
        f"PAINT-EQ-{feature}-{side}"
        for feature in ("VOL", "CUR", "TEM")
        for side in ("HIGH", "LOW")
    }
    seen: Counter[str] = Counter()
    for row, kind in zip(rows, kinds, strict=True):
        if kind == "normal":
            assert row["expected_issue"] == ""
            continue
        assert row["expected_issue"] in codes.get(kind, blamed), (kind, row)
        seen[row["expected_issue"]] += 1
    # Every code of the contract appears in the sample (thick anomalies blame each cause).
    assert set(seen) == set().union(*codes.values()) | blamed


def test_the_reference_model_gets_every_expected_issue_of_the_committed_sample() -> None:
    from include.model_service.model import ThicknessModel

    model = ThicknessModel.from_csv(COMMITTED_CSV)
    with COMMITTED_CSV.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    got = [
        model.judge(
            {
                "thick": float(r["Thick"]),
                "voltage": float(r["PT_jo_V_1"]),
                "current": float(r["PT_jo_A_Main_1"]),
                "temper": float(r["PT_jo_TP"]),
            }
        )
        or ""
        for r in rows
    ]
    assert got == [r["expected_issue"] for r in rows]
