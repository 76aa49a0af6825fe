"""Anomaly detectors: each finds its injected anomaly and stays quiet on clean data."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from metrify import lake
from metrify.quality import anomalies
from metrify_dev.bench.quality import raw_frame, score
from metrify_dev.simulator import ANOMALY_TYPES, SimulationOptions, simulate

START = datetime(2026, 11, 16, tzinfo=UTC)
WINDOW = (pd.Timestamp(START), pd.Timestamp(START) + pd.Timedelta(days=1))


@pytest.fixture(scope="module")
def injected():
    sim = simulate(SimulationOptions(meters=420, start=START, seed=11, anomaly_rate=0.35, duplicate_rate=0.002))
    frame = raw_frame(sim)
    return sim, frame, anomalies.detect_anomalies(frame, *WINDOW)


@pytest.mark.parametrize("kind", ANOMALY_TYPES)
def test_each_detector_finds_its_injected_anomaly(injected, kind: str) -> None:
    sim, frame, findings = injected
    labels = sim.labels
    if kind != "gap":
        # a reading the ingestion contract rejected (a spike on a large meter can exceed its
        # 2000 A bound) is in ingestion's quarantine, not in raw/: here it must show as a gap
        keys = ["meter_id", "reading_ts"]
        arrived = labels[labels["anomaly_type"] != "gap"].merge(
            frame[keys].drop_duplicates(), on=keys, how="left", indicator=True
        )
        lost = arrived[arrived["_merge"] == "left_only"]
        assert len(lost) <= frame.attrs["rejected"]
        gaps = findings[findings["anomaly_type"] == "gap"]
        assert len(lost.merge(gaps, on=keys)) == len(lost)
        labels = arrived[arrived["_merge"] == "both"].drop(columns="_merge")
    labelled = int((labels["anomaly_type"] == kind).sum())
    assert labelled >= 15, f"the simulation should inject several {kind}"
    result = score(findings, labels, sim.registry["meter_id"])["per_type"][kind]
    assert result["recall"] == 1.0, result
    assert result["precision"] >= 0.95, result


def test_findings_follow_the_output_contract(injected) -> None:
    _, _, findings = injected
    assert list(findings.columns) == anomalies.METER_ANOMALY_SCHEMA.names
    assert set(findings["anomaly_type"]) <= set(ANOMALY_TYPES)
    assert set(findings["severity"]) <= {"warning", "critical"}
    assert findings["score"].notna().all() and (findings["score"] > 0).all()
    assert findings["details"].str.startswith("{").all()
    assert not findings.duplicated(["meter_id", "reading_ts", "anomaly_type"]).any()


def test_quiet_on_clean_data_even_with_exact_redeliveries() -> None:
    sim = simulate(SimulationOptions(meters=400, start=START, seed=5, duplicate_rate=0.01))
    frame = raw_frame(sim)
    assert frame.duplicated(["meter_id", "reading_ts"]).sum() > 0, "exact duplicates present"
    findings = anomalies.detect_anomalies(frame, *WINDOW)
    assert findings.empty, findings.head(10).to_string()


def _meter(values: list[float], meter: str = "DE1", **columns: list[float]) -> pd.DataFrame:
    n = len(values)
    ts = pd.date_range(WINDOW[0] + pd.Timedelta(minutes=15), periods=n, freq="15min")
    frame = pd.DataFrame(
        {"meter_id": meter, "reading_ts": ts, "consumption_kwh": values, "voltage": 230.0, "frequency": 50.0}
    )
    for name, column in columns.items():
        frame[name] = column
    return frame


def _wave(n: int = 96, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(np.round(0.1 + 0.05 * np.sin(np.arange(n) / 8) + rng.uniform(0, 0.02, n), 4))


def test_stuck_meter_needs_two_hours_of_the_same_non_zero_value() -> None:
    values = _wave()
    values[10:17] = [0.2] * 7  # 1 h 45 min: not stuck
    values[40:48] = [0.3] * 8  # 2 h: stuck
    values[60:80] = [0.0] * 20  # zero import for hours is legitimate (PV, vacancy)
    found = anomalies.detect_anomalies(_meter(values), *WINDOW)
    stuck = found[found["anomaly_type"] == "stuck_meter"]
    assert len(stuck) == 8
    assert stuck["reading_ts"].min() == WINDOW[0] + pd.Timedelta(minutes=15 * 41)


def test_gap_reports_each_missing_reading_and_nothing_for_absent_meters() -> None:
    frame = pd.concat([_meter(_wave(), "DE1"), _meter(_wave(seed=1), "DE2")], ignore_index=True)
    frame = frame.drop(index=frame.index[(frame["meter_id"] == "DE1")][20:25])
    found = anomalies.detect_anomalies(frame, *WINDOW)
    gaps = found[found["anomaly_type"] == "gap"]
    assert len(gaps) == 5 and set(gaps["meter_id"]) == {"DE1"}
    assert set(found["anomaly_type"]) == {"gap"}


def test_duplicate_conflict_but_not_an_exact_redelivery() -> None:
    frame = _meter(_wave())
    exact = frame.iloc[[5]]
    conflict = frame.iloc[[9]].assign(consumption_kwh=frame.iloc[9]["consumption_kwh"] * 2)
    found = anomalies.detect_anomalies(pd.concat([frame, exact, conflict], ignore_index=True), *WINDOW)
    assert list(found["anomaly_type"]) == ["duplicate_conflict"]
    assert found["reading_ts"].iloc[0] == frame["reading_ts"].iloc[9]
    assert "consumption_kwh" in found["details"].iloc[0]


def test_spike_against_own_neighbourhood_not_daily_profile() -> None:
    noise = np.random.default_rng(3).uniform(0.9, 1.1, 96)
    values = list(np.round(np.array([0.05] * 30 + [0.4] * 30 + [0.05] * 36) * noise, 4))
    values[70] = 1.6  # an evening peak 8x the night is normal, a sudden 30x jump is not
    found = anomalies.detect_anomalies(_meter(values), *WINDOW)
    assert list(found["anomaly_type"]) == ["spike"]
    assert found["reading_ts"].iloc[0] == WINDOW[0] + pd.Timedelta(minutes=15 * 71)


def test_voltage_and_frequency_rules_and_severity() -> None:
    voltage = [230.0] * 96
    voltage[3], voltage[50], voltage[51] = 190.0, 258.0, 206.0
    frequency = [50.0] * 96
    frequency[7], frequency[8] = 50.25, 48.7
    frame = _meter(_wave(), voltage=voltage, frequency=frequency)
    found = anomalies.detect_anomalies(frame, *WINDOW).set_index("anomaly_type")
    volts = found.loc["voltage_out_of_range"]
    assert len(volts) == 3
    assert list(volts["severity"]) == ["critical", "critical", "warning"]
    freq = found.loc["frequency_out_of_range"]
    assert list(freq["severity"]) == ["warning", "critical"]


def test_negative_consumption() -> None:
    values = _wave()
    values[33] = -0.4
    found = anomalies.detect_anomalies(_meter(values), *WINDOW)
    assert list(found["anomaly_type"]) == ["negative_consumption"]
    assert found["score"].iloc[0] == pytest.approx(0.4)


def test_write_anomalies_is_idempotent(metrify_home) -> None:
    root = lake.lake_root()
    values = _wave()
    values[10] = -1.0
    findings = anomalies.detect_anomalies(_meter(values), *WINDOW)
    path = anomalies.write_anomalies(findings, root, "2026-11-16")
    anomalies.write_anomalies(findings, root, "2026-11-16")
    table = lake.read_table(root / "anomalies" / "meter_readings")
    assert table.num_rows == 1 and path.exists()
    assert table.schema.field("reading_ts").type == anomalies.METER_ANOMALY_SCHEMA.field("reading_ts").type
