"""grid_status and weather suites (Great Expectations), their gate, and grid anomalies."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from metrify import lake
from metrify.contracts import weather as weather_contract
from metrify.contracts.geography import CITIES, TSOS
from metrify.quality import checkpoint, expectations, gate, grid_anomalies
from metrify_dev.simulator import ambient_weather, grid_frequency

DATE = "2026-11-16"
TS = pd.date_range(f"{DATE}T00:15:00Z", periods=96, freq="15min")


def grid_frame() -> pd.DataFrame:
    """One clean day of the four TSOs, frequency from the simulator's shared grid model."""
    frequency = np.round(grid_frequency(TS, seed=4), 3)
    rows = []
    for i, tso in enumerate(TSOS):
        load = 9000 + 3000 * np.sin(np.arange(96) / 96 * 2 * np.pi) + 500 * i
        total = 40000.0 + 1000 * i
        rows.append(
            pd.DataFrame(
                {
                    "operator_name": tso,
                    "region": "x",
                    "reading_ts": TS,
                    "total_capacity_mw": total,
                    "available_capacity_mw": total - load,
                    "load_factor": np.round(load / total, 4),
                    "frequency_hz": frequency,
                    "voltage_kv": 380.0,
                    "grid_stability_score": 80.0,
                    "renewable_percentage": 45.0,
                    "ingested_at": TS + pd.Timedelta(minutes=20),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def weather_frame() -> pd.DataFrame:
    hours = pd.date_range(f"{DATE}T00:00:00Z", periods=24, freq="h")
    rows = []
    for city in CITIES[:5]:
        weather = ambient_weather(hours, city.lat, seed=4).reset_index(drop=True)
        for source in weather_contract.SOURCES:
            rows.append(
                weather.assign(
                    city=city.name,
                    source=source,
                    observed_at=hours,
                    visibility_km=20.0,
                    energy_demand_factor=1.1,
                    ingested_at=hours + pd.Timedelta(minutes=30),
                )
            )
    frame = pd.concat(rows, ignore_index=True)
    for column in ("wind_direction_degrees", "cloud_cover_percent"):
        frame[column] = frame[column].astype(float)
    return frame


def _validate(dataset: str, frame: pd.DataFrame) -> checkpoint.CheckpointOutcome:
    lag = (
        (frame["ingested_at"] - frame[gate.SOURCE_TIME_COLUMNS[dataset]]).dt.total_seconds() / 60
        if "ingested_at" in frame
        else pd.Series(np.nan, index=frame.index)
    )
    return checkpoint.run_suites(
        {dataset: (expectations.SOURCE_SUITES[dataset](), frame.assign(ingestion_lag_minutes=lag))}, build_docs=False
    )


def _set(column: str, value, rows=(3,)) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def apply(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame.loc[list(rows), column] = value
        return frame

    return apply


CASES = {
    "grid_status": (
        grid_frame,
        {
            "unknown operator": (_set("operator_name", "Elia"), "expect_column_values_to_be_in_set"),
            "frequency broken": (_set("frequency_hz", 0.0), "expect_column_values_to_be_between"),
            "duplicate key": (
                lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True),
                "expect_compound_columns_to_be_unique",
            ),
            "missing column": (lambda f: f.drop(columns="load_factor"), "expect_table_columns_to_match_set"),
            "renewables > 100 %": (_set("renewable_percentage", 130.0), "expect_column_values_to_be_between"),
        },
    ),
    "weather": (
        weather_frame,
        {
            "unknown source": (_set("source", "metar"), "expect_column_values_to_be_in_set"),
            "humidity > 100": (_set("humidity_percent", 140.0), "expect_column_values_to_be_between"),
            "kelvin, not celsius": (_set("temperature_celsius", 280.0), "expect_column_values_to_be_between"),
            "duplicate key": (
                lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True),
                "expect_compound_columns_to_be_unique",
            ),
            "wrong type": (
                lambda f: f.assign(pressure_hpa=f["pressure_hpa"].astype(str)),
                "expect_column_values_to_be_in_type_list",
            ),
        },
    ),
}


@pytest.mark.parametrize("dataset", sorted(CASES))
def test_suite_passes_clean_and_catches_each_bad_case(dataset: str) -> None:
    build, cases = CASES[dataset]
    clean = _validate(dataset, build())
    assert clean.success and not clean.failures, clean.failures
    missed = []
    for name, (spoil, expectation) in cases.items():
        outcome = _validate(dataset, spoil(build()))
        if outcome.success or expectation not in {f["expectation"] for f in outcome.critical}:
            missed.append((name, [f["expectation"] for f in outcome.critical]))
    assert not missed, missed


def test_source_gate_quarantines_failing_rows_and_blocks(metrify_home) -> None:
    root = lake.lake_root()
    frame = grid_frame()
    for tso, part in frame.groupby("operator_name"):
        path = lake.partition_path(root, "raw", "grid_status", operator=tso, date=DATE, hour="00") / "f.parquet"
        lake.write_parquet(pa.Table.from_pandas(part, preserve_index=False), path)
    assert gate.pending_days("grid_status") == [DATE]
    report = gate.run_source_gate("grid_status", DATE)
    assert report["passed"] and report["validated"] == len(frame) and report["quarantined"] == 0
    assert gate.pending_days("grid_status") == []

    broken = frame[frame["operator_name"] == "Amprion"].copy()
    broken.loc[broken.index[:2], "frequency_hz"] = 0.0  # a dead frequency feed
    path = lake.partition_path(root, "raw", "grid_status", operator="Amprion", date=DATE, hour="00") / "f.parquet"
    lake.write_parquet(pa.Table.from_pandas(broken, preserve_index=False), path)
    with pytest.raises(checkpoint.QualityGateError, match="frequency_hz") as failure:
        gate.run_source_gate("grid_status", DATE)
    assert "sample: {'reading_ts'" in str(failure.value) or "sample:" in str(failure.value)
    quarantined = lake.read_table(root / "quarantine" / "grid_status_gate").to_pandas()
    assert len(quarantined) == 2 and quarantined["reason"].str.contains("frequency_hz=0.0").all()
    assert not (root / "validated" / "grid_status" / f"date={DATE}" / "grid_status.parquet").exists()


def test_grid_anomalies_find_excursions_and_stay_quiet_on_clean_days() -> None:
    frame = grid_frame()
    assert grid_anomalies.detect_grid_anomalies(frame).empty
    frame.loc[10, "frequency_hz"] = 49.65
    frame.loc[20, "grid_stability_score"] = 20.0
    frame.loc[30, "load_factor"] = 0.95
    found = grid_anomalies.detect_grid_anomalies(frame).set_index("anomaly_type")
    assert found.loc["frequency_out_of_range", "reading_ts"] == frame.loc[10, "reading_ts"]
    assert found.loc["low_stability", "severity"] == "critical"
    assert found.loc["capacity_shortfall", "operator_name"] == frame.loc[30, "operator_name"]
    assert len(found) == 3
