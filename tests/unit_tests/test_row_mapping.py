"""Unit tests of the CSV row -> ``POST /predict/`` body mapping (the original simulator's)."""

from __future__ import annotations

from typing import Any

import pytest

from include.painting_simulator.csv_format import REQUIRED_COLUMNS, missing_columns
from include.painting_simulator.row_mapping import RowMappingError, to_request_body
from tests.support.contract_examples import BODY_FIELDS


def _row(**overrides: Any) -> dict[str, Any]:
    """A CSV row as csv.DictReader gives it: every value is text."""
    row: dict[str, Any] = {
        "machineId": "1",
        "timeStamp": "2025-07-23T15:32:01",
        "Thick": "19.9",
        "PT_jo_V_1": "263",
        "PT_jo_A_Main_1": "72.5",
        "PT_jo_TP": "34.01",
    }
    row.update(overrides)
    return row


def test_row_maps_to_the_original_simulators_body_field_for_field() -> None:
    assert to_request_body(_row()) == {
        "machineId": "PAINT-1",
        "timeStamp": "2025-07-23T15:32:01",
        "thick": 19.9,
        "voltage": 263.0,
        "current": 72.5,
        "temper": 34.01,
        "issue": "",
        "isSolved": False,
    }


def test_body_keys_are_in_the_original_order() -> None:
    body = to_request_body(_row())
    assert list(body) == BODY_FIELDS


def test_process_values_are_sent_as_floats_even_when_written_as_integers() -> None:
    body = to_request_body(_row(Thick="20", PT_jo_V_1="260", PT_jo_A_Main_1="70", PT_jo_TP="34"))
    for field in ("thick", "voltage", "current", "temper"):
        assert type(body[field]) is float, field


def test_is_solved_is_the_boolean_false_not_a_falsy_value() -> None:
    assert to_request_body(_row())["isSolved"] is False


def test_time_stamp_is_passed_as_written_not_reparsed() -> None:
    # A format the service may or may not accept is its business (it answers 422), not ours.
    body = to_request_body(_row(timeStamp="2025/07/23 15:32"))
    assert body["timeStamp"] == "2025/07/23 15:32"


def test_machine_id_keeps_its_text_after_the_prefix() -> None:
    assert to_request_body(_row(machineId="007"))["machineId"] == "PAINT-007"


def test_extra_columns_are_ignored() -> None:
    body = to_request_body(_row(lineId="L2", PT_jo_V_2="999", Thick_2="abc"))
    assert list(body) == BODY_FIELDS
    assert body["voltage"] == 263.0


def test_scientific_and_negative_numbers_are_accepted() -> None:
    body = to_request_body(_row(Thick="1.99e1", PT_jo_TP="-3.5"))
    assert body["thick"] == pytest.approx(19.9)
    assert body["temper"] == -3.5


@pytest.mark.parametrize("column", REQUIRED_COLUMNS)
def test_a_missing_column_is_named_in_the_error(column: str) -> None:
    row = _row()
    del row[column]
    with pytest.raises(RowMappingError) as caught:
        to_request_body(row)
    assert caught.value.column == column
    assert repr(column) in str(caught.value)
    assert "missing" in str(caught.value)


@pytest.mark.parametrize("column", REQUIRED_COLUMNS)
@pytest.mark.parametrize("blank", ["", "   ", None])
def test_an_empty_cell_is_named_in_the_error(column: str, blank: str | None) -> None:
    # csv.DictReader gives None for cells missing at the end of a short line.
    with pytest.raises(RowMappingError) as caught:
        to_request_body(_row(**{column: blank}))
    assert caught.value.column == column
    assert "empty" in str(caught.value)


@pytest.mark.parametrize("column", ["Thick", "PT_jo_V_1", "PT_jo_A_Main_1", "PT_jo_TP"])
def test_a_non_numeric_value_is_named_in_the_error(column: str) -> None:
    with pytest.raises(RowMappingError) as caught:
        to_request_body(_row(**{column: "12,5"}))
    assert caught.value.column == column
    assert "'12,5' is not a number" in str(caught.value)


# What float() reads but a number is not here: digit separators and other scripts' digits.
NOT_ASCII_NUMBERS = ["2_0.1", "1_000", "١٩.٩", "۲۶۰", "１９.９", "19.9\u0661"]


@pytest.mark.parametrize("text", NOT_ASCII_NUMBERS)
@pytest.mark.parametrize("column", ["Thick", "PT_jo_V_1", "PT_jo_A_Main_1", "PT_jo_TP"])
def test_what_float_reads_beyond_ascii_digits_is_not_a_number(column: str, text: str) -> None:
    float(text)  # Python reads every one of them
    with pytest.raises(RowMappingError) as caught:
        to_request_body(_row(**{column: text}))
    assert caught.value.column == column
    assert f"{text!r} is not a number" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "number"),
    [("19.9", 19.9), (" -7 ", -7.0), ("+.5", 0.5), ("5.", 5.0), ("1e3", 1000.0),
     ("2.5E-1", 0.25), ("\u00a034\t", 34.0), ("007", 7.0)],
)  # fmt: skip
def test_ascii_numbers_with_sign_point_exponent_and_spaces_are_read(text: str, number: float):
    assert to_request_body(_row(Thick=text))["thick"] == number


