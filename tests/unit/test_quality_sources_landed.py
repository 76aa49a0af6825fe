"""The grid/weather gates on data landed by the real polling code from the fake APIs
(contract compatibility between `metrify.sources` and `metrify.quality_sources`)."""

from __future__ import annotations

from datetime import timedelta

from metrify import lake
from metrify import quality_sources as qs
from metrify.geography import TSOS
from metrify.sources import grid, weather
from tests.gridweather import DAY, endpoint, fakes, lake_root  # noqa: F401

START, END = DAY + timedelta(hours=9), DAY + timedelta(hours=11)
DATE = DAY.strftime("%Y-%m-%d")


def test_landed_grid_and_weather_pass_their_gates(fakes, lake_root) -> None:  # noqa: F811
    frequency = grid.fetch_frequency(endpoint(fakes, "gridradar_api"), START, END)
    for operator in TSOS:
        grid.ingest_operator(operator, START, END, endpoint(fakes, "entsoe_api"), frequency, lake_root)
    for source, conn_id in (("dwd", "brightsky_api"), ("openweathermap", "openweathermap_api")):
        weather.ingest_source(source, START, END, endpoint(fakes, conn_id), lake_root)
    assert qs.pending_days("grid_status") == [DATE] and qs.pending_days("weather") == [DATE]
    for dataset, rows in (("grid_status", 4 * 8), ("weather", 2 * 2 * len(weather.configured_cities()))):
        report = qs.run_source_gate(dataset, DATE)
        assert report["passed"] and report["rows"] == rows == report["validated"], report
        assert all(f["severity"] == "warning" for f in report["failures"])
        assert lake.count_rows(lake_root / "validated" / dataset) == rows
    assert qs.pending_days("grid_status") == [] and qs.pending_days("weather") == []
    summary = qs.run_grid_anomalies(DATE)
    assert lake.count_rows(lake_root / "anomalies" / "grid_status") == sum(summary["findings"].values())
