"""Generator of deterministic sample e-coating (painting) process data.

The rows look like the CSV the simulator reads from blob storage: the six columns it requires
(``machineId, timeStamp, Thick, PT_jo_V_1, PT_jo_A_Main_1, PT_jo_TP``) plus extra columns it must
ignore. Normal rows follow a linear thickness law (:data:`TRUE_LAW`) with small noise; a few percent
of rows of each anomaly kind (:data:`ANOMALY_KINDS`) are planted at random positions. The last
column, ``expected_issue``, is the verdict each row should get: empty for a normal row, the issue
code of the contract for a planted anomaly (the replay measures the service's accuracy on it).

CLI (run from the repository root)::

    python -m include.sample_data.generator --rows 3000 --seed 7 \
        --out include/sample_data/painting_sample.csv
"""

from __future__ import annotations

import argparse
import csv
import random
from datetime import datetime, timedelta
from pathlib import Path

from include.model_service.issue_codes import MACHINE_ISSUE, feature_issue, invalid_issue
from include.painting_simulator import csv_format, row_mapping

COLUMNS: tuple[str, ...] = (
    "machineId",
    "timeStamp",
    "Thick",
    "PT_jo_V_1",
    "PT_jo_V_2",  # extra (second voltage probe), sits between required columns on purpose
    "PT_jo_A_Main_1",
    "PT_jo_TP",
    "LineSpeed",  # extra
    "Operator",  # extra
    row_mapping.EXPECTED_ISSUE,  # the verdict the row should get (empty: normal)
)
# The columns the simulator requires, from the CSV format itself (one home).
REQUIRED_COLUMNS = csv_format.REQUIRED_COLUMNS

DEFAULT_ROWS = 3000
DEFAULT_SEED = 7
DEFAULT_OUT = "include/sample_data/painting_sample.csv"
STEP_SECONDS = 10

# Nominal operating point and the linear law thick = base + sum(slope * (x - nominal)).
NOMINAL = {"voltage": 260.0, "current": 70.0, "temper": 34.0}
BASE_THICK = 20.0
TRUE_LAW = {"voltage": 0.05, "current": 0.08, "temper": 0.5}
# Half-widths of the (triangular) process noise of normal rows.
INPUT_NOISE = {"voltage": 8.0, "current": 5.0, "temper": 1.2}
THICK_NOISE_REL = 0.03  # |noise| <= 3 % of thickness, far from the model's 10 % threshold

# Fraction of rows per anomaly kind.
ANOMALY_FRACTION = 0.025
ANOMALY_KINDS: tuple[str, ...] = (
    "voltage_invalid",
    "current_invalid",
    "temper_invalid",
    "thick_high",
    "thick_low",
)

# Out-of-range readings (sensor faults), with margins so rounding never brings them back in range.
_INVALID_BANDS = {
    "voltage": ((2.0, 18.0), (355.0, 420.0)),
    "current": ((0.5, 4.5), (405.0, 480.0)),
    "temper": ((18.0, 24.4), (40.6, 46.0)),
}
# Unusual but in-range values: the feature's attribution is >= 2.5 µm and dominates the others,
# so the reference model names that feature (e.g. PAINT-EQ-VOL-HIGH) instead of PAINT-EQ-MCH.
_UNUSUAL_BANDS = {
    "voltage": ((175.0, 205.0), (315.0, 345.0)),
    "current": ((20.0, 38.0), (102.0, 125.0)),
    "temper": ((25.5, 28.5), (39.0, 39.9)),
}

_OPERATORS = ("OP-01", "OP-02", "OP-03", "OP-04", "OP-05")


def law_thickness(voltage: float, current: float, temper: float) -> float:
    """Return the noise-free thickness (µm) of the generating linear law."""
    return (
        BASE_THICK
        + TRUE_LAW["voltage"] * (voltage - NOMINAL["voltage"])
        + TRUE_LAW["current"] * (current - NOMINAL["current"])
        + TRUE_LAW["temper"] * (temper - NOMINAL["temper"])
    )


def _tri(rng: random.Random, half_width: float) -> float:
    # Triangular noise from two uniforms: only +, -, * on Mersenne Twister output, so the values
    # are bit-identical on every platform (random.gauss goes through libm log/cos, which may not).
    return (rng.random() + rng.random() - 1.0) * half_width


def _typical_inputs(rng: random.Random, scale: float = 1.0) -> dict[str, float]:
    return {k: NOMINAL[k] + _tri(rng, INPUT_NOISE[k] * scale) for k in NOMINAL}


def _band(rng: random.Random, bands: tuple[tuple[float, float], ...]) -> float:
    lo, hi = bands[0] if rng.random() < 0.5 else bands[1]
    return rng.uniform(lo, hi)


