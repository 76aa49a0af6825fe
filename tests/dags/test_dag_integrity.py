"""Every DAG imports cleanly, parses fast, does no I/O at import and is fit for on-call."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_"))
EXPECTED_DAGS = {
    "ingest_meter_readings",
    "ingest_grid_status",
    "ingest_weather",
    "ingest_weather_forecast",
    "transform",
    "warehouse_daily",
    "quality_meter_readings",
    "quality_sources",
    "release_quality_interval",
    "erase_meter",
    "apply_retention",
    "forecast_load",
}


def _dagbag(path: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(path))


@pytest.fixture(scope="module")
def dagbag():
    _dagbag(DAG_FILES[0])  # warm up Airflow's own imports so the timings below are the DAG files'
    return _dagbag(DAGS_FOLDER)


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert EXPECTED_DAGS == set(dagbag.dag_ids)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_each_dag_file_parses_in_under_a_second(path: Path, dagbag) -> None:
    started = time.perf_counter()
    bag = _dagbag(path)
    elapsed = time.perf_counter() - started
    assert bag.import_errors == {}
    assert elapsed < 1.0, f"{path.name} took {elapsed:.2f} s to parse"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_no_network_or_subprocess_at_import(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"{path.name} does I/O at import time: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    bag = _dagbag(path)
    assert bag.import_errors == {}


def test_every_task_has_owner_retries_timeout_and_every_dag_tags_and_docs(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md for the on-call engineer"
        assert dag.deadline, f"{dag_id} has no deadline alert"
        for task in dag.tasks:
            where = f"{dag_id}.{task.task_id}"
            assert task.owner and task.owner != "airflow", f"{where} has no owner"
            assert task.retries >= 1, f"{where} has no retries"
            assert task.execution_timeout is not None, f"{where} has no execution_timeout"


def test_ingestion_dag_is_a_15_minute_micro_batch_with_one_drain_at_a_time(dagbag) -> None:
    dag = dagbag.dags["ingest_meter_readings"]
    assert dag.max_active_runs == 1
    assert dag.schedule == "*/15 * * * *"
    reconcile = dag.get_task("reconcile")
    assert [a.uri for a in reconcile.outlets] == ["metrify://lake/raw/meter_readings"]
