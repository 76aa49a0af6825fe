"""One Airflow run of `warehouse_daily` over a sample lake with gaps: the day's substitute values
land in the lake, flagged, and reach the hourly facts and the daily metrics beside (never inside)
the measured energy; the measured part still reconciles with validated/."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from metrify import lake
from metrify.contracts import substitutes
from metrify.warehouse import dbt_runner, duckdb_loader, reconcile
from metrify_dev import airflow_env, postgres
from metrify_dev import sample_lake as wd

BUSINESS_DAY = "2026-03-29"  # the spring-forward day: 92 quarter-hours
RUN = "2026-03-30T02:30:00+02:00"  # the run due after it rebuilds it
BLOCKED_HOUR = pd.Timestamp("2026-03-29 15:00", tz="UTC")
QH = pd.Timedelta(minutes=15)


def _gappy_meters(registry: pd.DataFrame) -> tuple[str, str]:
    """Two meters of classes with a BDEW profile (the sample's two days are too short for an own
    profile), neither the one the sample holds readings back from."""
    fit = registry[registry["load_profile"].isin(["H25", "G25", "L25", "P25"])]["meter_id"].tolist()
    fit = [m for m in fit if m != registry["meter_id"].iloc[0]]
    return fit[0], fit[1]


def _drop(frame: pd.DataFrame, registry: pd.DataFrame) -> pd.Series:
    """Meter A misses two quarter-hours at 10:00 UTC; meter B sends nothing the whole business
    day; at 15:00 UTC most meters miss three readings, so the gate blocks that hour."""
    a, b = _gappy_meters(registry)
    start = frame["reading_ts"] - QH
    local_day = start.dt.tz_convert("Europe/Berlin").dt.date.astype(str)
    a_gap = (frame["meter_id"] == a) & start.isin(pd.date_range("2026-03-29 10:00", periods=2, freq="15min", tz="UTC"))
    b_gap = (frame["meter_id"] == b) & (local_day == BUSINESS_DAY)
    others = registry["meter_id"].iloc[: len(registry) // 2 + 1]
    # the gate's hour 15 holds the readings ENDING 15:00..15:45: three of them go
    blocked = frame["meter_id"].isin(others) & frame["reading_ts"].between(BLOCKED_HOUR + QH, BLOCKED_HOUR + 3 * QH)
    return a_gap | b_gap | blocked


@pytest.fixture(scope="module")
def daily_run(warehouse_home, dbt_manifest):
    root = lake.lake_root()
    data = wd.build_lake(root, meters=8, days=2, drop=_drop)
    assert data.verdicts[f"meter_readings {BUSINESS_DAY} hour 15"] == "blocked"
    connections = airflow_env.duckdb_connection()
    connections["postgres_default"] = postgres.seed_registry(data.registry)
    try:
        airflow_env.ensure_db()
        result = airflow_env.airflow(
            "dags", "test", "warehouse_daily", RUN, extra_connections=connections, check=False, capture=True
        )
    finally:
        postgres.stop_registry_db()
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    path = lake.lake_root() / substitutes.LAYER / substitutes.DATASET / f"date={BUSINESS_DAY}" / substitutes.FILE_NAME
    return {"data": data, "file": pq.read_table(path.path).to_pandas(), "log": log}


def query(sql: str) -> pd.DataFrame:
    with duckdb_loader.connect_duckdb() as conn:
        return conn.execute(sql).df()


@pytest.mark.airflow
def test_the_daily_run_lands_the_days_substitutes_flagged(daily_run):
    a, b = _gappy_meters(daily_run["data"].registry)
    subs = daily_run["file"]
    starts = subs["interval_start"]
    assert not (subs["reading_ts"].dt.floor("h") == BLOCKED_HOUR).any()  # a blocked hour stays a block
    assert set(subs["gap_reason"]) == {substitutes.GAP_NO_READING}
    assert set(subs["business_date"].astype(str)) == {BUSINESS_DAY}
    # meter B: the whole DST day (92 quarter-hours) but the blocked hour; meter A: its two gaps
    assert (subs["meter_id"] == b).sum() == 92 - 4
    assert sorted(starts[subs["meter_id"] == a]) == list(
        pd.date_range("2026-03-29 10:00", periods=2, freq="15min", tz="UTC")
    )
    assert set(subs.loc[subs["meter_id"].isin([a, b]), "method"]) == {"bdew_profile"}
    assert (subs["substitute_kwh"] >= 0).all()
    assert "substitutes for 2026-03-29" in daily_run["log"]


@pytest.mark.airflow
def test_the_facts_carry_measured_and_substituted_energy_apart(daily_run):
    a, b = _gappy_meters(daily_run["data"].registry)
    subs = daily_run["file"]
    fact = query(
        "select meter_id, hour_start, reading_count, consumption_kwh, substituted_quarter_hours, substituted_kwh, "
        f"total_kwh, substitution_methods from marts.fct_meter_readings_hourly where business_date = '{BUSINESS_DAY}'"
    )
    b_hours = fact[fact["meter_id"] == b]
    assert (b_hours["reading_count"] == 0).all() and (b_hours["consumption_kwh"] == 0).all()
    assert b_hours["substituted_quarter_hours"].sum() == 92 - 4
    assert set(b_hours["substitution_methods"]) == {"bdew_profile"}
    a_hour = fact[(fact["meter_id"] == a) & (fact["hour_start"] == pd.Timestamp("2026-03-29 10:00"))].iloc[0]
    assert (a_hour["reading_count"], a_hour["substituted_quarter_hours"]) == (2, 2)
    assert a_hour["total_kwh"] == pytest.approx(a_hour["consumption_kwh"] + a_hour["substituted_kwh"])
    assert fact["substituted_kwh"].sum() == pytest.approx(subs["substitute_kwh"].sum())
    assert (fact["reading_count"] + fact["substituted_quarter_hours"] <= 4).all()

    daily = query(
        "select sum(reading_count) as measured, sum(substituted_readings) as substituted, "
        "sum(consumption_kwh) as measured_kwh, sum(substituted_kwh) as substituted_kwh, sum(total_kwh) as total_kwh "
        f"from metrics.daily_consumption_metrics where business_date = '{BUSINESS_DAY}'"
    ).iloc[0]
    assert daily["substituted"] == len(subs)
    assert daily["substituted_kwh"] == pytest.approx(subs["substitute_kwh"].sum())
    assert daily["total_kwh"] == pytest.approx(daily["measured_kwh"] + daily["substituted_kwh"])
    measured = fact["reading_count"].sum()
    assert daily["measured"] == measured


def _mismatches() -> list[dict]:
    """Hours where the fact's measured part disagrees with the validated files of the UTC dates
    the run loaded (its business day spans 2026-03-28 and 2026-03-29)."""
    days = [pd.Timestamp("2026-03-28").date(), pd.Timestamp("2026-03-29").date()]
    fact = query(
        "select hour_start, sum(reading_count) as readings, sum(consumption_kwh) as consumption_kwh "
        "from marts.fct_meter_readings_hourly group by hour_start"
    ).set_index("hour_start")
    return reconcile.compare_hourly(reconcile.lake_hourly_totals(lake.lake_root(), days=days), fact)


@pytest.mark.airflow
def test_the_measured_part_reconciles_and_a_leaked_substitute_is_caught(daily_run, tmp_path):
    assert _mismatches() == []
    leak = (
        "update marts.fct_meter_readings_hourly set consumption_kwh = consumption_kwh {} substituted_kwh "
        "where substituted_quarter_hours > 0 and reading_count > 0"
    )
    with duckdb_loader.connect_duckdb() as conn:
        conn.execute(leak.format("+"))
    try:
        assert [m["hour_start"] for m in _mismatches()] == ["2026-03-29 10:00:00"]  # meter A's hour
        check = dbt_runner.run_dbt(["test", "--select", "assert_meter_readings_reconcile"], target_path=tmp_path)
        assert not check.success and list(check.statuses.values()) == ["fail"]
    finally:
        with duckdb_loader.connect_duckdb() as conn:
            conn.execute(leak.format("-"))
    assert _mismatches() == []
