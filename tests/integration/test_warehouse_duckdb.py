"""The warehouse on DuckDB: interval loads, the registry through PostgreSQL, dbt build,
reconciliation with the lake, late data and backfill identity."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metrify import lake
from metrify.quality.verdicts import read_verdicts
from metrify.warehouse import dbt_runner, duckdb_loader, reconcile, registry
from metrify_dev import postgres
from metrify_dev import sample_lake as wd
from tests.integration.oracles import expected_hourly

TABLES = [
    "staging.stg_meter_readings",
    "marts.dim_meters",
    "marts.fct_meter_readings_hourly",
    "marts.fct_grid_status",
    "marts.fct_weather_hourly",
    "marts.fct_smart_meter_analytics",
    "marts.fct_meter_anomalies",
    "metrics.daily_consumption_metrics",
    "metrics.grid_stability_metrics",
    "metrics.weather_correlation_metrics",
    "metrics.meter_quality_tiers",
]


@pytest.fixture(scope="module")
def built(warehouse_home, tmp_path_factory):
    root = lake.lake_root()
    data = wd.build_lake(root, meters=20, days=2)
    report = duckdb_loader.sync()
    duckdb_loader.load_verdicts_duckdb(read_verdicts(root).to_pandas())
    # the registry goes lake-less: simulator -> PostgreSQL (embedded pgserver) -> warehouse
    uri = postgres.start_registry_db()
    try:
        assert postgres.write_registry(data.registry, uri) == len(data.registry)
        rows = registry.read_registry(uri)
    finally:
        postgres.stop_registry_db()
    duckdb_loader.load_registry_duckdb(rows)
    target = tmp_path_factory.mktemp("dbt-target")
    started = time.perf_counter()
    result = dbt_runner.run_dbt(["build"], target_path=target)
    print(f"\ndbt build on DuckDB: {time.perf_counter() - started:.1f}s, {len(result.statuses)} nodes")
    return {"data": data, "sync": report, "build": result, "target": target, "registry": rows}


def query(sql: str) -> list[tuple]:
    with duckdb_loader.connect_duckdb() as conn:
        return conn.execute(sql).fetchall()


def frame(sql: str) -> pd.DataFrame:
    with duckdb_loader.connect_duckdb() as conn:
        return conn.execute(sql).df()


def test_the_gate_passed_every_interval_of_the_sample(built):
    assert set(built["data"].verdicts.values()) == {"passed"}, built["data"].verdicts


def test_sync_loads_every_reading_of_record_once(built):
    delivered = built["data"].readings
    distinct = len(delivered.drop_duplicates(["meter_id", "reading_ts"]))
    assert distinct < len(delivered)  # the sample holds redeliveries and a correction
    assert built["sync"].rows > distinct  # readings plus grid, weather, anomalies
    assert query("select count(*) from raw.meter_readings")[0][0] == distinct
    # nothing changed in the lake: a second sync loads nothing
    again = duckdb_loader.sync()
    assert again.loaded == [] and again.unchanged == len(built["sync"].loaded)


def test_reloading_an_interval_replaces_it(built):
    before = query("select count(*), sum(consumption_kwh) from raw.meter_readings")[0]
    first = duckdb_loader.load_interval("meter_readings", "2026-03-29", 5)
    second = duckdb_loader.load_interval("meter_readings", "2026-03-29", 5)
    assert first.rows == second.rows == 80  # 20 meters x 4 readings
    assert query("select count(*), sum(consumption_kwh) from raw.meter_readings")[0] == pytest.approx(before)


def test_registry_round_trip_through_postgres(built):
    loaded = built["registry"]
    source = built["data"].registry
    assert list(loaded["meter_id"]) == sorted(source["meter_id"])
    rows = query(
        "select meter_id, load_profile, grid_operator, cast(installed_date as varchar) "
        "from marts.dim_meters order by meter_id"
    )
    expected = source.sort_values("meter_id")
    assert rows == list(
        zip(
            expected["meter_id"],
            expected["load_profile"],
            expected["grid_operator"],
            [str(d) for d in expected["installed_date"]],
            strict=True,
        )
    )


def test_dbt_build_succeeds_and_fills_every_table(built):
    result = built["build"]
    assert result.success, result.failures
    assert "test.metrify.assert_meter_readings_reconcile" in {k.rsplit(".", 1)[0] for k in result.statuses} or any(
        k.startswith("test.metrify.assert_meter_readings_reconcile") for k in result.statuses
    )
    for table in TABLES:
        assert query(f"select count(*) from {table}")[0][0] > 0, table
    # one anomaly row (a spike the anomaly task found), joined to its meter
    assert query("select anomaly_type, region is not null from marts.fct_meter_anomalies") == [("spike", True)]
    # every judged interval is in the gate's mart, all passed
    assert query("select dataset, status, count(*) from marts.quality_gate_intervals group by 1, 2 order by 1") == [
        ("grid_status", "passed", 2),
        ("meter_readings", "passed", 49),
        ("weather", "passed", 2),
    ]
    # the DST day 2026-03-29 has 23 local hours: 92 readings per meter
    assert query(
        "select distinct reading_count / meters from metrics.daily_consumption_metrics "
        "where business_date = date '2026-03-29'"
    ) == [(92,)]


# quarter-hours per business day of the sample: 03-28 and 03-30 are ordinary days (the sample
# covers them only in part: from 01:00 local on the 28th, up to 02:00 local on the 30th), the
# 29th is the spring-forward day
QUARTER_HOURS = {date(2026, 3, 28): 96, date(2026, 3, 29): 92, date(2026, 3, 30): 96}


def test_completeness_is_measured_against_the_calendar(built):
    """Daily metrics and meter tiers divide by the quarter-hours of the business day (92 on the
    spring-forward day), not by the hours that had data: the fleet's first local hour of the
    28th and all but two hours of the 30th are missing, so those days are incomplete."""
    daily = frame("select business_date, meters, reading_count, completeness from metrics.daily_consumption_metrics")
    daily["business_date"] = [d.date() for d in pd.to_datetime(daily["business_date"])]
    assert set(daily["business_date"]) == set(QUARTER_HOURS)
    fleet_due = daily["meters"] * daily["business_date"].map(QUARTER_HOURS)
    assert daily["completeness"].to_numpy() == pytest.approx((daily["reading_count"] / fleet_due).to_numpy())
    by_day = daily.groupby("business_date")["completeness"]
    assert (by_day.min()[date(2026, 3, 29)], by_day.max()[date(2026, 3, 29)]) == (1.0, 1.0)  # 92 of 92
    assert by_day.max()[date(2026, 3, 28)] == pytest.approx(92 / 96)  # local hour 00 not in the sample
    assert by_day.max()[date(2026, 3, 30)] == pytest.approx(8 / 96)  # two hours of the 30th
    expected = query(
        "select business_date, max(expected_readings / meters), min(expected_readings / meters) "
        "from metrics.daily_consumption_metrics group by 1 order by 1"
    )
    assert expected == [(d, q, q) for d, q in sorted(QUARTER_HOURS.items())]

    tiers = frame("select * from metrics.meter_quality_tiers")
    tiers["business_date"] = [d.date() for d in pd.to_datetime(tiers["business_date"])]
    # a meter's 8 readings of the 30th are 8 of 96, however complete its two hours were
    day_30 = tiers[tiers["business_date"] == date(2026, 3, 30)]
    assert (day_30["complete_hours"] == day_30["hours"]).all() and (day_30["quality_tier"] == "bronze").all()
    # the short day: 92 readings are a complete day; a clean meter is gold
    clean = tiers[
        (tiers["business_date"] == date(2026, 3, 29))
        & (tiers["flagged_readings"] == 0)
        & (tiers["conflicting_readings"] == 0)
    ]
    assert len(clean) > 0 and (clean["reading_count"] == 92).all()
    assert (clean["quality_score"] == 1.0).all() and (clean["quality_tier"] == "gold").all()
    due = tiers["business_date"].map(QUARTER_HOURS)
    assert (tiers["expected_readings"] == due).all()
    assert tiers["completeness"].to_numpy() == pytest.approx((tiers["reading_count"] / due).to_numpy())


def test_facts_reconcile_with_the_lake(built):
    """Counts and kWh per hour in the fact equal the distinct raw readings (the later delivery
    winning), computed in pandas from what was written."""
    expected = expected_hourly(built["data"].readings)
    fact = frame(
        "select hour_start, sum(reading_count) as readings, sum(consumption_kwh) as consumption_kwh "
        "from marts.fct_meter_readings_hourly group by hour_start order by hour_start"
    ).set_index("hour_start")
    fact.index = pd.DatetimeIndex(fact.index)
    expected.index = pd.DatetimeIndex(expected.index).as_unit(fact.index.unit)
    assert list(fact.index) == list(expected.index)
    assert (fact["readings"].to_numpy() == expected["readings"].to_numpy()).all()
    assert fact["consumption_kwh"].to_numpy() == pytest.approx(expected["consumption_kwh"].to_numpy(), abs=1e-9)
    # and the same from the lake's Parquet files themselves
    assert reconcile.reconcile() == []
    # ... a check that does notice a lost kWh
    tamper = (
        "update marts.fct_meter_readings_hourly set consumption_kwh = consumption_kwh {} 0.5 "
        "where hour_start = timestamp '2026-03-29 12:00:00' "
        "and meter_id = (select min(meter_id) from raw.meter_registry)"
    )
    query(tamper.format("-"))
    try:
        assert [m["hour_start"] for m in reconcile.reconcile()] == ["2026-03-29 12:00:00"]
        dbt_check = dbt_runner.run_dbt(
            ["test", "--select", "assert_meter_readings_reconcile"], target_path=built["target"]
        )
        assert not dbt_check.success and list(dbt_check.statuses.values()) == ["fail"]
    finally:
        query(tamper.format("+"))
    # the corrected reading counts once, with the later delivery's value; 10 copies collapsed
    assert query("select sum(conflicting_readings), sum(duplicate_copies) from marts.fct_meter_readings_hourly") == [
        (1, 10)
    ]


def test_late_data_updates_the_right_hour_without_duplicates(built, tmp_path):
    data = built["data"]
    meter = data.late["meter_id"].iloc[0]
    where = f"meter_id = '{meter}' and hour_start = timestamp '2026-03-28 02:00:00'"
    assert query(f"select count(*) from marts.fct_meter_readings_hourly where {where}") == [(0,)]
    rows_before = query("select count(*) from marts.fct_meter_readings_hourly")[0][0]

    root = lake.lake_root()
    late_at = data.end + pd.Timedelta(hours=20)  # delivered almost a day after the window
    wd.write_meter_readings(root, data.late, late_at, first_offset=20_000)
    assert set(wd.gate_lake(root).values()) == {"passed"}  # the gate judges the two changed hours again
    report = duckdb_loader.sync()
    assert sorted(r.interval for r in report.loaded) == ["date=2026-03-28/hour=02", "date=2026-03-28/hour=03"]

    # lookback of 1 hour: only the load watermark can find an hour 45 hours back
    result = dbt_runner.run_dbt(["build"], target_path=built["target"], vars={"lookback_hours": 1})
    assert result.success, result.failures
    assert query(
        f"select reading_count, round(consumption_kwh, 6) from marts.fct_meter_readings_hourly where {where}"
    ) == [(4, round(float(data.late["consumption_kwh"].sum()), 6))]
    assert query("select count(*) from marts.fct_meter_readings_hourly")[0][0] == rows_before + 1
    expected = expected_hourly(pd.concat([data.readings, data.late], ignore_index=True))
    fact = frame(
        "select hour_start, sum(reading_count) as n, sum(consumption_kwh) as kwh "
        "from marts.fct_meter_readings_hourly group by 1 order by 1"
    )
    assert fact["n"].tolist() == expected["readings"].tolist()
    assert fact["kwh"].to_numpy() == pytest.approx(expected["consumption_kwh"].to_numpy(), abs=1e-9)
    assert reconcile.reconcile() == []


def _snapshot() -> dict[str, pd.DataFrame]:
    out = {}
    for table in TABLES:
        df = frame(f"select * from {table}")
        df = df[[c for c in df.columns if not c.startswith("_")]]
        out[table] = df.sort_values(list(df.columns)).reset_index(drop=True)
    return out


def test_backfilling_a_day_twice_gives_identical_tables(built):
    before = _snapshot()
    for _ in range(2):
        for hour in range(24):
            duckdb_loader.load_interval("meter_readings", date(2026, 3, 28), hour)
            duckdb_loader.load_interval("grid_status", date(2026, 3, 28), hour)
        result = dbt_runner.run_dbt(["build"], target_path=built["target"])
        assert result.success, result.failures
        after = _snapshot()
        for table, expected in before.items():
            pd.testing.assert_frame_equal(after[table], expected, check_exact=False, rtol=1e-12, obj=table)


def test_a_reading_that_vanished_from_a_reloaded_interval_leaves_staging_and_facts(built):
    """An interval re-delivered with one reading fewer: the incremental models drop the reading
    (they replace whole hours), so staging and the facts agree with the lake again."""
    root = lake.lake_root()
    first_delivery = lake.list_files(lake.partition_path(root, "raw", "meter_readings", date="2026-03-29", hour="10"))
    path = (
        lake.partition_path(root, "raw", "meter_readings", date="2026-03-29", hour="10") / Path(first_delivery[0]).name
    )
    table = pq.read_table(path.path)
    gone = table.slice(7, 1).to_pylist()[0]
    meter, reading_ts = gone["meter_id"], pd.Timestamp(gone["reading_ts"]).tz_convert("UTC").tz_localize(None)
    where = f"meter_id = '{meter}' and reading_ts = timestamp '{reading_ts}'"
    assert query(f"select count(*) from staging.stg_meter_readings where {where}") == [(1,)]
    hour = query(f"select hour_start from staging.stg_meter_readings where {where}")[0][0]
    fact_where = f"meter_id = '{meter}' and hour_start = timestamp '{hour}'"
    count_before = query(f"select reading_count from marts.fct_meter_readings_hourly where {fact_where}")[0][0]

    lake.write_parquet(pa.concat_tables([table.slice(0, 7), table.slice(8)]), path)
    assert wd.gate_lake(root) == {"meter_readings 2026-03-29 hour 10": "passed"}
    assert [r.interval for r in duckdb_loader.sync().loaded] == ["date=2026-03-29/hour=10"]
    result = dbt_runner.run_dbt(["build"], target_path=built["target"])
    assert result.success, result.failures

    assert query(f"select count(*) from staging.stg_meter_readings where {where}") == [(0,)]
    assert query(f"select reading_count from marts.fct_meter_readings_hourly where {fact_where}") == [
        (count_before - 1,)
    ]
    assert reconcile.reconcile() == []


def _forecast_table(actual: dict[tuple[str, str], pd.Series], day: date, offset_kwh: dict[str, float]) -> pa.Table:
    """A landed forecast of `day` whose p50 is each series' actual plus its offset, band +-10 %."""
    from metrify.contracts.forecast import LOAD_FORECAST_SCHEMA

    frames = []
    for (kind, name), kwh in actual.items():
        p50 = kwh.to_numpy() + offset_kwh.get(name, 0.0)
        frames.append(
            pd.DataFrame(
                {
                    "series_kind": kind,
                    "series": name,
                    "target_date": day,
                    "interval_start": kwh.index,
                    "p10_kwh": p50 * 0.9,
                    "p50_kwh": p50,
                    "p90_kwh": p50 * 1.1,
                    "method": "model",
                    "model_version": "test-1",
                    "meters": 1,
                    "issued_at": pd.Timestamp("2026-03-28 03:30", tz="UTC"),
                }
            )
        )
    return pa.Table.from_pandas(pd.concat(frames), schema=LOAD_FORECAST_SCHEMA, preserve_index=False)


