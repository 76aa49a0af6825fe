"""Plain-function checks of the warehouse loader's SQL, the lake listing and the config."""

from __future__ import annotations

import csv
from datetime import date

import pytest

from metrify import lake, transform, warehouse
from metrify.geography import CITIES
from metrify.settings import PROJECT_ROOT


def test_cities_seed_matches_geography():
    with open(PROJECT_ROOT / "dbt" / "seeds" / "cities.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["city"], r["postal_code"], r["region"], r["grid_operator"]) for r in rows] == [
        (c.name, c.postal_code, c.region, c.tso) for c in CITIES]


def test_snowflake_load_replaces_one_interval_in_a_transaction():
    source = warehouse.SOURCES["grid_status"]
    files = [f"raw/grid_status/operator=TenneT/date=2026-11-22/hour=05/f{i}.parquet" for i in range(1500)]
    before, inside = warehouse.snowflake_load_sql(source, warehouse.Interval(date(2026, 11, 22), 5), files, "METRIFY")
    assert before[0].startswith("CREATE OR REPLACE TRANSIENT TABLE METRIFY.raw._load_grid_status_20261122_05")
    copies = [s for s in before if s.startswith("COPY INTO")]
    assert len(copies) == 2  # at most 1,000 FILES per COPY
    assert all("MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE" in c and "FORCE = TRUE" in c
               and "FROM @METRIFY.raw.lake_stage" in c for c in copies)
    assert copies[0].count(".parquet'") == 1000 and copies[1].count(".parquet'") == 500
    assert inside[0] == ("DELETE FROM METRIFY.raw.grid_status WHERE _INTERVAL_DATE = '2026-11-22'::DATE "
                         "AND _INTERVAL_HOUR = 5")
    assert inside[1].startswith("INSERT INTO METRIFY.raw.grid_status (OPERATOR_NAME, READING_TS")
    assert inside[-1] == "DROP TABLE IF EXISTS METRIFY.raw._load_grid_status_20261122_05"


def test_daily_interval_has_no_hour():
    source = warehouse.SOURCES["meter_anomalies"]
    _, inside = warehouse.snowflake_load_sql(source, warehouse.Interval(date(2026, 11, 22)), ["a.parquet"])
    assert inside[0].endswith("_INTERVAL_HOUR IS NULL")


def test_unexpected_lake_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("METRIFY_LAKE_URL", tmp_path.as_uri())
    root = lake.lake_root()
    bad = tmp_path / "raw" / "meter_readings" / "2026-11-22" / "x.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match=r"unexpected file in the lake .*2026-11-22/x\.parquet"):
        warehouse.partitions(warehouse.SOURCES["meter_readings"], root)


def test_registry_connection_from_pgserver_uri():
    conn = warehouse.registry_connection("postgresql://postgres:@/postgres?host=/srv/metrify/postgres")
    assert conn == {"conn_type": "postgres", "host": "/srv/metrify/postgres", "login": "postgres",
                    "password": "", "schema": "postgres"}


def test_warehouse_target_is_validated(monkeypatch):
    monkeypatch.setenv("METRIFY_WAREHOUSE_TARGET", "bigquery")
    with pytest.raises(ValueError, match="METRIFY_WAREHOUSE_TARGET"):
        transform.target()
    monkeypatch.setenv("METRIFY_WAREHOUSE_TARGET", "Snowflake")
    assert transform.target() == "snowflake" and transform.max_active_tasks() == 8
    monkeypatch.delenv("METRIFY_WAREHOUSE_TARGET")
    assert transform.target() == "duckdb" and transform.max_active_tasks() == 1
