"""No SQL or lake path is built from an untrusted string: object keys, dates, hours, topic,
dataset and table names are refused (naming the field and the value) or reach SQL as bind
parameters, at every entry point: Snowflake loads (on fakesnow), a manual quality run's conf, an
operator's release, an asset event, the environment, and the grid and weather payloads."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import fakesnow
import pandas as pd
import pyarrow as pa
import pytest
import snowflake.connector

from metrify import lake
from metrify.config import load_settings
from metrify.contracts import grid
from metrify.contracts.events import ValidatedInterval
from metrify.quality import tasks as quality_tasks
from metrify.sources import PayloadError, landing, weather
from metrify.sources.http import Endpoint
from metrify.warehouse import catalog, duckdb_loader, snowflake_loader

INJECTED_KEYS = [
    "validated/grid_status/date=2026-11-22/validated.parquet'); DROP TABLE raw.grid_status; --",
    "validated/grid_status/date=2026-11-22/a.parquet', 'b.parquet",
    "validated/grid_status/date=2026-11-22/x;y.parquet",
    "../../etc/passwd",
    "/validated/grid_status/date=2026-11-22/validated.parquet",
    "validated/grid_status/date=2026-11-22/with space.parquet",
]


class RecordingCursor:
    """A DB-API cursor that records what it is asked to execute."""

    def __init__(self) -> None:
        self.executed: list[tuple[str, Any]] = []
        self.rowcount = 0

    def execute(self, sql: str, params: Any = None) -> RecordingCursor:
        self.executed.append((sql, params))
        return self


@pytest.fixture
def snowflake_lake(tmp_path: Path, lake_root: Any):
    """fakesnow with the raw schema, a stage on a local lake and one day of grid status in it."""
    row = {c: None for c in grid.GRID_SCHEMA.names} | {
        "operator_name": "TenneT",
        "reading_ts": datetime(2026, 11, 22, 5, 15, tzinfo=UTC),
        "load_factor": 0.5,
        "region": "Nord",
    }
    key = "validated/grid_status/date=2026-11-22/validated.parquet"
    lake.write_parquet(pa.Table.from_pylist([row], schema=grid.GRID_SCHEMA), lake_root / key)
    with fakesnow.patch():
        conn = snowflake.connector.connect(database="METRIFY", schema="RAW")
        cursor = conn.cursor()
        for statement in snowflake_loader.snowflake_setup_sql(lake_root.as_uri()):
            cursor.execute(statement)
        yield cursor, key
        conn.close()


def test_snowflake_loads_a_good_key_with_bind_parameters(snowflake_lake) -> None:
    cursor, key = snowflake_lake
    source = catalog.SOURCES["grid_status"]
    for _ in range(2):  # the second load replaces the first (DELETE with bound date)
        result = snowflake_loader.load_interval_snowflake(cursor, source, catalog.Interval(date(2026, 11, 22)), [key])
        assert result.rows == 1
    assert cursor.execute("select count(*) from raw.grid_status").fetchone()[0] == 1


@pytest.mark.parametrize("bad_key", INJECTED_KEYS)
def test_snowflake_refuses_object_keys_that_leave_the_files_list(snowflake_lake, bad_key: str) -> None:
    cursor, key = snowflake_lake
    source = catalog.SOURCES["grid_status"]
    snowflake_loader.load_interval_snowflake(cursor, source, catalog.Interval(date(2026, 11, 22)), [key])
    with pytest.raises(ValueError, match=r"object key must be a relative lake object key"):
        snowflake_loader.load_interval_snowflake(cursor, source, catalog.Interval(date(2026, 11, 22)), [key, bad_key])
    # nothing ran: the table is there with its row
    assert cursor.execute("select count(*) from raw.grid_status").fetchone()[0] == 1


def test_snowflake_dates_and_hours_are_bind_parameters() -> None:
    cursor = RecordingCursor()
    source = catalog.SOURCES["meter_readings"]
    key = "validated/meter_readings/date=2026-11-22/hour=05/validated.parquet"
    snowflake_loader.load_interval_snowflake(cursor, source, catalog.Interval(date(2026, 11, 22), 5), [key])
    dml = [(sql, params) for sql, params in cursor.executed if sql.startswith(("DELETE", "INSERT"))]
    assert len(dml) == 2
    for sql, params in dml:
        assert "2026-11-22" not in sql and "= 5" not in sql, sql
        assert list(params) == ["2026-11-22", 5], (sql, params)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: catalog.Interval(date(2026, 11, 22), 24), "hour"),
        (lambda: catalog.Interval("2026-11-22'; drop table x; --", None), "day"),  # type: ignore[arg-type]
        (
            lambda: snowflake_loader.snowflake_load_sql(
                catalog.SOURCES["weather"], catalog.Interval(date(2026, 11, 22)), ["a.parquet"], "METRIFY; DROP TABLE x"
            ),
            "database",
        ),
        (lambda: snowflake_loader.snowflake_setup_sql("s3://bucket/lake'; DROP STAGE x; --"), "stage URL"),
        (lambda: snowflake_loader.snowflake_setup_sql("s3://bucket/lake", "INTEGRATION; DROP"), "storage integration"),
        (
            lambda: snowflake_loader.replace_table_snowflake(
                RecordingCursor(), "meter_registry; DROP TABLE raw.grid_status", (), pd.DataFrame()
            ),
            "table",
        ),
    ],
)
def test_warehouse_names_are_checked_before_sql_is_built(call, field: str) -> None:
    with pytest.raises(ValueError, match=rf"{field} must be"):
        call()


def test_duckdb_loads_with_bound_dates_and_hours(tmp_path: Path, lake_root) -> None:
    row = {c: None for c in grid.GRID_SCHEMA.names} | {"operator_name": "TenneT", "load_factor": 0.5}
    key = "validated/grid_status/date=2026-11-22/validated.parquet"
    lake.write_parquet(pa.Table.from_pylist([row], schema=grid.GRID_SCHEMA), lake_root / key)
    conn = duckdb_loader.connect_duckdb(tmp_path / "w.duckdb")
    for _ in range(2):  # the second load replaces the first
        assert duckdb_loader.load_interval("grid_status", "2026-11-22", root=lake_root, conn=conn).rows == 1
    assert conn.execute("select count(*), min(_interval_date) from raw.grid_status").fetchone() == (
        1,
        date(2026, 11, 22),
    )


def test_duckdb_table_names_are_checked(tmp_path: Path) -> None:
    conn = duckdb_loader.connect_duckdb(tmp_path / "w.duckdb")
    with pytest.raises(ValueError, match=r"table must be .*meter_registry; DROP TABLE raw.weather"):
        duckdb_loader.replace_table("meter_registry; DROP TABLE raw.weather", (), pd.DataFrame(), conn=conn)


# --------------------------------------------------------------------------- a manual run's conf


@pytest.mark.parametrize(
    ("conf", "field", "value"),
    [
        ({"date": "2026-11-22/../../x"}, "date", "2026-11-22/../../x"),
        ({"date": "'; drop table raw.meter_readings; --"}, "date", "'; drop table"),
        ({"date": "2026-02-30"}, "date", "2026-02-30"),
        ({"intervals": [{"date": "2026-1-2", "hour": 3}]}, r"intervals\[0\]\.date", "2026-1-2"),
        ({"intervals": [{"date": "2026-11-22/../..", "hour": 3}]}, r"intervals\[0\]\.date", "2026-11-22/../.."),
        ({"intervals": [{"date": "2026-11-22", "hour": 24}]}, r"intervals\[0\]\.hour", "24"),
        ({"intervals": [{"date": "2026-11-22", "hour": -1}]}, r"intervals\[0\]\.hour", "-1"),
        ({"intervals": [{"date": "2026-11-22", "hour": 3.7}]}, r"intervals\[0\]\.hour", "3.7"),
        ({"intervals": [{"date": "2026-11-22", "hour": True}]}, r"intervals\[0\]\.hour", "True"),
        ({"intervals": [{"date": "2026-11-22", "hour": "3; rm -rf /"}]}, r"intervals\[0\]\.hour", "3; rm"),
        ({"intervals": [{"date": "2026-11-22"}]}, r"intervals\[0\]\.hour", "None"),
        ({"intervals": "2026-11-22"}, "intervals", "2026-11-22"),
    ],
)
def test_quality_conf_is_refused_naming_field_and_value(lake_root, conf: dict, field: str, value: str) -> None:
    with pytest.raises(ValueError, match=rf"{field} must be .*{__import__('re').escape(value)}"):
        quality_tasks.intervals_from_request(conf)


@pytest.mark.parametrize(
    ("conf", "field"),
    [
        ({"grid_status": ["2026-11-22/../../x"]}, r"grid_status\[0\]"),
        ({"grid_status": ["2026-11-22", "'; drop table x; --"]}, r"grid_status\[1\]"),
        ({"grid_status": "2026-11-22"}, "grid_status"),
    ],
)
def test_quality_sources_conf_is_refused(lake_root, conf: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"{field} must be"):
        quality_tasks.source_days("grid_status", conf)


@pytest.mark.parametrize(
    ("dataset", "day", "hour", "message"),
    [
        ("meter_readings", "2026-11-22/../../../x", 3, r"date must be a date YYYY-MM-DD; got '2026-11-22/\.\./"),
        ("meter_readings", "2026-11-22", 24, r"hour must be an hour 0\.\.23; got 24"),
        ("meter_readings", "2026-11-22", "5; drop", r"hour must be an hour 0\.\.23; got '5; drop'"),
        ("grid_status", "'; drop table x", None, r"date must be a date YYYY-MM-DD; got \"'; drop table x\""),
        ("../../etc", "2026-11-22", None, r"cannot release dataset '\.\./\.\./etc'"),
    ],
)
def test_a_release_is_refused_before_anything_is_written(lake_root, tmp_path, dataset, day, hour, message) -> None:
    """The release DAG (`release_quality_interval`) hands its params to `record_release`."""
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=message):
        quality_tasks.record_release(dataset, day, hour, "checked by hand: a sensor swap", "operator")
    assert sorted(p for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"dataset": "../../../etc", "date": "2026-11-22", "hour": None, "rows": 1}, "dataset"),
        ({"dataset": "weather", "date": "2026-11-22", "hour": "1; drop", "rows": 1}, "hour"),
        ({"dataset": "weather", "date": "2026-19-99", "hour": None, "rows": 1}, "date"),
    ],
)
def test_an_asset_event_cannot_name_a_path(extra: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ValidatedInterval.from_extra(extra)


def test_lake_partition_values_cannot_leave_the_partition(lake_root) -> None:
    for bad in ("2026-11-22/../../x", "..", "a=b", ""):
        with pytest.raises(ValueError, match=r"date must be a partition value"):
            lake.partition_path(lake_root, "raw", "meter_readings", date=bad)
    with pytest.raises(ValueError, match=r"dataset must be"):
        lake.partition_path(lake_root, "raw", "../meter_readings", date="2026-11-22")


# --------------------------------------------------------------------------- environment and Kafka


@pytest.mark.parametrize("topic", ["../../tmp/x", "a/b", "..", "meter readings", "t';drop"])
def test_the_meter_topic_must_be_a_kafka_topic_name(monkeypatch, topic: str) -> None:
    monkeypatch.setenv("METRIFY_METER_TOPIC", topic)
    with pytest.raises(ValueError, match=r"METRIFY_METER_TOPIC must be a Kafka topic name"):
        load_settings()


def test_the_drain_refuses_a_topic_that_is_a_path(lake_root) -> None:
    from metrify.ingest import drain

    with pytest.raises(ValueError, match=r"topic must be a Kafka topic name"):
        drain.drain_partition({"bootstrap.servers": "127.0.0.1:9"}, "../../outside", 0, lake_root)
    assert not (Path(lake_root.path).parent / "outside").exists()


# --------------------------------------------------------------------------- grid and weather payloads


def test_quarantine_names_stay_one_file_in_the_lake(lake_root) -> None:
    error = PayloadError("../..", "bad payload", b"{}")
    start = datetime(2026, 11, 22, 14, tzinfo=UTC)
    path = landing.quarantine(lake_root, "weather", error, "../../..", start, start + timedelta(hours=1))
    relative = str(path.path).removeprefix(lake_root.path.rstrip("/") + "/")
    assert relative.startswith("quarantine/weather/date=2026-11-22/"), relative
    name = relative.rsplit("/", 1)[-1]
    assert __import__("re").fullmatch(r"[\w-]+\+[\w-]+\+20261122T1400\.parquet", name), name


def test_weather_payload_fields_never_become_path_parts(lake_root) -> None:
    """A Bright Sky answer whose station names, ids and timestamps look like paths lands only in
    the partition of the hour asked for; the station name stays a column value."""
    record = {name: 1.0 for name in weather.brightsky.FIELDS}
    body = {
        "weather": [
            {**record, "timestamp": "2026-11-22T14:00:00+00:00", "source_id": "../../x"},
            {**record, "timestamp": "1970-01-01T00:00:00+00:00", "source_id": "../../x"},
            {**record, "timestamp": "2026-11-22T14:00:00+14:00", "source_id": "../../x"},
        ],
        "sources": [{"id": "../../x", "station_name": "../../../../tmp/pwned", "dwd_station_id": "/etc/passwd"}],
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        ep = Endpoint.from_dict("brightsky_api", {"host": "127.0.0.1", "port": port, "schema": "http"})
        city = weather.CITY_BY_NAME["Berlin"]
        start = datetime(2026, 11, 22, 14, tzinfo=UTC)
        now = start + timedelta(hours=1)
        weather.ingest_source("dwd", start, start + timedelta(hours=1), ep, lake_root, cities=[city], now=now)
    finally:
        server.shutdown()
    root = Path(lake_root.path)
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert written == ["raw/weather/source=dwd/date=2026-11-22/hour=14/20261122T1400.parquet"], written
    stations = lake.read_table(lake_root / written[0]).column("station").to_pylist()
    assert stations == ["../../../../tmp/pwned (DWD /etc/passwd)"]


class ErasureCursor(RecordingCursor):
    """A warehouse with one table holding meter ids, one row of the meter in it."""

    def fetchall(self) -> list[tuple[str, str, str]]:
        return [("raw", "meter_readings", "meter_id")]

    def fetchone(self) -> tuple[int]:
        return (1,)


@pytest.mark.parametrize("placeholder", ["?", "%s"])
def test_the_erasure_binds_the_meter_id_and_names_tables_from_the_catalog(placeholder: str) -> None:
    from metrify.privacy import erasure

    meter = "DE0000011011500000000000000000001"
    cursor = ErasureCursor()
    assert erasure.erase_warehouse(cursor, meter, placeholder) == {"raw.meter_readings": 1}
    statements = [sql for sql, _ in cursor.executed]
    assert not any(meter in sql for sql in statements)
    bound = [(sql, params) for sql, params in cursor.executed if params]
    assert [sql.split()[0] for sql, _ in bound] == ["SELECT", "DELETE"]
    assert all(params == [meter] and sql.endswith(f'"meter_id" = {placeholder}') for sql, params in bound)


@pytest.mark.parametrize(
    "meter", ["x' OR '1'='1", "DE1'); DELETE FROM raw.meter_readings; --", "../../etc/passwd", "DE1\n", "DE1%"]
)
def test_an_erasure_refuses_what_is_not_a_meter_id_before_anything_is_touched(lake_root, meter: str) -> None:
    from metrify.privacy import erasure

    cursor = ErasureCursor()
    with pytest.raises(ValueError, match="meter_id must be a meter id"):
        erasure.erase_meter(meter, requested_by="someone", warehouse=cursor, registry_cursor=cursor)
    assert cursor.executed == [] and not lake.list_files(lake_root / "_audit", suffix=".json")


def test_a_warehouse_name_that_is_not_an_identifier_is_refused() -> None:
    from metrify.privacy import erasure

    class Hostile(ErasureCursor):
        def fetchall(self) -> list[tuple[str, str, str]]:
            return [("raw", 'meter_readings" WHERE 1=1; --', "meter_id")]

    with pytest.raises(ValueError, match="table must be an identifier"):
        erasure.erase_warehouse(Hostile(), "DE1", "?")
