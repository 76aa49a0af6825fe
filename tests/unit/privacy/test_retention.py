"""Retention: partitions of different ages in several layers; only the expired ones go."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from metrify import lake
from metrify.config import load_settings
from metrify.privacy.retention import apply_retention

TODAY = date(2026, 11, 26)


def day(age: int) -> str:
    return (TODAY - timedelta(days=age)).isoformat()


@pytest.fixture
def aged_lake(lake_root: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """raw (hourly) and quarantine partitions 0..100 days old, validated and grid files, state."""
    table = pa.table({"meter_id": ["DE1"], "consumption_kwh": [0.1]})
    for age in (0, 10, 36, 37, 38, 100):
        for hour in ("00", "23"):
            lake.write_parquet(
                table, lake.partition_path(lake_root, "raw", "meter_readings", date=day(age), hour=hour) / "a.parquet"
            )
        lake.write_parquet(
            table, lake.partition_path(lake_root, "quarantine", "meter_readings", date=day(age)) / "q.parquet"
        )
        lake.write_parquet(
            table,
            lake.partition_path(lake_root, "validated", "meter_readings", date=day(age), hour="00")
            / "validated.parquet",
        )
        lake.write_parquet(table, lake.partition_path(lake_root, "raw", "grid_status", date=day(age)) / "g.parquet")
        lake.write_parquet(
            table,
            lake.partition_path(lake_root, "substituted", "meter_readings", date=day(age)) / "substitutes.parquet",
        )
    lake.write_json({"status": "passed"}, lake_root / f"_quality/meter_readings/date={day(100)}/hour=00.json")
    monkeypatch.setenv("METRIFY_RETENTION_DAYS_RAW", "37")
    monkeypatch.setenv("METRIFY_RETENTION_DAYS_QUARANTINE", "10")
    monkeypatch.setenv("METRIFY_RETENTION_DAYS_VALIDATED", "0")
    monkeypatch.setenv("METRIFY_RETENTION_DAYS_SUBSTITUTED", "36")
    return Path(str(lake_root.path))


# fmt: skip


def dates(folder: Path) -> list[str]:
    return sorted(p.name.removeprefix("date=") for p in folder.glob("date=*"))


def test_partitions_older_than_each_layers_retention_are_removed(aged_lake: Path, lake_root: Any) -> None:
    report = apply_retention(load_settings(), today=TODAY)

    # raw: 37 days; day 37 is kept (not older than the limit), 38 and 100 go, in every dataset
    assert dates(aged_lake / "raw" / "meter_readings") == sorted([day(0), day(10), day(36), day(37)])
    assert dates(aged_lake / "raw" / "grid_status") == sorted([day(0), day(10), day(36), day(37)])
    # quarantine: 10 days
    assert dates(aged_lake / "quarantine" / "meter_readings") == sorted([day(0), day(10)])
    # validated: 0 = kept forever
    assert len(dates(aged_lake / "validated" / "meter_readings")) == 6
    # substituted: 36 days (its own setting, like any layer)
    assert dates(aged_lake / "substituted" / "meter_readings") == sorted([day(0), day(10), day(36)])
    # state folders are never touched
    assert (aged_lake / "_quality" / "meter_readings" / f"date={day(100)}" / "hour=00.json").exists()

    removed = {p.path: p.files for p in report.removed}
    assert removed == {
        f"raw/meter_readings/date={day(38)}": 2,
        f"raw/meter_readings/date={day(100)}": 2,
        f"raw/grid_status/date={day(38)}": 1,
        f"raw/grid_status/date={day(100)}": 1,
        f"quarantine/meter_readings/date={day(36)}": 1,
        f"quarantine/meter_readings/date={day(37)}": 1,
        f"quarantine/meter_readings/date={day(38)}": 1,
        f"quarantine/meter_readings/date={day(100)}": 1,
        f"substituted/meter_readings/date={day(37)}": 1,
        f"substituted/meter_readings/date={day(38)}": 1,
        f"substituted/meter_readings/date={day(100)}": 1,
    }
    audits = list((aged_lake / "_audit" / "retention").glob("*.json"))
    assert len(audits) == 1 and json.loads(audits[0].read_text())["files_removed"] == 13

    again = apply_retention(load_settings(), today=TODAY)  # idempotent
    assert again.removed == []


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"METRIFY_RETENTION_DAYS_RAW": "30"}, "METRIFY_RETENTION_DAYS_RAW .30. must be 0 .keep forever. or more than"),
        ({"METRIFY_RETENTION_DAYS_QUARANTINE": "-1"}, "METRIFY_RETENTION_DAYS_QUARANTINE must be a whole number"),
        ({"METRIFY_RETENTION_DAYS_ANOMALIES": "a year"}, "METRIFY_RETENTION_DAYS_ANOMALIES must be a whole number"),
    ],
)
def test_a_bad_retention_setting_is_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(environ)


def test_retention_defaults() -> None:
    assert load_settings({}).retention_days == {
        "raw": 90,
        "quarantine": 90,
        "validated": 0,
        "substituted": 0,  # flagged substitute values complete the validated record: kept as long
        "anomalies": 365,
        "quality": 365,
        "forecast": 365,  # aggregates without meter ids, and their plots
    }
    # raw outlives a longer late-data lookback by default; 0 keeps it forever
    assert load_settings({"METRIFY_LATE_LOOKBACK_DAYS": "120"}).retention_days["raw"] == 122
    assert load_settings({"METRIFY_RETENTION_DAYS_RAW": "0"}).retention_days["raw"] == 0
