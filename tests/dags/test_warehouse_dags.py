"""The warehouse DAGs parse fast from the dbt manifest and render one task group per model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from metrify.config import load_settings
from metrify.warehouse import cosmos_config, dbt_runner
from tests import REPO_ROOT

DAGS = REPO_ROOT / "dags"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow")
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    if not load_settings().dbt_manifest.exists():
        dbt_runner.build_manifest()
    from airflow.dag_processing.dagbag import DagBag

    pycache = tmp_path_factory.mktemp("pycache")
    return {
        name: (DagBag(dag_folder=str(DAGS / name)), parse_seconds(name, pycache))
        for name in ("transform.py", "warehouse_daily.py")
    }


def parse_seconds(name: str, pycache: Path) -> float:
    """Time to parse the DAG file in a fresh process that has Airflow, Cosmos, plugins and
    providers loaded, as the DAG processor does (second run: byte-code cached as in a deployment)."""
    code = (
        "import time, cosmos, airflow.sdk\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        # a DAG processor has its plugins and provider asset handlers loaded before it parses
        "from airflow.sdk.lineage import get_hook_lineage_collector; get_hook_lineage_collector()\n"
        "airflow.sdk.Asset('metrify://warm/up')\n"
        f"t = time.perf_counter(); bag = DagBag(dag_folder={str(DAGS / name)!r}); "
        "assert not bag.import_errors and len(bag.dags) == 1, (bag.import_errors, bag.dags)\n"
        "print(time.perf_counter() - t)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "include"), "PYTHONPYCACHEPREFIX": str(pycache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name, dag_id", [("transform.py", "transform"), ("warehouse_daily.py", "warehouse_daily")])
def test_dag_parses_fast_without_errors(dagbag, name, dag_id):
    bag, seconds = dagbag[name]
    assert bag.import_errors == {}, bag.import_errors
    dag = bag.dags[dag_id]
    print(f"{name} parses in {seconds:.3f}s")
    assert seconds < 1.0, f"{name} parsed in {seconds:.2f}s"
    assert dag.tags and dag.doc_md
    for t in dag.tasks:
        assert t.owner == "metrify-data-eng" and t.retries >= 1, t.task_id


def test_transform_renders_each_model_with_its_tests(dagbag):
    dag = dagbag["transform.py"][0].dags.get("transform")
    ids = set(dag.task_ids)
    for model in (
        "stg_meter_readings",
        "dim_meters",
        "fct_meter_readings_hourly",
        "fct_grid_status",
        "fct_weather_hourly",
        "fct_smart_meter_analytics",
        "fct_meter_anomalies",
    ):
        assert f"dbt.{model}.run" in ids and f"dbt.{model}.test" in ids, model
    assert not any("daily_consumption_metrics" in i for i in ids)  # metrics belong to warehouse_daily
    # loads come first, the report last
    run = dag.get_task("dbt.stg_meter_readings.run")
    assert {"load_lake", "load_registry"} <= set(run.get_flat_relative_ids(upstream=True))
    assert "dbt.fct_smart_meter_analytics.test" in dag.get_task("report").get_flat_relative_ids(upstream=True)


def test_transform_is_scheduled_on_the_lake_assets(dagbag):
    dag = dagbag["transform.py"][0].dags.get("transform")
    uris = (
        {a.uri for a in dag.timetable.asset_condition.iter_assets().values()}
        if hasattr(dag.timetable.asset_condition, "iter_assets")
        else set()
    )
    if not uris:
        uris = {str(getattr(a, "uri", a)) for a in dag.timetable.asset_condition.objects}
    assert uris == {
        "metrify://lake/validated/meter_readings",
        "metrify://lake/validated/grid_status",
        "metrify://lake/validated/weather",
    }


def test_daily_dag_includes_the_metrics(dagbag):
    dag = dagbag["warehouse_daily.py"][0].dags.get("warehouse_daily")
    ids = set(dag.task_ids)
    for model in (
        "daily_consumption_metrics",
        "grid_stability_metrics",
        "weather_correlation_metrics",
        "meter_quality_tiers",
        "fct_meter_readings_hourly",
    ):
        assert f"dbt.{model}.run" in ids, model


def test_daily_dag_substitutes_the_day_before_it_reloads_it(dagbag):
    """The day's substitute values are in the lake before the reload copies the day's intervals,
    and the hourly DAG does not compute them (they need the whole business day)."""
    dag = dagbag["warehouse_daily.py"][0].dags.get("warehouse_daily")
    assert dag.get_task("substitute_gaps").downstream_task_ids == {"reload_day"}
    assert dag.get_task("reload_day").upstream_task_ids == {"substitute_gaps"}
    assert "dbt.stg_substituted_readings.run" in dag.task_ids
    transform = dagbag["transform.py"][0].dags.get("transform")
    assert "substitute_gaps" not in transform.task_ids


@pytest.mark.parametrize("name, dag_id", [("transform.py", "transform"), ("warehouse_daily.py", "warehouse_daily")])
def test_watcher_producer_runs_first_and_every_model_keeps_a_retryable_task(dagbag, name, dag_id):
    """WATCHER (the measured default): one producer task runs `dbt build` after the loads, the
    first sensors wait for it, and every model and its tests stay a task one can clear alone (that a
    retry rebuilds its model and nothing else: tests/integration/test_watcher_retry.py)."""
    assert load_settings().dbt_execution_mode == "watcher"
    dag = dagbag[name][0].dags[dag_id]
    producer = dag.get_task("dbt.dbt_producer_watcher")
    assert "load_registry" in producer.upstream_task_ids and producer.pool == cosmos_config.pool()
    first = dag.get_task("dbt.stg_meter_readings.run")
    assert producer.task_id in first.upstream_task_ids and first.trigger_rule == "none_failed"
    sensors = [
        t for t in dag.tasks if t.task_id.startswith("dbt.") and t.task_id.rsplit(".", 1)[-1] in ("run", "test", "seed")
    ]
    assert len(sensors) >= 18
    for sensor in sensors:
        assert sensor.retries >= 1 and sensor.pool == cosmos_config.pool() and sensor.deferrable, sensor.task_id
