"""The Snowflake path against a fakesnow server on loopback: the stage + COPY INTO loader, the
registry, and the same dbt project built twice (the second run takes the incremental merge), with
one meter the registry learns only before the second build."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

# fakesnow and the connector are pinned dev requirements: a missing one fails here, never skips
import fakesnow
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import snowflake.connector as snowflake_connector

from metrify import lake
from metrify.config import load_settings
from metrify.quality.verdicts import read_verdicts
from metrify.warehouse import catalog, cosmos_config, dbt_runner, snowflake_loader, unregistered
from metrify_dev import sample_lake as wd
from tests.integration.oracles import expected_hourly

start_fakesnow = fakesnow.server  # the function; importing fakesnow.server (the module) shadows it
fakesnow_server_module = importlib.import_module("fakesnow.server")


@pytest.fixture(scope="module")
def snowflake(warehouse_home):
    """A fakesnow endpoint (GRANT accepted as a no-op: fakesnow has no roles) with the raw
    schema loaded from a simulated lake through an external stage on the lake's folder."""
    shared = fakesnow_server_module.shared_fs
    original_connect = shared.connect

    def connect(database=None, schema=None, nop_regexes=None, **kwargs):
        return original_connect(database, schema, nop_regexes=[r"^\s*grant\s"], **kwargs)

    shared.connect = connect
    try:
        with start_fakesnow() as params:
            root = lake.lake_root()
            data = wd.build_lake(root, meters=12, days=2, seed=5)
            conn = snowflake_connector.connect(**params, database="METRIFY", schema="ANALYTICS")
            cursor = conn.cursor()
            for statement in snowflake_loader.snowflake_setup_sql(root.as_uri()):
                cursor.execute(statement)
            report = snowflake_loader.sync_snowflake(cursor, root)
            # the registry lags: the last meter reads before it is registered
            late_meter = data.registry["meter_id"].iloc[-1]
            snowflake_loader.load_registry_snowflake(cursor, data.registry[data.registry["meter_id"] != late_meter])
            snowflake_loader.load_verdicts_snowflake(cursor, read_verdicts(root).to_pandas())
            env = {
                "SNOWFLAKE_ACCOUNT": "fakesnow",
                "SNOWFLAKE_USER": params["user"],
                "SNOWFLAKE_PASSWORD": params["password"],
                "SNOWFLAKE_HOST": params["host"],
                "SNOWFLAKE_PORT": str(params["port"]),
                "SNOWFLAKE_PROTOCOL": params["protocol"],
                "SNOWFLAKE_DATABASE": "METRIFY",
                "SNOWFLAKE_SCHEMA": "ANALYTICS",
                # fakesnow serves every session from one DuckDB connection: one dbt thread
                "SNOWFLAKE_THREADS": "1",
            }
            yield {"cursor": cursor, "data": data, "report": report, "env": env, "root": root, "late_meter": late_meter}
            conn.close()
    finally:
        shared.connect = original_connect


def build(snowflake, tmp_path_factory):
    started = time.perf_counter()
    result = dbt_runner.run_dbt(
        ["build"],
        target="snowflake",
        env=snowflake["env"],
        target_path=tmp_path_factory.mktemp("dbt-snowflake"),
        vars={"persist_column_docs": False},
    )
    print(f"\ndbt build on fakesnow: {time.perf_counter() - started:.1f}s, {len(result.statuses)} nodes")
    return result


