"""`metrify run`'s seeded history: the days before the window, for the window's fleet, in the
validated layer; and the forecast step that uses it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest

from metrify import lake
from metrify.contracts import readings
from metrify_dev import cli, history
from metrify_dev.history import SEEDED_FILE, seed_history
from metrify_dev.simulator import SimulationOptions, simulate

WINDOW = SimulationOptions(meters=6, start=datetime(2026, 3, 28, tzinfo=UTC), seed=9, anomaly_rate=0.5)


def test_history_is_the_windows_fleet_written_as_the_gate_publishes(metrify_home) -> None:
    root = lake.lake_root()
    fleet = simulate(WINDOW).registry
    seeded = seed_history(root, WINDOW, days=3, fleet=fleet)
    assert (seeded.start, seeded.end) == (datetime(2026, 3, 25, tzinfo=UTC), WINDOW.start)
    files = lake.list_files(root / "validated" / readings.DATASET)
    # 72 hours; the last reading (ending at the window's start) sits in the window's first hour
    # partition, as the drain partitions by reading_ts
    assert len(files) == seeded.reading_files == 73 and all(f.endswith(SEEDED_FILE) for f in files)
    assert sum("date=2026-03-28/hour=00/" in f for f in files) == 1
    table = lake.read_table(root / "validated" / readings.DATASET)
    assert table.num_rows == seeded.readings == 6 * 96 * 3
    assert set(readings.VALIDATED_SCHEMA.names) <= set(table.column_names)
    frame = table.to_pandas()
    assert set(frame["meter_id"]) == set(fleet["meter_id"])
    assert frame["reading_ts"].min() == pd.Timestamp("2026-03-25 00:15", tz="UTC")
    assert frame["reading_ts"].max() == pd.Timestamp("2026-03-28 00:00", tz="UTC")  # up to the window, not into it
    assert not frame.duplicated(["meter_id", "reading_ts"]).any() and (frame["delivered_copies"] == 1).all()
    assert (frame["consumption_kwh"] >= 0).all(), "no injected faults in the history"
    assert not lake.list_files(root / "raw"), "nothing in raw/: the Kafka reconciliation counts raw rows"
    weather = lake.read_table(root / "validated" / "weather").to_pandas()
    assert len(weather) == seeded.weather_rows == 72 * len(set(fleet["city"]))
    assert set(weather["city"]) == set(fleet["city"]) and set(weather["source"]) == {"dwd"}


def test_history_for_another_fleet_is_refused(metrify_home) -> None:
    other = simulate(SimulationOptions(meters=6, start=WINDOW.start, seed=10)).registry
    with pytest.raises(ValueError, match="differs from the window's registry"):
        seed_history(lake.lake_root(), WINDOW, days=1, fleet=other)


def test_the_run_forecasts_the_window_day_and_tomorrow_after_seeding(metrify_home, monkeypatch) -> None:
    """`metrify run`'s forecast step: seeds 28 days, runs forecast_load for the window's day and
    the day after (logical dates that map back to those target days), and fails when the
    warehouse holds no forecast for tomorrow."""
    import pendulum

    from metrify.config import load_settings
    from metrify.forecast.tasks import target_day

    settings = load_settings()
    settings.simulator_dir.mkdir(parents=True, exist_ok=True)
    window = SimulationOptions(meters=4, start=datetime(2026, 3, 28, tzinfo=UTC), seed=9)
    simulate(window).registry.to_parquet(settings.simulator_dir / "meter_registry.parquet")
    runs: list[date] = []

    def fake_run_dag(dag_id, settings, extra_args=()):
        assert dag_id == "forecast_load"
        due = pendulum.parse(extra_args[0])
        runs.append(target_day(due, due))

    monkeypatch.setattr(cli, "run_dag", fake_run_dag)
    rows = pd.DataFrame(
        {"series_kind": ["region"], "series": ["Berlin"], "quarter_hours": [92], "method": ["model"], "p50_kwh": [1.0]}
    )
    monkeypatch.setattr(cli, "forecast_in_warehouse", lambda *a: (rows, pd.DataFrame()))
    cli.run_forecast(settings, window)
    assert runs == [date(2026, 3, 28), date(2026, 3, 29)]
    seeded_readings = lake.read_table(lake.lake_root() / "validated" / readings.DATASET, columns=["reading_ts"])
    assert seeded_readings.num_rows == 4 * 96 * 28

    seeded = history.seed_history(lake.lake_root(), window, days=1)

    monkeypatch.setattr(history, "seed_history", lambda *a, **k: seeded)  # seeded above already
    monkeypatch.setattr(cli, "forecast_in_warehouse", lambda *a: (rows.iloc[0:0], pd.DataFrame()))
    with pytest.raises(SystemExit, match="no forecast for 2026-03-29 in marts.fct_load_forecast"):
        cli.run_forecast(settings, window)


def test_the_hour_before_the_window_carries_one_hour_of_heating_not_a_day(metrify_home) -> None:
    """The simulator spreads a heat pump's daily energy over the local day's simulated
    quarter-hours: history cut at the window's start (01:00 local) must come from a whole
    simulated day, or its last hour would carry that day's heating."""
    window = SimulationOptions(meters=150, start=datetime(2026, 1, 14, tzinfo=UTC), seed=4)
    seeded = seed_history(lake.lake_root(), window, days=2)
    assert (seeded.registry["load_profile"] == "WP").any(), "the fleet needs heat pumps for this check"
    frame = lake.read_table(lake.lake_root() / "validated" / readings.DATASET).to_pandas()
    heat_pumps = frame[frame["meter_id"].isin(seeded.registry.loc[seeded.registry["load_profile"] == "WP", "meter_id"])]
    hour = heat_pumps.groupby(pd.to_datetime(heat_pumps["reading_ts"], utc=True).dt.ceil("h"))["consumption_kwh"].sum()
    last = hour[pd.Timestamp(window.start)]
    day_before = hour[pd.Timestamp(window.start) - pd.Timedelta(days=1)]
    assert last < 1.5 * day_before, (last, day_before)
