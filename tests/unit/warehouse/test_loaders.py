"""Plain-function checks of the warehouse loader's SQL, the lake listing and the config."""

from __future__ import annotations

import csv
from datetime import UTC, date

import pytest

from metrify import lake
from metrify.assets import VALIDATED_GRID_STATUS, VALIDATED_METER_READINGS
from metrify.config import load_settings
from metrify.contracts.events import ValidatedInterval
from metrify.contracts.geography import CITIES
from metrify.warehouse import business_calendar, catalog, cosmos_config, duckdb_loader, snowflake_loader
from metrify.warehouse import tasks as warehouse_tasks
from metrify_dev import postgres
from tests import REPO_ROOT


def test_cities_seed_matches_geography():
    with open(REPO_ROOT / "dbt" / "seeds" / "cities.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["city"], r["postal_code"], r["region"], r["grid_operator"]) for r in rows] == [
        (c.name, c.postal_code, c.region, c.tso) for c in CITIES
    ]


def test_snowflake_load_replaces_one_interval_in_a_transaction():
    source = catalog.SOURCES["grid_status"]
    files = [f"raw/grid_status/operator=TenneT/date=2026-11-22/hour=05/f{i}.parquet" for i in range(1500)]
    before, inside = snowflake_loader.snowflake_load_sql(
        source, catalog.Interval(date(2026, 11, 22), 5), files, "METRIFY"
    )
    assert before[0][0].startswith("CREATE OR REPLACE TRANSIENT TABLE METRIFY.raw._load_grid_status_20261122_05")
    copies = [s for s, _ in before if s.startswith("COPY INTO")]
    assert len(copies) == 2  # at most 1,000 FILES per COPY
    assert all(
        "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE" in c and "FORCE = TRUE" in c and "FROM @METRIFY.raw.lake_stage" in c
        for c in copies
    )
    assert copies[0].count(".parquet'") == 1000 and copies[1].count(".parquet'") == 500
    assert inside[0] == (
        "DELETE FROM METRIFY.raw.grid_status WHERE _INTERVAL_DATE = %s::DATE AND _INTERVAL_HOUR = %s",
        ("2026-11-22", 5),
    )
    assert inside[1][0].startswith("INSERT INTO METRIFY.raw.grid_status (OPERATOR_NAME, READING_TS")
    assert inside[-1] == ("DROP TABLE IF EXISTS METRIFY.raw._load_grid_status_20261122_05", None)


def test_daily_interval_has_no_hour():
    source = catalog.SOURCES["meter_anomalies"]
    _, inside = snowflake_loader.snowflake_load_sql(source, catalog.Interval(date(2026, 11, 22)), ["a.parquet"])
    assert inside[0][0].endswith("_INTERVAL_HOUR IS NULL") and inside[0][1] == ("2026-11-22",)


def test_unexpected_lake_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("METRIFY_LAKE_URL", tmp_path.as_uri())
    root = lake.lake_root()
    bad = tmp_path / "validated" / "meter_readings" / "2026-11-22" / "x.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match=r"unexpected file in the lake .*2026-11-22/x\.parquet"):
        catalog.partitions(catalog.SOURCES["meter_readings"], root)


def test_registry_connection_from_pgserver_uri():
    conn = postgres.registry_connection("postgresql://postgres:@/postgres?host=/srv/metrify/postgres")
    assert conn == {
        "conn_type": "postgres",
        "host": "/srv/metrify/postgres",
        "login": "postgres",
        "password": "",
        "schema": "postgres",
    }


def test_warehouse_target_is_validated(monkeypatch):
    monkeypatch.setenv("METRIFY_WAREHOUSE_TARGET", "bigquery")
    with pytest.raises(ValueError, match="METRIFY_WAREHOUSE_TARGET"):
        load_settings()
    monkeypatch.setenv("METRIFY_WAREHOUSE_TARGET", "Snowflake")
    assert load_settings().warehouse_target == "snowflake" and cosmos_config.max_active_tasks() == 8
    monkeypatch.delenv("METRIFY_WAREHOUSE_TARGET")
    assert load_settings().warehouse_target == "duckdb" and cosmos_config.max_active_tasks() == 1


def test_interval_parse_round_trip():
    interval = catalog.Interval.parse("date=2026-11-22/hour=05")
    assert interval == catalog.Interval(date(2026, 11, 22), 5) and str(interval) == "date=2026-11-22/hour=05"
    assert catalog.Interval.parse("date=2026-11-22") == catalog.Interval(date(2026, 11, 22))
    with pytest.raises(ValueError, match="not an interval: '2026-11-22'"):
        catalog.Interval.parse("2026-11-22")


class _Asset:
    def __init__(self, uri):
        self.uri = uri


class _Event:
    def __init__(self, extra):
        self.extra = extra


