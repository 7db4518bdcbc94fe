"""Unit tests of the schedule interval and the per-run settings read from Airflow Variables."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest

from include.painting_simulator import settings
from include.painting_simulator.settings import (
    RunConfig,
    default_output_dir,
    schedule_interval,
)

# --- schedule_interval ---------------------------------------------------------------------


@pytest.mark.parametrize("environ", [{}, {"PAINTING_INTERVAL_MINUTES": ""}, {"X": "5"}])
def test_schedule_interval_defaults_to_one_minute(environ: dict[str, str]) -> None:
    assert schedule_interval(environ) == timedelta(minutes=1)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5", timedelta(minutes=5)),
        ("0.25", timedelta(seconds=15)),
        (" 0.5 ", timedelta(seconds=30)),
        ("1440", timedelta(days=1)),
    ],
)
def test_schedule_interval_reads_minutes_and_fractions(raw: str, expected: timedelta) -> None:
    assert schedule_interval({"PAINTING_INTERVAL_MINUTES": raw}) == expected


@pytest.mark.parametrize("raw", ["abc", "1m", "1,5", "0", "0.0", "-1", "-0.5", "nan"])
def test_schedule_interval_rejects_a_bad_value_naming_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match="PAINTING_INTERVAL_MINUTES") as caught:
        schedule_interval({"PAINTING_INTERVAL_MINUTES": raw})
    assert repr(raw) in str(caught.value)


@pytest.mark.parametrize("raw", ["inf", "1e20"])
def test_schedule_interval_rejects_an_infinite_or_huge_value_naming_the_variable(
    raw: str,
) -> None:
    with pytest.raises(ValueError, match="PAINTING_INTERVAL_MINUTES"):
        schedule_interval({"PAINTING_INTERVAL_MINUTES": raw})


def test_schedule_interval_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PAINTING_INTERVAL_MINUTES", "3")
    assert schedule_interval() == timedelta(minutes=3)


# --- default_output_dir --------------------------------------------------------------------


def test_default_output_dir_is_painting_logs_under_airflow_home() -> None:
    assert default_output_dir({"AIRFLOW_HOME": "/opt/airflow"}) == "/opt/airflow/painting_logs"


@pytest.mark.parametrize("environ", [{}, {"AIRFLOW_HOME": ""}])
def test_default_output_dir_without_airflow_home_is_under_home_airflow(
    environ: dict[str, str],
) -> None:
    expected = os.path.join(os.path.expanduser("~"), "airflow", "painting_logs")
    assert default_output_dir(environ) == expected


# --- RunConfig.from_variables --------------------------------------------------------------


def variables(**values: Any) -> Any:
    """A fake ``Variable.get``: the given values, None for every other name."""

    def get(name: str) -> Any:
        return values.get(name)

    return get


def test_run_config_defaults_when_no_variable_is_set() -> None:
    config = RunConfig.from_variables(variables(), environ={"AIRFLOW_HOME": "/opt/airflow"})
    assert config == RunConfig(
        container="simulator-data",
        prefix="painting-process-equipment/",
        batch_size=10,
        output_dir="/opt/airflow/painting_logs",
        request_timeout=30.0,
        request_attempts=3,
    )


def test_run_config_empty_strings_mean_the_defaults() -> None:
    names = [
        settings.VAR_CONTAINER,
        settings.VAR_PREFIX,
        settings.VAR_BATCH_SIZE,
        settings.VAR_OUTPUT_DIR,
        settings.VAR_REQUEST_TIMEOUT,
        settings.VAR_REQUEST_ATTEMPTS,
    ]
    blank = RunConfig.from_variables(variables(**dict.fromkeys(names, " ")), environ={})
    assert blank.batch_size == 10
    assert blank.request_timeout == 30.0
    assert blank.request_attempts == 3
    empty = RunConfig.from_variables(variables(**dict.fromkeys(names, "")), environ={})
    assert empty == RunConfig.from_variables(variables(), environ={})


def test_run_config_takes_every_value_from_the_variables() -> None:
    get = variables(
        painting_container="other-container",
        painting_prefix="line-2/",
        painting_batch_size="50",
        painting_output_dir="/data/ledgers",
        painting_request_timeout_seconds="2.5",
        painting_request_attempts="5",
    )
    config = RunConfig.from_variables(get, environ={"AIRFLOW_HOME": "/ignored"})
    assert config == RunConfig(
        container="other-container",
        prefix="line-2/",
        batch_size=50,
        output_dir="/data/ledgers",
        request_timeout=2.5,
        request_attempts=5,
    )
    assert type(config.batch_size) is int
    assert type(config.request_timeout) is float


def test_run_config_accepts_numbers_not_only_text() -> None:
    config = RunConfig.from_variables(
        variables(painting_batch_size=7, painting_request_timeout_seconds=1), environ={}
    )
    assert (config.batch_size, config.request_timeout) == (7, 1.0)


def test_run_config_variable_names_are_the_documented_ones() -> None:
    asked: list[str] = []

    def get(name: str) -> None:
        asked.append(name)

    RunConfig.from_variables(get, environ={})
    assert sorted(asked) == [
        "painting_batch_size",
        "painting_container",
        "painting_output_dir",
        "painting_prefix",
        "painting_request_attempts",
        "painting_request_timeout_seconds",
    ]


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("painting_batch_size", "ten", "is not an integer"),
        ("painting_batch_size", "2.5", "is not an integer"),
        ("painting_request_attempts", "3x", "is not an integer"),
        ("painting_request_timeout_seconds", "30s", "is not a number"),
    ],
)
def test_run_config_names_the_variable_that_is_not_a_number(
    name: str, raw: str, message: str
) -> None:
    with pytest.raises(ValueError, match=name) as caught:
        RunConfig.from_variables(variables(**{name: raw}), environ={})
    assert message in str(caught.value)
    assert repr(raw) in str(caught.value)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("painting_batch_size", "0"),
        ("painting_batch_size", "-3"),
        ("painting_request_attempts", "0"),
        ("painting_request_timeout_seconds", "0"),
        ("painting_request_timeout_seconds", "-1"),
    ],
)
def test_run_config_rejects_values_below_the_minimum(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=f"{name}='{raw}' must be at least"):
        RunConfig.from_variables(variables(**{name: raw}), environ={})


def test_run_config_accepts_the_minimum_values() -> None:
    config = RunConfig.from_variables(
        variables(painting_batch_size="1", painting_request_attempts="1"), environ={}
    )
    assert (config.batch_size, config.request_attempts) == (1, 1)


@pytest.mark.parametrize("raw", ["nan", "inf"])
def test_run_config_rejects_a_timeout_that_is_not_finite(raw: str) -> None:
    with pytest.raises(ValueError, match="painting_request_timeout_seconds"):
        RunConfig.from_variables(variables(painting_request_timeout_seconds=raw), environ={})
