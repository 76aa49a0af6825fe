"""The grid/weather gates on data landed by the real polling code from the fake APIs
(contract compatibility between `metrify.sources` and `metrify.quality_sources`)."""

from __future__ import annotations

from datetime import timedelta

from metrify import lake
from metrify.contracts.geography import TSOS
from metrify.quality import gate, grid_anomalies
from metrify.sources import grid, weather
from tests.fake_apis import DAY, endpoint

START, END = DAY + timedelta(hours=9), DAY + timedelta(hours=11)
DATE = DAY.strftime("%Y-%m-%d")


def test_landed_grid_and_weather_pass_their_gates(fakes, lake_root) -> None:
    frequency = grid.fetch_frequency(endpoint(fakes, "gridradar_api"), START, END)
    for operator in TSOS:
        grid.ingest_operator(operator, START, END, endpoint(fakes, "entsoe_api"), frequency, lake_root)
    for source, conn_id in (("dwd", "brightsky_api"), ("openweathermap", "openweathermap_api")):
        weather.ingest_source(source, START, END, endpoint(fakes, conn_id), lake_root)
    assert gate.pending_days("grid_status") == [DATE] and gate.pending_days("weather") == [DATE]
    for dataset, rows in (("grid_status", 4 * 8), ("weather", 2 * 2 * len(weather.configured_cities()))):
        report = gate.run_source_gate(dataset, DATE)
        assert report["passed"] and report["rows"] == rows == report["validated"], report
        assert all(f["severity"] == "warning" for f in report["failures"])
        assert lake.count_rows(lake_root / "validated" / dataset) == rows
    assert gate.pending_days("grid_status") == [] and gate.pending_days("weather") == []
    summary = grid_anomalies.run_grid_anomalies(DATE)
    assert lake.count_rows(lake_root / "anomalies" / "grid_status") == sum(summary["findings"].values())