def test_validated_intervals_come_from_the_gate_events():
    meters, grid, raw = (
        _Asset(VALIDATED_METER_READINGS.uri),
        _Asset(VALIDATED_GRID_STATUS.uri),
        _Asset("metrify://lake/raw/grid_status"),
    )
    hour = ValidatedInterval("meter_readings", "2026-11-22", 6, rows=80, quality_score=99.5)
    day = ValidatedInterval("grid_status", "2026-11-22", None, rows=384)
    events = {meters: [_Event(hour.to_extra())], grid: [_Event(day.to_extra())], raw: [_Event({"x": 1})]}
    assert warehouse_tasks.validated_intervals(events) == [hour, day]
    assert [i.partition for i in warehouse_tasks.validated_intervals(events)] == [
        "date=2026-11-22/hour=06",
        "date=2026-11-22",
    ]
    assert warehouse_tasks.validated_intervals(None) == []
    # a producer that does not keep the contract fails the consumer loudly
    with pytest.raises(ValueError, match=r"lacks \['dataset', 'hour', 'rows'\]: not a ValidatedInterval"):
        warehouse_tasks.validated_intervals({meters: [_Event({"date": "2026-11-22"})]})
    with pytest.raises(ValueError, match="hour 24 is not 0..23"):
        warehouse_tasks.validated_intervals({meters: [_Event({**hour.to_extra(), "hour": 24})]})


def test_sync_reads_validated_only_and_removes_an_interval_blocked_since(tmp_path, monkeypatch):
    """raw/ is never loaded; an interval whose validated file disappears (the gate blocked it on
    a re-judge) is emptied in the warehouse."""
    import pyarrow as pa

    monkeypatch.setenv("METRIFY_HOME", str(tmp_path))
    monkeypatch.delenv("METRIFY_LAKE_URL", raising=False)
    monkeypatch.delenv("METRIFY_WAREHOUSE_PATH", raising=False)
    root = lake.lake_root()
    from datetime import datetime

    for layer, hour in (("raw", 5), ("validated", 6), ("raw", 6)):
        ts = datetime(2026, 11, 22, hour, 15, tzinfo=UTC)
        table = pa.table(
            {"meter_id": ["M1"], "reading_ts": pa.array([ts], pa.timestamp("us", tz="UTC")), "consumption_kwh": [0.1]}
        )
        lake.write_parquet(
            table,
            lake.partition_path(root, layer, "meter_readings", date="2026-11-22", hour=f"{hour:02d}") / "a.parquet",
        )
    weather = pa.table(
        {
            "city": ["Berlin"],
            "source": ["dwd"],
            "observed_at": pa.array([datetime(2026, 11, 22, 5, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
            "temperature_celsius": [4.5],
        }
    )
    lake.write_parquet(weather, lake.partition_path(root, "validated", "weather", date="2026-11-22") / "b.parquet")
    report = duckdb_loader.sync()
    assert sorted((r.table, r.interval, r.rows) for r in report.loaded) == [
        ("meter_readings", "date=2026-11-22/hour=06", 1),
        ("weather", "date=2026-11-22", 1),
    ]
    with duckdb_loader.connect_duckdb() as conn:
        assert conn.execute("select source, city from raw.weather").fetchall() == [("dwd", "Berlin")]
    # the gate blocks hour 06 on a re-judge: its validated file goes, the warehouse follows
    (lake.partition_path(root, "validated", "meter_readings", date="2026-11-22", hour="06") / "a.parquet").unlink()
    again = duckdb_loader.sync()
    assert [(r.interval, r.rows) for r in again.loaded] == [("date=2026-11-22/hour=06", 0)]
    with duckdb_loader.connect_duckdb() as conn:
        assert conn.execute("select count(*) from raw.meter_readings").fetchone() == (0,)


def test_a_daily_run_rebuilds_the_business_day_before_its_date():
    import pendulum

    # Airflow 3 cron runs have a zero-length interval at the instant they are due (02:30 Berlin)
    due = pendulum.datetime(2026, 3, 30, 2, 30, tz="Europe/Berlin")
    assert business_calendar.daily_run_days(due, due) == ([date(2026, 3, 29)], [date(2026, 3, 28), date(2026, 3, 29)])
    # the day after the DST change: 02:30 does not exist on 2026-03-29, cron fires at 03:30 CEST
    due = pendulum.datetime(2026, 3, 29, 1, 30, tz="UTC")
    assert business_calendar.daily_run_days(due, due) == ([date(2026, 3, 28)], [date(2026, 3, 27), date(2026, 3, 28)])
    # and the run that rebuilds a given business day
    assert business_calendar.daily_run_logical_date(date(2026, 11, 22)) == "2026-11-23T02:30:00+01:00"
    run = pendulum.parse(business_calendar.daily_run_logical_date(date(2026, 3, 28)))
    assert business_calendar.daily_run_days(run, run)[0] == [date(2026, 3, 28)]
    # a run with a real interval rebuilds the business days it spans
    start = pendulum.datetime(2026, 11, 1, tz="Europe/Berlin")
    business, utc = business_calendar.daily_run_days(start, start.add(days=2))
    assert business == [date(2026, 11, 1), date(2026, 11, 2)]
    assert utc == [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)]
