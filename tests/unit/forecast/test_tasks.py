"""The forecast_load task body on a small lake: series built, forecast landed once per target
day in the contract's schema, fallbacks named, the plot written beside it."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pendulum
import pyarrow as pa
import pytest

from metrify import lake
from metrify.contracts.forecast import LOAD_FORECAST_SCHEMA
from metrify.forecast.series import local_day_bounds
from metrify.forecast.tasks import forecast_path, plot_path, run_forecast, target_day

REGISTRY = pd.DataFrame(
    {
        "meter_id": ["m1", "m2", "m3"],
        "city": ["Leipzig", "Dresden", "München"],
        "region": ["Sachsen", "Sachsen", "Bayern"],
        "grid_operator": ["50Hertz", "50Hertz", "TenneT"],
    }
)
RUN_START = pendulum.datetime(2026, 11, 26, 4, 30, tz="Europe/Berlin")  # a cron run: start == end
TARGET = date(2026, 11, 27)


def _load(ts: pd.DatetimeIndex, scale: float) -> np.ndarray:
    hour = ts.tz_convert("Europe/Berlin").hour.to_numpy() + ts.minute.to_numpy() / 60
    return scale * (0.2 + 0.1 * np.sin((hour - 6) / 24 * 2 * np.pi))


def _write_lake(root: Any, history_days: int, forecast_cities: list[str]) -> None:
    start, _ = local_day_bounds(TARGET - timedelta(days=history_days + 1))
    end = local_day_bounds(TARGET - timedelta(days=1))[0]  # history ends with the day before yesterday
    ends = pd.date_range(start + timedelta(minutes=15), end, freq="15min", tz="UTC")
    rows = pd.concat(
        [
            pd.DataFrame({"meter_id": m, "reading_ts": ends, "consumption_kwh": _load(ends, i + 1)})
            for i, m in enumerate(REGISTRY.meter_id)
        ]
    )
    for day, part in rows.groupby(rows["reading_ts"].dt.date):
        table = pa.Table.from_pandas(part, preserve_index=False)
        lake.write_parquet(
            table, lake.partition_path(root, "validated", "meter_readings", date=str(day), hour="00") / "v.parquet"
        )
    hours = pd.date_range(start, end, freq="1h", tz="UTC")
    obs = pd.DataFrame(
        [
            {"city": c, "source": "dwd", "observed_at": h, "temperature_celsius": 5.0}
            for c in REGISTRY.city
            for h in hours
        ]
    )
    lake.write_parquet(pa.Table.from_pandas(obs, preserve_index=False), root / "validated/weather/date=all/w.parquet")
    day_start, day_end = local_day_bounds(TARGET)
    ahead = pd.date_range(day_start, day_end, freq="1h", inclusive="left", tz="UTC")
    issued = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    fc = pd.DataFrame(
        [
            {"city": c, "source": "dwd", "issued_at": issued, "valid_at": h, "temperature_celsius": 4.0}
            for c in forecast_cities
            for h in ahead
        ]
    )
    lake.write_parquet(
        pa.Table.from_pandas(fc, preserve_index=False),
        root / "raw/weather_forecast/source=dwd/date=2026-11-26/f.parquet",
    )


def test_target_day_is_the_day_after_the_run() -> None:
    assert target_day(RUN_START, RUN_START) == TARGET
    assert target_day(*[pendulum.datetime(2026, 3, 29, 4, 30, tz="Europe/Berlin")] * 2) == date(2026, 3, 30)


def test_lands_one_forecast_per_series_and_names_the_fallback(lake_root: Any, caplog: pytest.LogCaptureFixture) -> None:
    _write_lake(lake_root, history_days=28, forecast_cities=["Leipzig", "Dresden"])  # none for München
    now = datetime(2026, 11, 26, 3, 30, tzinfo=UTC)
    with caplog.at_level(logging.INFO, logger="metrify.forecast.tasks"):
        summary = run_forecast(RUN_START, RUN_START, registry=REGISTRY, now=now)
    assert summary["target_date"] == "2026-11-27" and summary["series"] == 4
    assert summary["fallback_series"] == ["control_area:TenneT", "region:Bayern"]
    assert any("FALLBACK" in r.message and "München" in r.message and "Bayern" in r.message for r in caplog.records)
    landed = lake.read_table(forecast_path(lake_root, TARGET).parent)
    assert landed is not None and landed.schema.equals(LOAD_FORECAST_SCHEMA)
    frame = landed.to_pandas()
    assert frame.groupby(["series_kind", "series"]).size().to_dict() == {
        ("control_area", "50Hertz"): 96,
        ("control_area", "TenneT"): 96,
        ("region", "Bayern"): 96,
        ("region", "Sachsen"): 96,
    }
    sachsen = frame[frame.series == "Sachsen"]
    assert (sachsen.method == "model").all() and (sachsen.meters == 2).all()
    assert (frame.p10_kwh <= frame.p50_kwh).all() and (frame.p50_kwh <= frame.p90_kwh).all()
    png = plot_path(lake_root, TARGET)
    assert summary["plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    run_forecast(RUN_START, RUN_START, registry=REGISTRY, now=now)  # a rerun replaces the day's file
    assert lake.count_rows(forecast_path(lake_root, TARGET).parent) == len(frame)


def test_series_without_history_is_skipped_with_a_log_line(lake_root: Any, caplog: pytest.LogCaptureFixture) -> None:
    _write_lake(lake_root, history_days=28, forecast_cities=["Leipzig", "Dresden", "München"])
    registry = pd.concat(
        [
            REGISTRY,
            pd.DataFrame(
                [{"meter_id": "m9", "city": "Kiel", "region": "Schleswig-Holstein", "grid_operator": "TenneT"}]
            ),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="metrify.forecast.tasks"):
        summary = run_forecast(RUN_START, RUN_START, registry=registry, now=datetime(2026, 11, 26, 3, 30, tzinfo=UTC))
    assert summary["series"] == 5 and summary["rows"] == 4 * 96
    assert any("NO FORECAST" in r.message and "Schleswig-Holstein" in r.message for r in caplog.records)


def test_a_run_with_no_history_lands_an_empty_forecast_and_a_plot_saying_so(lake_root: Any) -> None:
    """A fresh deployment (the local stack's first scheduled run): no series can be forecast; the
    run still lands the day's (empty) file and a plot instead of failing on an empty frame."""
    summary = run_forecast(RUN_START, RUN_START, registry=REGISTRY, now=datetime(2026, 11, 26, 3, 30, tzinfo=UTC))
    assert summary["rows"] == 0
    assert lake.count_rows(forecast_path(lake_root, TARGET).parent) == 0
    assert plot_path(lake_root, TARGET).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
