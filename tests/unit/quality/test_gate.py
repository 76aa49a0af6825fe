"""The Great Expectations gate: suites catch their bad cases, a failed gate blocks, quarantine keeps all.

`import great_expectations` costs ~18 s, so this module shares one import and keeps GX runs few.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from metrify import lake
from metrify.contracts import readings
from metrify.quality import checkpoint, gate, rules
from metrify.quality import summary as quality_summary
from metrify.quality import tasks as quality_tasks
from metrify.quality.verdicts import read_verdicts
from metrify_dev.bench.quality import raw_frame
from metrify_dev.simulator import SimulationOptions, simulate

DATE, HOUR = "2026-11-16", 5
START, END = gate.interval_bounds(DATE, HOUR)


@pytest.fixture(scope="module")
def hour_frame() -> pd.DataFrame:
    """One hour of 300 simulated meters as ingestion wrote it (with anomalies and redeliveries)."""
    sim = simulate(
        SimulationOptions(
            meters=300, start=datetime(2026, 11, 16, tzinfo=UTC), seed=21, anomaly_rate=0.3, duplicate_rate=0.002
        )
    )
    frame = raw_frame(sim)
    frame = frame[(frame["reading_ts"] >= START) & (frame["reading_ts"] < END)].reset_index(drop=True)
    frame["kafka_ts"] = frame["kafka_ts"].astype("datetime64[ms, UTC]")
    frame.loc[10, "consumption_kwh"] = -0.4  # one impossible import: quarantined, below the gate's threshold
    conflict = frame.iloc[[20]].assign(
        consumption_kwh=frame.loc[20, "consumption_kwh"] * 2, offset=frame["offset"].max() + 1
    )
    return pd.concat([frame, conflict], ignore_index=True)  # and one conflicting redelivery


def _checkpoint(frame: pd.DataFrame) -> checkpoint.CheckpointOutcome:
    checked = rules.evaluate_rows(frame, START, END)
    return checkpoint.run_checkpoint(frame, checked, START, END, build_docs=False)


def _set_share(column: str, value: float, share: float) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def apply(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        rows = np.random.default_rng(0).choice(len(frame), int(len(frame) * share), replace=False)
        frame.loc[rows, column] = value
        return frame

    return apply


BAD_CASES: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str, object]] = {
    "missing column": (lambda f: f.drop(columns="frequency"), "expect_table_columns_to_match_set", "(table)"),
    "wrong type": (
        lambda f: f.assign(voltage=f["voltage"].astype(str)),
        "expect_column_values_to_be_in_type_list",
        "voltage",
    ),
    "null meter_id": (_set_share("meter_id", None, 0.01), "expect_column_values_to_not_be_null", "meter_id"),
    "negative import": (
        _set_share("consumption_kwh", -0.5, 0.01),
        "expect_column_values_to_be_between",
        "consumption_kwh",
    ),
    "voltage broken": (_set_share("voltage", 400.0, 0.01), "expect_column_values_to_be_between", "voltage"),
    "frequency broken": (_set_share("frequency", 45.0, 0.01), "expect_column_values_to_be_between", "frequency"),
    "half missing": (
        lambda f: f[
            (f["reading_ts"] != START + pd.Timedelta(minutes=15))
            & (f["reading_ts"] != START + pd.Timedelta(minutes=30))
        ],
        "expect_column_mean_to_be_between",
        "completeness",
    ),
}


def test_clean_batch_passes_and_each_bad_case_is_caught(hour_frame: pd.DataFrame) -> None:
    clean = _checkpoint(hour_frame)
    assert clean.success, clean.critical
    assert clean.statistics["meter_readings"]["evaluated_expectations"] >= 20
    missed = []
    for name, (spoil, expectation, column) in BAD_CASES.items():
        outcome = _checkpoint(spoil(hour_frame))
        caught = [f for f in outcome.critical if f["expectation"] == expectation and f["column"] == column]
        if outcome.success or not caught:
            missed.append((name, [(f["expectation"], f["column"]) for f in outcome.critical]))
    assert not missed, f"bad cases not caught: {missed}"


def test_warnings_are_recorded_but_do_not_block(hour_frame: pd.DataFrame) -> None:
    frame = _set_share("voltage", 200.0, 0.05)(hour_frame)  # EN 50160 band, inside physical bounds
    frame["kafka_ts"] = frame["kafka_ts"] + pd.Timedelta(days=2)  # the head-end delivered late
    frame["ingested_at"] = frame["kafka_ts"] + pd.Timedelta(hours=2)  # and the drain fell behind
    outcome = _checkpoint(frame)
    assert outcome.success
    warned = {(f["expectation"], f["column"]) for f in outcome.failures if f["severity"] == "warning"}
    assert ("expect_column_values_to_be_between", "voltage") in warned
    assert ("expect_column_values_to_be_between", "ingestion_lag_minutes") in warned
    assert ("expect_column_values_to_be_between", "delivery_lag_minutes") in warned


def _write_raw(root, frame: pd.DataFrame, name: str = "meter-readings+0+0-1") -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False).cast(readings.RAW_SCHEMA)
    lake.write_parquet(table, gate.raw_partition(root, DATE, HOUR) / f"{name}.parquet")


def test_gate_passes_writes_validated_and_quarantines_every_failing_row(
    metrify_home: Path, hour_frame: pd.DataFrame
) -> None:
    root = lake.lake_root()
    _write_raw(root, hour_frame)
    report = gate.run_gate(DATE, HOUR)
    assert report.passed and report.rows == len(hour_frame)
    validated = lake.read_table(root / "validated" / "meter_readings").to_pandas()
    quarantined = lake.read_table(root / "quarantine" / quality_summary.QUARANTINE_DATASET).to_pandas()
    assert len(validated) + len(quarantined) == len(hour_frame), "a row was lost"
    assert quarantined["reason"].notna().all()
    assert (quarantined["consumption_kwh"] < 0).sum() == (hour_frame["consumption_kwh"] < 0).sum() > 0
    assert quarantined["reason"].str.contains("superseded by a later correction").any()
    corrected = validated[
        validated["meter_id"].eq(hour_frame.loc[20, "meter_id"])
        & validated["reading_ts"].eq(hour_frame.loc[20, "reading_ts"])
    ]
    assert list(corrected["consumption_kwh"]) == [hour_frame.loc[20, "consumption_kwh"] * 2]  # the later copy
    assert list(corrected["delivered_copies"]) == [2] and list(corrected["corrected"]) == [True]
    assert (validated["consumption_kwh"] >= 0).all()
    assert not validated.duplicated(["meter_id", "reading_ts"]).any()
    marker = lake.read_json(gate.marker_path(root, DATE, HOUR))
    assert marker["passed"] and marker["status"] == "passed" and marker["validated"] == len(validated)
    assert marker["score"]["quality_tier"] in {"gold", "silver"}
    assert report.docs_index and Path(report.docs_index.removeprefix("file://")).exists()
    assert gate.pending_intervals() == []


def test_failed_gate_blocks_and_explains(metrify_home: Path, hour_frame: pd.DataFrame) -> None:
    root = lake.lake_root()
    bad = _set_share("consumption_kwh", -0.3, 0.02)(hour_frame)
    _write_raw(root, hour_frame)
    gate.run_gate(DATE, HOUR)  # an earlier, good version of the interval passed
    _write_raw(root, bad)  # ... then the interval was re-ingested broken
    with pytest.raises(checkpoint.QualityGateError) as failure:
        gate.run_gate(DATE, HOUR)
    message = str(failure.value)
    assert "expect_column_values_to_be_between on column consumption_kwh" in message
    negatives = int((bad["consumption_kwh"] < 0).sum())
    assert re.search(rf"{negatives} of \d+ rows unexpected", message), message
    assert "sample: {'meter_id': 'DE" in message
    assert "Data Docs (all runs): file://" in message and "index.html" in message
    page = re.search(r"validation result \(meter_readings\): file://(\S+)", message)
    assert page, message
    html = Path(unquote(page.group(1)))
    assert html.exists() and "consumption_kwh" in html.read_text()
    assert (
        not (gate.raw_partition(root, DATE, HOUR).parent.parent.parent / "validated").exists()
        or lake.count_rows(root / "validated" / "meter_readings") == 0
    ), "a blocked interval kept validated rows"
    quarantined = lake.read_table(root / "quarantine" / quality_summary.QUARANTINE_DATASET).to_pandas()
    assert (quarantined["consumption_kwh"] < 0).sum() == (bad["consumption_kwh"] < 0).sum()
    marker = lake.read_json(gate.marker_path(root, DATE, HOUR))
    assert marker["passed"] is False and marker["validated"] == 0
    summary = quality_summary.lake_quality_summary()
    assert summary["intervals_blocked"] == [f"{DATE} hour {HOUR:02d}"] and summary["validated_rows"] == 0
    assert summary["gate_quarantine_reasons"]["negative consumption"] == (bad["consumption_kwh"] < 0).sum()
    assert summary["data_docs"].endswith("index.html")


def test_an_operator_release_publishes_a_blocked_interval_until_its_raw_files_change(
    metrify_home: Path, hour_frame: pd.DataFrame
) -> None:
    root = lake.lake_root()
    bad = _set_share("voltage", 400.0, 0.02)(hour_frame)  # a sensor change that looks like a fault
    _write_raw(root, bad)
    with pytest.raises(checkpoint.QualityGateError):
        gate.run_gate(DATE, HOUR, build_docs=False)
    assert lake.read_json(gate.marker_path(root, DATE, HOUR))["status"] == "blocked"
    with pytest.raises(ValueError, match="reason of at least 10 characters"):
        quality_tasks.record_release("meter_readings", DATE, HOUR, "ok", "oncall")
    with pytest.raises(ValueError, match="judged per hour: give the hour"):
        quality_tasks.record_release("meter_readings", DATE, None, "checked with the DSO: new sensors", "oncall")
    plan = quality_tasks.record_release(
        "meter_readings", DATE, HOUR, "checked with the DSO: the 400 V meters are new sensors", "oncall-anna"
    )
    assert plan == {
        "dag_id": "quality_meter_readings",
        "conf": {"intervals": [{"date": DATE, "hour": HOUR}]},
        "interval": f"{DATE} hour {HOUR:02d}",
        "released_by": "oncall-anna",
    }
    report = gate.run_gate(DATE, HOUR, build_docs=False)  # what the triggered quality run does
    assert report.status == "released" and not report.passed
    assert report.release["released_by"] == "oncall-anna"
    validated = lake.read_table(root / "validated" / "meter_readings").to_pandas()
    # the row-level rules still quarantine the impossible voltages; the rest is published
    assert len(validated) == report.validated > 0 and (validated["voltage"] < 300).all()
    verdicts = read_verdicts(root).to_pylist()
    assert [(v["status"], v["released_by"]) for v in verdicts] == [("released", "oncall-anna")]
    assert "expect_column_values_to_be_between(voltage)" in verdicts[0]["failed_expectations"]
    # new raw data for the hour: the release no longer applies, the interval is judged afresh
    _write_raw(root, bad.assign(offset=bad["offset"] + 10_000), name="meter-readings+0+2-3")
    with pytest.raises(checkpoint.QualityGateError):
        gate.run_gate(DATE, HOUR, build_docs=False)
    assert lake.read_json(gate.marker_path(root, DATE, HOUR))["status"] == "blocked"
    assert lake.count_rows(root / "validated" / "meter_readings") == 0
