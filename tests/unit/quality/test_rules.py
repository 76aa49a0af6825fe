"""Row rules, quality scores and interval selection of the quality gate (no Great Expectations)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from metrify import lake
from metrify.contracts import readings
from metrify.quality import anomalies, expectations, gate, rules, scores
from metrify.quality import tasks as quality_tasks

START = pd.Timestamp("2026-11-16T05:00:00Z")
END = START + pd.Timedelta(hours=1)


def batch(meters: int = 3, slots: int = 4, start: pd.Timestamp = START) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for m in range(meters):
        for s in range(slots):
            ts = start + pd.Timedelta(minutes=15 * s)
            rows.append(
                {
                    "meter_id": f"DE{m}",
                    "reading_ts": ts,
                    "consumption_kwh": round(rng.uniform(0.05, 0.3), 4),
                    "export_kwh": 0.0,
                    "voltage": 231.0,
                    "current": 1.0,
                    "power_factor": 0.97,
                    "frequency": 50.01,
                    "temperature": 5.0,
                    "humidity": 80.0,
                    "topic": "t",
                    "partition": 0,
                    "offset": len(rows),
                    "kafka_ts": ts,
                    "ingested_at": ts + pd.Timedelta(minutes=5),
                }
            )
    return pd.DataFrame(rows)


def test_clean_batch_has_no_reason_and_no_warning() -> None:
    checked = rules.evaluate_rows(batch(), START, END)
    assert checked["reason"].isna().all()
    assert (checked["warning_flags"] == 0).all()
    assert not checked["repeat"].any()


def test_each_bad_row_gets_its_reason_and_the_rest_stays_usable() -> None:
    frame = batch()
    frame.loc[0, "consumption_kwh"] = -0.2
    frame.loc[1, "voltage"] = 120.0
    frame.loc[2, "frequency"] = 46.0
    frame.loc[3, "reading_ts"] = END  # belongs to the next hour
    conflict = frame.iloc[[5]].assign(consumption_kwh=9.9, offset=100)
    exact = frame.iloc[[6]].assign(offset=101)
    frame = pd.concat([frame, conflict, exact], ignore_index=True)
    checked = rules.evaluate_rows(frame, START, END)
    reasons = checked["reason"]
    assert "negative consumption" in reasons[0]
    assert "voltage=120 V outside the physical bounds" in reasons[1]
    assert "frequency=46 Hz" in reasons[2]
    assert "outside the gate interval" in reasons[3]
    # the later copy in Kafka order is the reading of record: a correction replaces the original
    assert "superseded by a later correction: 2 copies" in reasons[5] and "offset 100" in reasons[5]
    assert pd.isna(reasons[12]) and checked.loc[12, "conflict"] and checked.loc[5, "conflict"]
    assert (
        "exact duplicate: same meter_id, reading_ts and values as the reading of record, partition 0 offset 101"
        in reasons[6]
    )
    assert pd.isna(reasons[13])
    assert int(reasons.notna().sum()) == 6


def _copy(frame: pd.DataFrame, row: int, **changes: object) -> pd.DataFrame:
    return frame.iloc[[row]].assign(**changes)


def test_a_correction_wins_over_a_later_replay_of_the_original() -> None:
    """Kafka order decides, not ingestion time: the original (offset 10) is replayed by the
    producer (offset 15), the correction follows (offset 20); the replay is ingested last."""
    base = batch(meters=1, slots=4)
    original = _copy(base, 1, offset=10, ingested_at=START + pd.Timedelta(hours=1))
    replay = _copy(base, 1, offset=15, ingested_at=START + pd.Timedelta(hours=9))
    correction = _copy(base, 1, offset=20, consumption_kwh=0.777, ingested_at=START + pd.Timedelta(hours=2))
    frame = pd.concat([base.drop(index=1), original, replay, correction], ignore_index=True)
    checked = rules.evaluate_rows(frame, START, END)
    usable = checked[checked["reason"].isna()]
    kept = usable[usable["reading_ts"] == base.loc[1, "reading_ts"]]
    assert list(kept["consumption_kwh"]) == [0.777] and list(kept["offset"]) == [20]
    superseded = checked[checked["offset"].isin([10, 15])]
    assert superseded["reason"].str.startswith("superseded by a later correction").all()
    assert (superseded["reason"].str.contains("offset 20")).all()


def test_across_partitions_the_producer_timestamp_orders_the_copies() -> None:
    base = batch(meters=1, slots=1)
    earlier = base.assign(partition=3, offset=900, kafka_ts=START + pd.Timedelta(minutes=20))
    later = base.assign(partition=1, offset=5, consumption_kwh=0.5, kafka_ts=START + pd.Timedelta(minutes=40))
    checked = rules.evaluate_rows(pd.concat([earlier, later], ignore_index=True), START, END)
    assert list(checked["reason"].isna()) == [False, True]  # partition 1, offset 5 was produced later


def test_warnings_are_flags_not_quarantine() -> None:
    frame = batch()
    frame.loc[0, "voltage"] = 200.0  # outside EN 50160 +-10 %, inside the physical bounds
    frame.loc[1, "frequency"] = 50.3
    frame.loc[2, "ingested_at"] = frame.loc[2, "kafka_ts"] + pd.Timedelta(hours=3)
    checked = rules.evaluate_rows(frame, START, END)
    assert checked["reason"].isna().all()
    assert list(checked["warning_flags"][:3]) == [rules.WARN_VOLTAGE, rules.WARN_FREQUENCY, rules.WARN_LATE]


def test_meter_day_scores_and_tiers() -> None:
    day = pd.Timestamp("2026-11-16T00:15:00Z")
    full = batch(meters=2, slots=96, start=day)
    half = full[~((full["meter_id"] == "DE1") & (full.index % 2 == 0))]
    checked = rules.evaluate_rows(half, day, day + pd.Timedelta(days=1))
    by_meter = scores.meter_day_scores(checked, anomalies.empty_findings()).set_index("meter_id")
    assert by_meter.loc["DE0", "quality_score"] == 100.0 and by_meter.loc["DE0", "quality_tier"] == "gold"
    assert by_meter.loc["DE1", "completeness"] == 0.5
    assert by_meter.loc["DE1", "quality_score"] == 85.0 and by_meter.loc["DE1", "quality_action"] == "review"
    assert set(by_meter["day"]) == {"2026-11-16"}  # 00:15 .. 24:00 belong to the 16th


def _meter_day(day: str, hours: int, timezone: str = "UTC") -> pd.DataFrame:
    """One meter's readings for the first `hours` hours of `day` on the clocks of `timezone`."""
    start = pd.Timestamp(day, tz=timezone).tz_convert("UTC") + pd.Timedelta(minutes=15)
    return batch(meters=1, slots=4 * hours, start=start)


