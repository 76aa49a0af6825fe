"""Wiring of the quality DAGs: triggers, outlets and the trigger rules that make a blocked
interval fail the run while the anomaly tasks still run."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag


def _uris(assets) -> set[str]:
    return {a.uri for a in assets}


def test_meter_quality_dag_runs_on_raw_and_publishes_validated(dagbag) -> None:
    dag = dagbag.dags["quality_meter_readings"]
    assert "metrify://lake/raw/meter_readings" in str(dag.timetable.asset_condition)
    gate = dag.get_task("gate")
    assert _uris(gate.outlets) == {"metrify://lake/validated/meter_readings"}
    assert dag.get_task("detect_anomalies").trigger_rule == "all_done"
    assert dag.get_task("detect_anomalies").upstream_task_ids >= {"gate"}
    summary = dag.get_task("summary")
    assert summary.trigger_rule == "all_success" and "gate" in summary.upstream_task_ids
    assert {t.task_id for t in dag.leaves} == {"summary"}


def test_sources_quality_dag(dagbag) -> None:
    dag = dagbag.dags["quality_sources"]
    condition = str(dag.timetable.asset_condition)
    assert "metrify://lake/raw/grid_status" in condition and "metrify://lake/raw/weather" in condition
    assert _uris(dag.get_task("gate_grid_status").outlets) == {"metrify://lake/validated/grid_status"}
    assert _uris(dag.get_task("gate_weather").outlets) == {"metrify://lake/validated/weather"}
    assert dag.get_task("grid_anomalies").trigger_rule == "all_done"
    assert dag.get_task("summary").upstream_task_ids == {"gate_grid_status", "gate_weather"}