@pytest.mark.parametrize("text", ["NaN", "nan", "inf", "-Infinity", "+inf", "1e999"])
@pytest.mark.parametrize("column", ["Thick", "PT_jo_V_1", "PT_jo_A_Main_1", "PT_jo_TP"])
def test_a_value_json_cannot_carry_is_rejected_and_named(column: str, text: str) -> None:
    with pytest.raises(RowMappingError) as caught:
        to_request_body(_row(**{column: text}))
    assert caught.value.column == column
    assert "not a finite number" in str(caught.value)


def test_the_first_bad_column_in_the_body_order_is_the_one_named() -> None:
    with pytest.raises(RowMappingError) as caught:
        to_request_body(_row(PT_jo_V_1="x", PT_jo_TP="y"))
    assert caught.value.column == "PT_jo_V_1"


def test_a_very_long_bad_value_is_shortened_in_the_message() -> None:
    with pytest.raises(RowMappingError) as caught:
        to_request_body(_row(Thick="x" * 1000))
    assert len(str(caught.value)) < 200


def test_row_mapping_error_is_a_value_error() -> None:
    # Callers that only know ValueError still catch it.
    with pytest.raises(ValueError, match="PT_jo_TP"):
        to_request_body(_row(PT_jo_TP="hot"))


def test_missing_columns_of_a_complete_header_is_empty() -> None:
    header = ["Date", *REQUIRED_COLUMNS, "lineId"]
    assert missing_columns(header) == []


def test_missing_columns_lists_the_absent_ones_in_required_order() -> None:
    header = ("PT_jo_TP", "lineId", "timeStamp", "PT_jo_V_1")
    assert missing_columns(header) == ["machineId", "Thick", "PT_jo_A_Main_1"]


def test_missing_columns_is_case_sensitive() -> None:
    header = ["machineid", "timeStamp", "Thick", "PT_jo_V_1", "PT_jo_A_Main_1", "PT_jo_TP"]
    assert missing_columns(header) == ["machineId"]


def test_missing_columns_of_an_empty_header_is_every_required_column() -> None:
    assert missing_columns([]) == list(REQUIRED_COLUMNS)


def test_a_value_longer_than_the_limit_is_refused_and_named() -> None:
    from include.painting_simulator.row_mapping import MAX_VALUE_CHARS

    assert to_request_body(_row(machineId="7" * MAX_VALUE_CHARS))["machineId"].startswith("PAINT-7")
    with pytest.raises(RowMappingError) as caught:
        to_request_body(_row(machineId="7" * (MAX_VALUE_CHARS + 1)))
    assert caught.value.column == "machineId"
    assert f"value is {MAX_VALUE_CHARS + 1} characters long" in str(caught.value)


def test_the_expected_issue_column_becomes_the_items_expectation() -> None:
    from include.painting_simulator.row_mapping import to_item

    anomaly = to_item("a.csv", 0, _row(expected_issue=" PAINT-EQ-VOL-HIGH "))
    normal = to_item("a.csv", 1, _row(expected_issue=""))
    without = to_item("a.csv", 2, _row())
    assert anomaly["expected"] == "PAINT-EQ-VOL-HIGH"
    assert "expected_issue" not in anomaly["body"]  # never sent
    assert anomaly["body"] == without["body"]
    assert "expected" in normal
    assert normal["expected"] is None
    assert "expected" not in without


def test_an_unmappable_row_keeps_its_expectation_and_an_unreadable_one_has_none() -> None:
    from include.painting_simulator.csv_format import ERROR_KEY
    from include.painting_simulator.row_mapping import to_item

    unmappable = to_item("a.csv", 3, _row(Thick="thin", expected_issue="PAINT-EQ-MCH"))
    assert "column 'Thick'" in unmappable["error"]
    assert unmappable["expected"] == "PAINT-EQ-MCH"
    # The CSV format could not read the row: its cells (the expectation too) are not trusted.
    unreadable = {**_row(expected_issue="PAINT-EQ-MCH"), ERROR_KEY: "10 values where ..."}
    assert "expected" not in to_item("a.csv", 4, unreadable)


def test_an_expected_issue_too_long_to_be_a_code_is_an_error_naming_the_column() -> None:
    from include.painting_simulator.row_mapping import to_item

    item = to_item("a.csv", 5, _row(expected_issue="X" * 5000))
    assert item["error"] == (
        "blob 'a.csv' row 5: column 'expected_issue': value is 5000 characters long "
        "(an issue code is expected)"
    )
    assert "expected" not in item
    assert len(item["raw"]["expected_issue"]) < 300