@pytest.mark.parametrize("day", ["2026-03-29", "2026-10-25", "2026-11-16"])
def test_meter_day_expected_readings_come_from_the_calendar_of_utc_days(day: str) -> None:
    """The quality tasks' meter-day is the UTC day: 96 quarter-hours, DST change days included.
    A meter that reported 48 readings (12 hours) is 50 % complete, not judged on its own hours."""
    frame = _meter_day(day, hours=12)
    start = pd.Timestamp(day, tz="UTC")
    checked = rules.evaluate_rows(frame, start + rules.INTERVAL, start + pd.Timedelta(days=1) + rules.INTERVAL)
    row = scores.meter_day_scores(checked, anomalies.empty_findings()).iloc[0]
    assert (row["day"], row["readings"], row["expected_readings"]) == (day, 48, 96)
    assert row["completeness"] == 0.5


@pytest.mark.parametrize(("day", "expected"), [("2026-03-29", 92), ("2026-10-25", 100), ("2026-11-16", 96)])
def test_meter_day_scores_on_business_days_follow_the_clock_changes(day: str, expected: int) -> None:
    """The same scores on Europe/Berlin days (what the warehouse's tiers use): a complete day
    is complete on the short and the long day, half a day is half."""
    full = _meter_day(day, hours=expected // 4, timezone="Europe/Berlin")
    start = pd.Timestamp(day, tz="Europe/Berlin").tz_convert("UTC")
    end = pd.Timestamp(day, tz="Europe/Berlin") + pd.Timedelta(days=1)
    checked = rules.evaluate_rows(full, start + rules.INTERVAL, end.tz_convert("UTC") + rules.INTERVAL)
    row = scores.meter_day_scores(checked, anomalies.empty_findings(), timezone="Europe/Berlin").iloc[0]
    assert (row["day"], row["readings"], row["expected_readings"]) == (day, expected, expected)
    assert row["completeness"] == 1.0 and row["quality_tier"] == "gold"
    half = rules.evaluate_rows(full.iloc[: expected // 2], start + rules.INTERVAL, end.tz_convert("UTC"))
    row = scores.meter_day_scores(half, anomalies.empty_findings(), timezone="Europe/Berlin").iloc[0]
    assert row["completeness"] == 0.5


def test_batch_score_counts_inconsistency() -> None:
    frame = batch(meters=10)
    checked = rules.evaluate_rows(frame, START, END)
    assert scores.batch_score(checked)["quality_score"] == 100.0
    stuck = frame.iloc[:20][["meter_id", "reading_ts"]].assign(anomaly_type="stuck_meter")
    result = scores.batch_score(checked, stuck)
    assert result["consistency"] == 0.5 and result["quality_tier"] == "silver"


def _write_raw(root, frame: pd.DataFrame, date: str, hour: int, name: str = "t+0+000-001") -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False).cast(readings.RAW_SCHEMA)
    lake.write_parquet(table, gate.raw_partition(root, date, hour) / f"{name}.parquet")


def test_interval_selection(metrify_home) -> None:
    root = lake.lake_root()
    _write_raw(root, batch(), "2026-11-16", 5)
    _write_raw(root, batch(start=START + pd.Timedelta(hours=1)), "2026-11-16", 6)
    assert gate.pending_intervals() == [{"date": "2026-11-16", "hour": 5}, {"date": "2026-11-16", "hour": 6}]
    files = lake.list_files(gate.raw_partition(root, "2026-11-16", 5))
    lake.write_json({"raw_fingerprint": lake.fingerprint(root, files)}, gate.marker_path(root, "2026-11-16", 5))
    assert gate.pending_intervals() == [{"date": "2026-11-16", "hour": 6}]
    _write_raw(root, batch(), "2026-11-16", 5, name="t+0+002-003")  # new data for hour 5
    assert quality_tasks.intervals_from_request({}) == [
        {"date": "2026-11-16", "hour": 5},
        {"date": "2026-11-16", "hour": 6},
    ]
    assert quality_tasks.intervals_from_request({"intervals": [{"date": "2026-11-16", "hour": 6}]}) == [
        {"date": "2026-11-16", "hour": 6}
    ]
    assert quality_tasks.intervals_from_request({"date": "2026-11-16"}) == [
        {"date": "2026-11-16", "hour": 5},
        {"date": "2026-11-16", "hour": 6},
    ]
    with pytest.raises(ValueError, match=r"intervals\[0\].hour must be an hour 0..23; got 24"):
        quality_tasks.intervals_from_request({"intervals": [{"date": "2026-11-16", "hour": 24}]})


def test_run_anomalies_writes_findings_and_scores(metrify_home) -> None:
    root = lake.lake_root()
    day = pd.Timestamp("2026-11-16T00:15:00Z")  # meter-day 16th: 00:15 .. 24:00
    frame = batch(meters=3, slots=96, start=day)
    frame.loc[10, "consumption_kwh"] = -1.0
    for date, part in frame.groupby(frame["reading_ts"].dt.strftime("%Y-%m-%d")):
        for hour, rows in part.groupby(part["reading_ts"].dt.hour):
            _write_raw(root, rows, date, int(hour))
    assert quality_tasks.days_for_intervals([{"date": "2026-11-17", "hour": 0}]) == ["2026-11-16", "2026-11-17"]
    summary = quality_tasks.run_anomalies("2026-11-16")
    assert summary["findings"] == {"negative_consumption": 1}
    found = lake.read_table(root / "anomalies" / "meter_readings" / "date=2026-11-16").to_pandas()
    assert found["reading_ts"].iloc[0] == frame.loc[10, "reading_ts"]
    day_scores = lake.read_table(root / "quality" / scores.SCORE_DATASET).to_pandas()
    assert list(day_scores["readings"]) == [96, 96, 96] and set(day_scores["day"]) == {"2026-11-16"}
    assert summary["batch_score"]["completeness"] == 1.0


def test_run_summary_adds_up_gates_and_findings() -> None:
    gates = [
        {"validated": 10, "quarantined": 1, "quality_score": 99.0},
        {"validated": 5, "quarantined": 0, "quality_score": 97.5},
    ]
    days = [{"date": "2026-11-16", "findings": {"gap": 3, "spike": 1}}, {"date": "2026-11-17", "findings": {"gap": 2}}]
    result = quality_tasks.run_summary(gates, days)
    assert result["validated_rows"] == 15 and result["quarantined_rows"] == 1
    assert result["lowest_quality_score"] == 97.5 and result["anomalies"] == {"gap": 5, "spike": 1}


def test_completeness_judges_the_slots_due_not_the_whole_hour() -> None:
    frame = batch(meters=4, slots=2)  # a drain has delivered 05:00 and 05:15 so far
    checked = rules.evaluate_rows(frame, START, END)
    assert expectations.expected_slots(checked, START, END) == 2
    counts = expectations.completeness_frame(checked, START, END)
    assert (counts["completeness"] == 1.0).all()
    gap = rules.evaluate_rows(frame.drop(index=[0]), START, END)  # DE0 lacks 05:00
    counts = expectations.completeness_frame(gap, START, END).set_index("meter_id")
    assert counts.loc["DE0", "completeness"] == 0.5 and counts.loc["DE1", "completeness"] == 1.0


def test_automatic_regating_looks_back_a_bounded_number_of_days(metrify_home) -> None:
    root = lake.lake_root()
    for day in ("2026-11-14", "2026-11-15", "2026-11-16"):
        start = pd.Timestamp(f"{day}T05:00:00Z")
        _write_raw(root, batch(start=start), day, 5)
    assert [i["date"] for i in gate.pending_intervals(lookback_days=1)] == ["2026-11-15", "2026-11-16"]
    assert quality_tasks.intervals_from_request({"date": "2026-11-14"}) == [{"date": "2026-11-14", "hour": 5}]


def test_automatic_regating_covers_every_day_the_drain_still_accepts(metrify_home, monkeypatch) -> None:
    """A reading the drain accepted late (up to METRIFY_LATE_LOOKBACK_DAYS old) is gated without
    anyone asking: its day lies inside the gate's automatic window."""
    monkeypatch.setenv("METRIFY_LATE_LOOKBACK_DAYS", "20")
    root = lake.lake_root()
    for day in ("2026-10-26", "2026-10-27", "2026-11-16"):  # 21, 20 and 0 days before the newest
        _write_raw(root, batch(start=pd.Timestamp(f"{day}T05:00:00Z")), day, 5)
    assert [i["date"] for i in gate.pending_intervals()] == ["2026-10-26", "2026-10-27", "2026-11-16"]
    monkeypatch.setenv("METRIFY_LATE_LOOKBACK_DAYS", "19")
    assert [i["date"] for i in gate.pending_intervals()] == ["2026-10-27", "2026-11-16"]
