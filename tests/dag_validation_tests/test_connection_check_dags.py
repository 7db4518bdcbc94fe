"""The two connection-check DAGs: manual, a sensor then one real operation, timing from params."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.painting_simulator.checks import sensor_base

REPO = Path(__file__).resolve().parents[2]
CHECKS = {
    "check_azure_storage_connection": ("wait_for_blobs", "list_csv_blobs", "WasbPrefixSensor"),
    "check_model_service_connection": (
        "wait_for_healthy_service",
        "probe_prediction",
        "HttpSensor",
    ),
}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.mark.parametrize("dag_id", CHECKS)
def test_a_check_is_manual_and_runs_when_triggered(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    from airflow.sdk.definitions.timetables.simple import NullTimetable

    assert isinstance(dag.timetable, NullTimetable)  # schedule=None: only a trigger starts it
    assert dag.is_paused_upon_creation is False  # a trigger runs without unpausing first
    assert "connection-check" in dag.tags


@pytest.mark.parametrize("dag_id", CHECKS)
def test_a_provider_sensor_in_reschedule_mode_then_one_task(dagbag, dag_id):
    sensor_id, task_id, provider_class = CHECKS[dag_id]
    dag = dagbag.dags[dag_id]
    sensor = dag.get_task(sensor_id)
    assert provider_class in [cls.__name__ for cls in type(sensor).__mro__]
    assert sensor.mode == "reschedule"  # a waiting check holds no worker slot
    assert dag.get_task(task_id).upstream_task_ids == {sensor_id}
    assert set(dag.task_ids) == {sensor_id, task_id}


@pytest.mark.parametrize("dag_id", CHECKS)
def test_poke_interval_and_timeout_are_params_in_the_trigger_form(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    sensor = dag.get_task(CHECKS[dag_id][0])
    for param, field, default in [
        (
            sensor_base.PARAM_POKE_INTERVAL,
            "poke_interval",
            sensor_base.DEFAULT_POKE_INTERVAL_SECONDS,
        ),
        (sensor_base.PARAM_TIMEOUT, "timeout", sensor_base.DEFAULT_TIMEOUT_SECONDS),
    ]:
        spec = dag.params.get_param(param)
        assert spec.value == default
        assert "(seconds)" in spec.schema["title"]
        assert spec.schema["type"] == "integer"
        assert field in sensor.template_fields
        assert getattr(sensor, field) == sensor_base.param_template(param)