def test_forecasts_load_into_the_warehouse_and_meet_their_actuals(built):
    """The models built on an empty raw.load_forecast (no forecast yet); a landed forecast then
    loads through the forecast DAG's load, replaces its day on reload, and forecast_accuracy_daily
    compares it with the series' summed readings on every quarter-hour of the DST day."""
    from metrify.forecast.series import local_day_bounds, series_history, series_members
    from metrify.forecast.tasks import forecast_path
    from metrify.warehouse.tasks import load_forecast_day

    assert query("select count(*) from raw.load_forecast") == [(0,)]
    assert query("select count(*) from marts.fct_load_forecast") == [(0,)]
    assert query("select count(*) from metrics.forecast_accuracy_daily") == [(0,)]

    root = lake.lake_root()
    day = date(2026, 3, 29)  # spring-forward: 92 quarter-hours
    start, end = local_day_bounds(day)
    validated = pa.concat_tables(
        [pq.read_table(f) for f in lake.list_files(root / "validated" / "meter_readings")], promote_options="default"
    ).to_pandas()
    actual = {}
    for members in series_members(built["registry"], ("region", "control_area")):
        kwh = series_history(validated, members, end=end)
        actual[(members.kind, members.name)] = kwh[kwh.index >= start]
    assert {len(v) for v in actual.values()} == {92}
    off_by_one = sorted(name for kind, name in actual if kind == "region")[0]
    lake.write_parquet(_forecast_table(actual, day, {off_by_one: 1.0}), forecast_path(root, day))

    for _ in range(2):  # a second load of the same day replaces it
        loaded = load_forecast_day(day)
        assert loaded["table"] == "raw.load_forecast"
        assert query("select count(*) from raw.load_forecast") == [(92 * len(actual),)]
    result = dbt_runner.run_dbt(["build", "--select", "tag:forecast"], target_path=built["target"])
    assert result.success, result.failures

    assert query("select count(*), count(distinct series) from marts.fct_load_forecast") == [
        (92 * len(actual), len({name for _, name in actual}))
    ]
    accuracy = frame("select * from metrics.forecast_accuracy_daily order by series_kind, series")
    assert len(accuracy) == len(actual)
    assert (accuracy["business_date"].astype(str) == "2026-03-29").all()
    assert (accuracy["quarter_hours_compared"] == 92).all() and (accuracy["quarter_hours_forecast"] == 92).all()
    exact = accuracy[accuracy["series"] != off_by_one]
    assert exact["mae_kwh"].max() < 1e-9 and (exact["p10_p90_coverage"] == 1.0).all()
    shifted = accuracy[accuracy["series"] == off_by_one].iloc[0]
    assert shifted["mae_kwh"] == pytest.approx(1.0) and shifted["energy_error_kwh"] == pytest.approx(92.0)


def test_the_forecast_load_names_a_day_with_no_landed_forecast(built):
    from metrify.warehouse.tasks import load_forecast_day

    with pytest.raises(FileNotFoundError, match=r"no landed load forecast for 2026-03-30 .*date=2026-03-30"):
        load_forecast_day(date(2026, 3, 30))
