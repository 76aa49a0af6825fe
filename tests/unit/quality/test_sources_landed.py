"""The grid/weather gates on data landed by the real polling code from the fake APIs
(contract compatibility between `metrify.sources` and `metrify.quality_sources`)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

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

    # the grid anomaly task reads the landed day: quiet on it, as the landed values (read here
    # with pyarrow) are inside every rule's limit ...
    landed = Path(lake_root.path) / "raw" / grid.DATASET
    frame = pq.read_table(landed).to_pandas()
    assert frame["frequency_hz"].sub(50).abs().max() < 0.2 and frame["grid_stability_score"].min() >= 50
    assert frame["load_factor"].max() <= 0.9
    assert grid_anomalies.run_grid_anomalies(DATE)["findings"] == {}
    written = Path(lake_root.path) / "anomalies" / grid.DATASET / f"date={DATE}" / "grid_status_anomalies.parquet"
    assert pq.read_table(written).num_rows == 0
    # ... and finds the one quarter-hour whose frequency is changed to 49.7 Hz (0.3 Hz off: a warning)
    victim = sorted(landed.glob("operator=TenneT/*/hour=10/*.parquet"))[0]
    table = pq.read_table(victim)
    pq.write_table(
        table.set_column(table.schema.get_field_index("frequency_hz"), "frequency_hz", pa.array([49.7])), victim
    )
    assert grid_anomalies.run_grid_anomalies(DATE)["findings"] == {"frequency_out_of_range": 1}
    (found,) = pq.read_table(written).to_pylist()
    assert (found["operator_name"], found["anomaly_type"], found["severity"]) == (
        "TenneT",
        "frequency_out_of_range",
        "warning",
    )
    assert found["reading_ts"] == table["reading_ts"][0].as_py()