def _assign_kinds(rng: random.Random, n_rows: int) -> list[str]:
    per_kind = round(n_rows * ANOMALY_FRACTION)
    kinds = ["normal"] * n_rows
    positions = rng.sample(range(n_rows), min(n_rows, per_kind * len(ANOMALY_KINDS)))
    for i, pos in enumerate(positions):
        kinds[pos] = ANOMALY_KINDS[i // per_kind]
    return kinds


def _process_values(rng: random.Random, kind: str) -> tuple[dict[str, float], float, str]:
    """Return (readings, thickness, expected issue code or "") for one row of the given kind."""
    if kind == "normal":
        x = _typical_inputs(rng)
        thick = law_thickness(**x) * (1.0 + _tri(rng, THICK_NOISE_REL))
        return x, thick, ""
    if kind.endswith("_invalid"):
        # A sensor fault: the process itself is normal, only one reading is out of range.
        x = _typical_inputs(rng)
        thick = law_thickness(**x) * (1.0 + _tri(rng, THICK_NOISE_REL))
        feature = kind.removesuffix("_invalid")
        x[feature] = _band(rng, _INVALID_BANDS[feature])
        return x, thick, invalid_issue(feature)
    # thick_high / thick_low: thickness off the law by 22-40 %.
    if rng.random() < 0.5:
        # Typical inputs (tighter noise keeps sum |attribution| < 2): the model blames the machine.
        x = _typical_inputs(rng, scale=0.5)
        expected = MACHINE_ISSUE
    else:
        # One input unusual but within range: the model blames that input, -HIGH when it is
        # above its mean (a positive attribution: every slope of the law is positive).
        x = _typical_inputs(rng, scale=0.5)
        feature = rng.choice(("voltage", "current", "temper"))
        x[feature] = _band(rng, _UNUSUAL_BANDS[feature])
        expected = feature_issue(feature, x[feature] > NOMINAL[feature])
    deviation = rng.uniform(0.22, 0.40)
    factor = 1.0 + deviation if kind == "thick_high" else 1.0 - deviation
    return x, law_thickness(**x) * factor, expected


def generate_rows(
    n_rows: int,
    seed: int = DEFAULT_SEED,
    machines: int = 4,
    start: str = "2025-07-23T08:00:00",
) -> list[dict[str, str]]:
    """Generate ``n_rows`` sample rows as CSV-ready dicts (column -> string), in :data:`COLUMNS`.

    Deterministic: the same arguments give the same rows on every run and platform.
    Machines take turns ("1".."machines"); timestamps advance by :data:`STEP_SECONDS` per row.
    """
    if n_rows < 0:
        raise ValueError("n_rows must be >= 0")
    if machines < 1:
        raise ValueError("machines must be >= 1")
    rng = random.Random(seed)
    t0 = datetime.fromisoformat(start)
    kinds = _assign_kinds(rng, n_rows)
    rows: list[dict[str, str]] = []
    for i, kind in enumerate(kinds):
        x, thick, expected = _process_values(rng, kind)
        # The second probe reads the true bath voltage even when probe 1 is faulty.
        v2 = (x["voltage"] if kind != "voltage_invalid" else NOMINAL["voltage"]) + _tri(rng, 1.5)
        line_speed = 4.5 + _tri(rng, 0.2)
        rows.append(
            {
                "machineId": str(i % machines + 1),
                "timeStamp": (t0 + timedelta(seconds=STEP_SECONDS * i)).isoformat(),
                "Thick": f"{thick:.2f}",
                "PT_jo_V_1": f"{x['voltage']:.1f}",
                "PT_jo_V_2": f"{v2:.1f}",
                "PT_jo_A_Main_1": f"{x['current']:.1f}",
                "PT_jo_TP": f"{x['temper']:.1f}",
                "LineSpeed": f"{line_speed:.2f}",
                "Operator": _OPERATORS[(i // 360) % len(_OPERATORS)],  # one operator per hour
                row_mapping.EXPECTED_ISSUE: expected,
            }
        )
    return rows


def anomaly_kinds(n_rows: int, seed: int = DEFAULT_SEED) -> list[str]:
    """Return the planted kind of each row ("normal" or one of :data:`ANOMALY_KINDS`).

    Uses the same random stream as :func:`generate_rows`, so index i describes row i.
    """
    return _assign_kinds(random.Random(seed), n_rows)


def write_csv(path: str | Path, n_rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> Path:
    """Write ``n_rows`` generated rows with a header to ``path`` (UTF-8, ``\\n`` line ends)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(generate_rows(n_rows, seed=seed))
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: write the sample CSV."""
    parser = argparse.ArgumentParser(description="Write deterministic sample e-coating data.")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="number of data rows")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output CSV path")
    args = parser.parse_args(argv)
    out = write_csv(args.out, n_rows=args.rows, seed=args.seed)
    print(f"wrote {args.rows} rows to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
