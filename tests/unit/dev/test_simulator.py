"""The meter simulator: realistic shapes, consistency, injected faults, reproducibility."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from metrify.ingest.decode import decode
from metrify_dev.simulator import ANOMALY_TYPES, POISON_KINDS, SimulationOptions, simulate

DAY = datetime(2026, 6, 17, tzinfo=UTC)  # a Wednesday in June


@pytest.fixture(scope="module")
def clean() -> object:
    return simulate(SimulationOptions(meters=300, start=DAY, seed=7))


def test_same_seed_same_messages_other_seed_other_messages() -> None:
    one = simulate(SimulationOptions(meters=20, start=DAY, seed=1, poison_rate=0.01, anomaly_rate=0.2))
    two = simulate(SimulationOptions(meters=20, start=DAY, seed=1, poison_rate=0.01, anomaly_rate=0.2))
    three = simulate(SimulationOptions(meters=20, start=DAY, seed=2, poison_rate=0.01, anomaly_rate=0.2))
    assert one.values == two.values and one.keys == two.keys
    assert one.values != three.values


def test_one_reading_per_meter_and_quarter_hour(clean) -> None:
    frame = clean.readings
    assert len(frame) == 300 * 96
    assert not frame.duplicated(["meter_id", "reading_ts"]).any()
    assert frame.groupby("meter_id").size().eq(96).all()
    assert len(clean.values) == len(frame)


def test_every_clean_message_passes_the_ingestion_contract(clean) -> None:
    decoded = decode(clean.values, now=datetime(2026, 6, 18, tzinfo=UTC))
    assert decoded.rejected == []


def test_daily_energy_matches_the_yearly_consumption_scale(clean) -> None:
    daily = clean.readings.groupby("meter_id")["consumption_kwh"].sum()
    yearly = clean.registry.set_index("meter_id")["yearly_kwh"]
    ratio = (daily / (yearly / 365)).median()
    assert 0.6 < ratio < 1.4  # a June weekday is below the yearly average, but not by half


def test_households_peak_in_the_evening_not_at_night(clean) -> None:
    frame = clean.readings.merge(clean.registry[["meter_id", "load_profile"]])
    households = frame[frame["load_profile"] == "H25"]
    local_hour = households["reading_ts"].dt.tz_convert("Europe/Berlin").dt.hour
    by_hour = households.groupby(local_hour)["consumption_kwh"].mean()
    assert by_hour.loc[18:21].mean() > 1.5 * by_hour.loc[2:5].mean()


def test_pv_households_feed_in_by_day_only(clean) -> None:
    frame = clean.readings.merge(clean.registry[["meter_id", "load_profile"]])
    local_hour = frame["reading_ts"].dt.tz_convert("Europe/Berlin").dt.hour
    assert frame.loc[frame["load_profile"] != "P25", "export_kwh"].eq(0).all()
    pv = frame[frame["load_profile"] == "P25"]
    pv_hour = local_hour[pv.index]
    assert pv.loc[pv_hour.between(11, 14), "export_kwh"].mean() > 0.1
    assert pv.loc[(pv_hour <= 2) | (pv_hour >= 23), "export_kwh"].max() == 0


def test_electrical_values_are_consistent(clean) -> None:
    frame = clean.readings
    power_w = np.maximum(frame["consumption_kwh"], frame["export_kwh"]) * 4000
    expected_current = power_w / (frame["voltage"] * frame["power_factor"])
    assert np.allclose(frame["current"], expected_current, atol=0.01)
    assert frame["voltage"].between(207, 253).all()  # EN 50160 band on clean data
    assert frame["frequency"].between(49.8, 50.2).all()
    # frequency is one grid-wide signal: meters agree at each instant
    assert frame.groupby("reading_ts")["frequency"].std().max() < 0.01


def test_berlin_dst_day_has_92_quarter_hours() -> None:
    start = pd.Timestamp("2026-03-29", tz="Europe/Berlin")
    end = pd.Timestamp("2026-03-30", tz="Europe/Berlin")
    sim = simulate(SimulationOptions(meters=2, start=start.to_pydatetime(), end=end.to_pydatetime(), seed=1))
    assert sim.counts["intervals"] == 92


def test_injected_anomalies_are_labelled_and_present() -> None:
    sim = simulate(SimulationOptions(meters=140, start=DAY, seed=3, anomaly_rate=0.1))
    labels = sim.labels
    assert set(labels["anomaly_type"]) == set(ANOMALY_TYPES)
    merged = labels.merge(sim.readings, on=["meter_id", "reading_ts"], how="left")
    negative = merged[merged["anomaly_type"] == "negative_consumption"]
    assert (negative["consumption_kwh"] < 0).all()
    voltage = merged[merged["anomaly_type"] == "voltage_out_of_range"]
    assert (~voltage["voltage"].between(207, 253)).all()
    gaps = merged[merged["anomaly_type"] == "gap"]
    assert gaps["consumption_kwh"].isna().all()  # the reading is missing from the stream
    stuck = merged[merged["anomaly_type"] == "stuck_meter"]
    assert stuck.groupby("meter_id")["consumption_kwh"].nunique().eq(1).all()
    conflicts = labels[labels["anomaly_type"] == "duplicate_conflict"]
    payloads = [json.loads(v) for v in sim.values]
    for _, row in conflicts.iterrows():
        ts = row["reading_ts"].strftime("%Y-%m-%dT%H:%M:%SZ")
        values = {p["consumption_kwh"] for p in payloads if p["meter_id"] == row["meter_id"] and p["reading_ts"] == ts}
        assert len(values) == 2


def test_poison_late_and_duplicate_messages() -> None:
    sim = simulate(
        SimulationOptions(
            meters=50, start=DAY, seed=5, poison_rate=0.005, late_rate=0.02, duplicate_rate=0.01, out_of_order_rate=0.01
        )
    )
    counts = sim.counts
    assert set(counts["poison"]) == set(POISON_KINDS)
    assert counts["messages"] == counts["readings"] + counts["poison_messages"] + counts["exact_duplicates"]
    decoded = decode(sim.values, now=datetime(2026, 6, 18, tzinfo=UTC))
    assert len(decoded.rejected) == counts["poison_messages"]
    # late readings arrive after newer ones: the stream is not ordered by reading time
    ts = pd.to_datetime(decoded.rows["reading_ts"].to_pandas())
    assert (ts.diff().dt.total_seconds() < -3600).sum() > 0


def test_weather_has_multi_day_cold_spells_and_is_the_same_for_any_window() -> None:
    """Day anomalies persist (lag-1 autocorrelation well above 0) and a day's weather does not depend on the window."""
    from metrify_dev.simulator import ambient_weather, seasonal_temperature

    hours = pd.date_range("2026-01-01", "2027-01-01", freq="h", tz="UTC", inclusive="left")
    weather = ambient_weather(hours, 52.5, seed=42)
    anomaly = (weather["temperature_celsius"] - seasonal_temperature(hours, 52.5)).groupby(hours.normalize()).mean()
    assert anomaly.autocorr(1) > 0.5
    part = ambient_weather(hours[24 * 100 : 24 * 101], 52.5, seed=42)
    pd.testing.assert_frame_equal(part, weather.iloc[24 * 100 : 24 * 101])


def test_heat_pump_meters_use_more_on_colder_days() -> None:
    from metrify_dev.simulator import heat_pump_share

    hours = pd.date_range("2026-12-01", "2026-12-03", freq="15min", tz="UTC", inclusive="left")
    cold = heat_pump_share(hours, np.full(len(hours), -5.0)).sum()
    mild = heat_pump_share(hours, np.full(len(hours), 8.0)).sum()
    warm = heat_pump_share(hours, np.full(len(hours), 18.0)).sum()
    assert cold > 2.5 * mild and warm == 0
