"""The results database store's plain parts: the URL it logs, time bounds, the row of a record."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import make_url

from include.painting_simulator import settings
from include.painting_simulator.records import row_record
from include.painting_simulator.results_db import bound, public_url, result_row


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://painting:s3cret@db.example:5432/painting?sslmode=require",
         "postgresql://db.example:5432/painting"),
        ("postgresql://painting:s3cret@db.example/painting", "postgresql://db.example/painting"),
        ("sqlite:////var/lib/painting/results.db", "sqlite:////var/lib/painting/results.db"),
        # A connection URI with four slashes reaches SQLAlchemy as //path: the same file.
        ("sqlite://///var/lib/painting/results.db", "sqlite:////var/lib/painting/results.db"),
    ],
)  # fmt: skip
def test_the_logged_url_has_no_driver_user_password_or_options(url, shown):
    assert public_url(make_url(url)) == shown
    assert "s3cret" not in public_url(make_url(url))


def test_time_bounds_compare_as_each_engine_stores_logged_at():
    assert bound("2026-12-01T10:00:02Z", "sqlite") == "2026-12-01T10:00:02.000Z"
    assert bound("2026-12-01T11:00:02+01:00", "sqlite") == "2026-12-01T10:00:02.000Z"
    assert bound("2026-12-01T10:00:02", "sqlite") == "2026-12-01T10:00:02.000Z"  # naive = UTC
    assert bound("2026-12-01T10:00:02", "postgresql") == datetime(2026, 12, 1, 10, 0, 2, tzinfo=UTC)
    assert bound(None, "sqlite") is None
    with pytest.raises(ValueError, match="'yesterday' is not an ISO-8601 time"):
        bound("yesterday", "sqlite")


def test_a_record_becomes_its_row_with_the_columns_users_query():
    anomaly = {"source": {"blob": "b.csv", "row": 7}, "kind": settings.ANOMALY,
               "original_data": {"machineId": "PAINT-3", "timeStamp": "2025-07-23T08:00:30"},
               "prediction": {"issue": "PAINT-EQ-VOL-INVALID"}, "attempts": 1}  # fmt: skip
    unmapped = {"source": {"blob": "b.csv", "row": 8}, "kind": settings.ERROR,
                "original_data": {"machineId": "3", "timeStamp": "not-a-time"},
                "error": "blob 'b.csv' row 8 column 'timeStamp': bad"}  # fmt: skip
    unreadable = {"source": {"blob": "c.csv", "row": 0}, "kind": settings.ERROR,
                  "original_data": None, "error": "blob 'c.csv': not UTF-8"}  # fmt: skip

    row = result_row(row_record(anomaly, "r", "2026-12-01T10:00:00.000Z"), "anomaly", "sqlite")
    assert {k: row[k] for k in ("run_id", "blob", "row_number", "kind", "logged_at", "machine_id",
                                "reading_time", "issue", "status", "error")} == {
        "run_id": "r", "blob": "b.csv", "row_number": 7, "kind": "anomaly",
        "logged_at": "2026-12-01T10:00:00.000Z", "machine_id": "PAINT-3",
        "reading_time": "2025-07-23T08:00:30", "issue": "PAINT-EQ-VOL-INVALID", "status": None,
        "error": None,
    }  # fmt: skip
    assert row["record"]["prediction"] == {"issue": "PAINT-EQ-VOL-INVALID"}
    row = result_row(row_record(unmapped, "r", "2026-12-01T10:00:00.000Z"), "error", "postgresql")
    assert (row["machine_id"], row["issue"], row["error"][:12]) == ("3", None, "blob 'b.csv'")
    assert row["logged_at"] == datetime(2026, 12, 1, 10, tzinfo=UTC)
    row = result_row(row_record(unreadable, "r"), "error", "sqlite")
    assert (row["machine_id"], row["reading_time"]) == (None, None)