def _airflow_connects_to_fakesnow(env: dict, monkeypatch) -> None:
    """Airflow's `snowflake_default` (the hook the task bodies use) points at the fakesnow server."""
    import json

    connection = {
        "conn_type": "snowflake",
        "login": env["SNOWFLAKE_USER"],
        "password": env["SNOWFLAKE_PASSWORD"],
        "schema": "ANALYTICS",
        "extra": {
            "account": "fakesnow",
            "database": "METRIFY",
            "host": env["SNOWFLAKE_HOST"],
            "port": env["SNOWFLAKE_PORT"],
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_SNOWFLAKE_DEFAULT", json.dumps(connection))
    monkeypatch.setenv("METRIFY_WAREHOUSE_TARGET", "snowflake")
    connect = snowflake_connector.connect
    monkeypatch.setattr(snowflake_connector, "connect", lambda **kw: connect(**kw, protocol="http"))  # fakesnow: HTTP


def test_copy_into_loads_every_reading_of_record(snowflake):
    cursor = snowflake["cursor"]
    assert set(snowflake["data"].verdicts.values()) == {"passed"}
    distinct = len(snowflake["data"].readings.drop_duplicates(["meter_id", "reading_ts"]))
    assert cursor.execute("select count(*) from raw.meter_readings").fetchone()[0] == distinct
    loaded = [r for r in snowflake["report"].loaded if r.table == "meter_readings"]
    assert sum(r.rows for r in loaded) == distinct and all(r.rows > 0 for r in loaded)  # the loader's own count
    assert cursor.execute("select count(distinct operator_name) from raw.grid_status").fetchone()[0] == 4
    assert cursor.execute("select count(*) from raw.quality_verdicts where status = 'passed'").fetchone()[0] > 0


def test_reloading_an_interval_replaces_it_in_snowflake(snowflake):
    cursor = snowflake["cursor"]
    before = cursor.execute("select count(*), sum(consumption_kwh) from raw.meter_readings").fetchone()
    source = catalog.SOURCES["meter_readings"]
    interval = catalog.Interval(pd.Timestamp("2026-03-29").date(), 7)
    files = catalog.partitions(source, snowflake["root"])[interval]
    base = snowflake["root"].path.rstrip("/") + "/"
    relative = [f.removeprefix(base) for f in files]
    # the interval's rows counted straight from its validated file (not through the loader)
    in_file = sum(pq.read_table(path).num_rows for path in files)
    where = "_interval_date = '2026-03-29'::date and _interval_hour = 7"
    cursor.execute(f"delete from raw.meter_readings where {where}")  # a loader that did nothing would now fail
    for _ in range(2):
        result = snowflake_loader.load_interval_snowflake(cursor, source, interval, relative)
        assert result.rows == in_file > 0
        assert cursor.execute(f"select count(*) from raw.meter_readings where {where}").fetchone()[0] == in_file
    assert cursor.execute("select count(*), sum(consumption_kwh) from raw.meter_readings").fetchone() == pytest.approx(
        before
    )


def test_the_hourly_transform_loads_the_days_the_gate_announced_into_snowflake(snowflake, monkeypatch):
    """`transform`'s load task on the production target, through `snowflake_default` and the
    provider's hook: the days come from the gate's events (it used to raise on every run)."""

    from metrify.assets import VALIDATED_METER_READINGS
    from metrify.contracts.events import ValidatedInterval
    from metrify.warehouse import tasks as warehouse_tasks

    env, cursor = snowflake["env"], snowflake["cursor"]
    _airflow_connects_to_fakesnow(env, monkeypatch)

    day = "2026-03-29"
    in_files = sum(
        pq.read_table(path).num_rows
        for (interval, files) in catalog.partitions(catalog.SOURCES["meter_readings"], snowflake["root"]).items()
        if str(interval.day) == day
        for path in files
    )
    other_day = cursor.execute(
        f"select count(*) from raw.meter_readings where _interval_date <> '{day}'::date"
    ).fetchone()
    cursor.execute(f"delete from raw.meter_readings where _interval_date = '{day}'::date")

    class Event:
        extra = ValidatedInterval("meter_readings", day, 7, rows=1, quality_score=100.0).to_extra()

    result = warehouse_tasks.load_changed_lake({VALIDATED_METER_READINGS: [Event()]})
    assert result["announced"] == [f"meter_readings/date={day}/hour=07"]
    assert (
        cursor.execute(f"select count(*) from raw.meter_readings where _interval_date = '{day}'::date").fetchone()[0]
        == in_files
        > 0
    )
    assert (
        cursor.execute(f"select count(*) from raw.meter_readings where _interval_date <> '{day}'::date").fetchone()
        == other_day
    )


def test_the_forecast_dag_loads_its_day_into_snowflake(snowflake, monkeypatch):
    """`forecast_load`'s warehouse load on the production target (COPY INTO from the lake stage,
    through `snowflake_default`): the landed forecast of the target day, replaced on a rerun.
    Placed before the dbt builds, so they build the forecast models on these rows."""
    from datetime import date

    from metrify.contracts.forecast import LOAD_FORECAST_SCHEMA
    from metrify.forecast.series import local_day_bounds
    from metrify.forecast.tasks import forecast_path
    from metrify.warehouse import tasks as warehouse_tasks

    env, cursor = snowflake["env"], snowflake["cursor"]
    _airflow_connects_to_fakesnow(env, monkeypatch)

    day = date(2026, 3, 29)  # spring-forward: 92 quarter-hours
    start, end = local_day_bounds(day)
    starts = pd.date_range(start, end, freq="15min", inclusive="left")
    regions = sorted(set(snowflake["data"].registry["region"]))[:2]
    forecast = pd.concat(
        pd.DataFrame(
            {
                "series_kind": "region",
                "series": name,
                "target_date": day,
                "interval_start": starts,
                "p10_kwh": 1.0,
                "p50_kwh": 2.0 + i,
                "p90_kwh": 5.0,
                "method": "model",
                "model_version": "test-1",
                "meters": 3,
                "issued_at": pd.Timestamp("2026-03-28 03:30", tz="UTC"),
            }
        )
        for i, name in enumerate(regions)
    )
    lake.write_parquet(
        pa.Table.from_pandas(forecast, schema=LOAD_FORECAST_SCHEMA, preserve_index=False),
        forecast_path(snowflake["root"], day),
    )
    for _ in range(2):
        loaded = warehouse_tasks.load_forecast_day(day)
        assert loaded["rows_loaded"] == 92 * len(regions)
        assert cursor.execute("select count(*), sum(p50_kwh) from raw.load_forecast").fetchone() == (
            92 * len(regions),
            pytest.approx(forecast["p50_kwh"].sum()),
        )
    assert cursor.execute(
        "select distinct series_kind, _interval_date, _interval_hour from raw.load_forecast"
    ).fetchall() == [("region", day, None)]


def test_dbt_builds_on_snowflake_twice_and_reconciles(snowflake, tmp_path_factory, monkeypatch):
    alert_log = tmp_path_factory.mktemp("alerts") / "alerts.log"
    monkeypatch.setenv("METRIFY_ALERT_LOG", str(alert_log))
    monkeypatch.delenv("METRIFY_ALERT_WEBHOOK_URL", raising=False)
    first = build(snowflake, tmp_path_factory)
    assert first.success, first.failures  # a meter missing from the registry fails nothing
    cursor = snowflake["cursor"]
    meter = snowflake["late_meter"]
    dim = f"select status, is_registered, region from marts.dim_meters where meter_id = '{meter}'"
    assert cursor.execute(dim).fetchall() == [("unregistered", False, None)]
    noted = unregistered.note_unregistered(cursor, "%s")  # the report task's SQL, Snowflake dialect
    assert (noted.meters, noted.newly_alerted) == (1, [meter]) and noted.readings > 0
    assert unregistered.note_unregistered(cursor, "%s").newly_alerted == []
    assert len(alert_log.read_text().splitlines()) == 1
    fact_rows = cursor.execute("select count(*) from marts.fct_meter_readings_hourly").fetchone()[0]
    # late readings arrive and the registry catches up; the second build runs the incremental
    # models' merge path
    data = snowflake["data"]
    snowflake_loader.load_registry_snowflake(cursor, data.registry)
    wd.write_meter_readings(snowflake["root"], data.late, data.end + pd.Timedelta(hours=20), first_offset=20_000)
    assert set(wd.gate_lake(snowflake["root"]).values()) == {"passed"}
    snowflake_loader.sync_snowflake(
        cursor, snowflake["root"], tables=["meter_readings"], days=[pd.Timestamp("2026-03-28").date()]
    )
    second = build(snowflake, tmp_path_factory)
    assert second.success, second.failures
    registered = data.registry.set_index("meter_id").loc[meter]
    assert cursor.execute(dim).fetchall() == [(str(registered["status"]).lower(), True, registered["region"])]
    assert unregistered.note_unregistered(cursor, "%s").as_dict() == {"meters": 0, "readings": 0, "newly_alerted": []}
    assert len(alert_log.read_text().splitlines()) == 1
    assert (
        cursor.execute("select sum(reading_count) from marts.fct_smart_meter_analytics").fetchone()
        == cursor.execute("select sum(reading_count) from marts.fct_meter_readings_hourly").fetchone()
    )
    assert cursor.execute("select count(*) from marts.fct_meter_readings_hourly").fetchone()[0] == fact_rows + 1
    expected = expected_hourly(pd.concat([data.readings, data.late], ignore_index=True))
    fact = cursor.execute(
        "select hour_start, sum(reading_count), sum(consumption_kwh) "
        "from marts.fct_meter_readings_hourly group by 1 order by 1"
    ).fetchall()
    assert [r[1] for r in fact] == expected["readings"].tolist()
    assert [r[2] for r in fact] == pytest.approx(expected["consumption_kwh"].tolist(), abs=1e-9)
    for table in (
        "marts.fct_smart_meter_analytics",
        "metrics.daily_consumption_metrics",
        "metrics.weather_correlation_metrics",
        "metrics.grid_stability_metrics",
    ):
        assert cursor.execute(f"select count(*) from {table}").fetchone()[0] > 0, table


def test_a_vanished_reading_leaves_the_snowflake_facts(snowflake, tmp_path_factory):
    """Delete+insert over whole hours on Snowflake too: an interval re-delivered with one reading
    fewer drops it from staging and the hourly fact (runs after the two builds above)."""
    cursor = snowflake["cursor"]
    root = snowflake["root"]
    hour_dir = lake.partition_path(root, "raw", "meter_readings", date="2026-03-29", hour="10")
    path = hour_dir / Path(lake.list_files(hour_dir)[0]).name  # the first delivery's file
    table = pq.read_table(path.path)
    gone = table.slice(3, 1).to_pylist()[0]
    meter, reading_ts = gone["meter_id"], pd.Timestamp(gone["reading_ts"]).tz_convert("UTC").tz_localize(None)
    where = f"meter_id = '{meter}' and reading_ts = '{reading_ts}'"
    assert cursor.execute(f"select count(*) from staging.stg_meter_readings where {where}").fetchone()[0] == 1
    fact_before = cursor.execute("select sum(reading_count) from marts.fct_meter_readings_hourly").fetchone()[0]

    lake.write_parquet(pa.concat_tables([table.slice(0, 3), table.slice(4)]), path)
    assert wd.gate_lake(root) == {"meter_readings 2026-03-29 hour 10": "passed"}
    snowflake_loader.sync_snowflake(cursor, root, tables=["meter_readings"], days=[pd.Timestamp("2026-03-29").date()])
    result = build(snowflake, tmp_path_factory)
    assert result.success, result.failures
    assert cursor.execute(f"select count(*) from staging.stg_meter_readings where {where}").fetchone()[0] == 0
    assert cursor.execute("select sum(reading_count) from marts.fct_meter_readings_hourly").fetchone()[0] == (
        fact_before - 1
    )


def test_substitutes_load_through_copy_into_and_stay_apart_in_the_snowflake_facts(snowflake, tmp_path_factory):
    """The substituted layer on the production loader: the business day 2026-03-28 begins an hour
    before the sample (23:00 UTC the day before), so every registered meter has four missing
    quarter-hours; their substitutes are COPied in (twice: the reload replaces), and after a
    build the facts carry them beside the measured energy, which still reconciles with validated/."""
    from metrify.substitution.daily import substitute_business_day, substitutes_path
    from metrify.warehouse import reconcile

    cursor = snowflake["cursor"]
    root = snowflake["root"]
    day = pd.Timestamp("2026-03-28").date()
    summary = substitute_business_day(day, snowflake["data"].registry, root=root)
    in_file = pq.read_table(substitutes_path(root, day).path).to_pandas()
    assert len(in_file) > 0 and sum(summary["substituted"].values()) == len(in_file)
    for _ in range(2):
        report = snowflake_loader.sync_snowflake(cursor, root, tables=["substituted_readings"], days=[day])
        assert [(r.interval, r.rows) for r in report.loaded] == [("date=2026-03-28", len(in_file))]
    raw = cursor.execute("select count(*), sum(substitute_kwh) from raw.substituted_readings").fetchone()
    assert raw[0] == len(in_file) and raw[1] == pytest.approx(in_file["substitute_kwh"].sum())

    result = build(snowflake, tmp_path_factory)
    assert result.success, result.failures
    fact = cursor.execute(
        "select sum(substituted_quarter_hours), sum(substituted_kwh), count_if(substitution_methods is not null) "
        "from marts.fct_meter_readings_hourly"
    ).fetchone()
    assert fact[0] == len(in_file) and fact[1] == pytest.approx(in_file["substitute_kwh"].sum()) and fact[2] > 0
    daily = cursor.execute(
        "select sum(substituted_readings), sum(total_kwh) - sum(consumption_kwh) - sum(substituted_kwh) "
        "from metrics.daily_consumption_metrics where business_date = '2026-03-28'::date"
    ).fetchone()
    assert daily[0] == len(in_file) and daily[1] == pytest.approx(0, abs=1e-9)
    by_hour = "select hour_start, sum(reading_count), sum(consumption_kwh) from marts.fct_meter_readings_hourly"
    measured = pd.DataFrame(
        cursor.execute(f"{by_hour} group by 1").fetchall(),
        columns=["hour_start", "readings", "consumption_kwh"],
    ).set_index("hour_start")
    measured.index = pd.DatetimeIndex(measured.index)
    assert reconcile.compare_hourly(reconcile.lake_hourly_totals(root), measured) == []


def test_cosmos_key_pair_profile_connects_dbt(snowflake, tmp_path, monkeypatch):
    """The production profile: Cosmos's SnowflakePrivateKeyPemProfileMapping rendered from the
    connection `snowflake_default` holding a freshly generated private key, and dbt connecting
    with it. fakesnow accepts any login, so this proves the profile renders (the key only in an
    environment variable, never in profiles.yml) and the connector signs its key-pair (JWT)
    login with the key, not that a real Snowflake account would accept that key."""
    import json

    import yaml
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from dbt.cli.main import dbtRunner

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    env = snowflake["env"]
    connection = {
        "conn_type": "snowflake",
        "login": env["SNOWFLAKE_USER"],
        "schema": "ANALYTICS",
        "extra": {
            "account": "fakesnow",
            "database": "METRIFY",
            "warehouse": "TRANSFORMING",
            "role": "TRANSFORMER",
            "private_key_content": pem,
            "host": env["SNOWFLAKE_HOST"],
            "port": int(env["SNOWFLAKE_PORT"]),
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_SNOWFLAKE_DEFAULT", json.dumps(connection))
    monkeypatch.setenv("METRIFY_WAREHOUSE_TARGET", "snowflake")
    config = cosmos_config.profile_config()
    assert type(config.profile_mapping).__name__ == "SnowflakePrivateKeyPemProfileMapping"
    config.profile_mapping.profile_args.update({"protocol": "http", "threads": 1})  # fakesnow speaks HTTP
    with config.ensure_profile() as (path, env_vars):
        text = path.read_text()
        profile = yaml.safe_load(text)["metrify"]["outputs"]["snowflake"]
        assert "PRIVATE KEY" not in text and "env_var(" in str(profile["private_key"])
        assert (profile["user"], profile["account"], profile["database"], profile["role"]) == (
            env["SNOWFLAKE_USER"],
            "fakesnow",
            "METRIFY",
            "TRANSFORMER",
        )
        assert pem.strip() in {v.strip() for v in env_vars.values()}
        for key, value in env_vars.items():
            monkeypatch.setenv(key, value)
        debug = [
            "debug",
            "--project-dir",
            str(load_settings().dbt_dir),
            "--profiles-dir",
            str(path.parent),
            "--target",
            "snowflake",
        ]
        result = dbtRunner().invoke(debug)
        assert result.success, result.exception
        # the key is really used: with a corrupt one the connection fails
        for key, value in env_vars.items():
            if value.strip() == pem.strip():
                monkeypatch.setenv(key, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
        assert not dbtRunner().invoke(debug).success
