"""Quality scores and tiers (seed "Data Quality Flow").

Completeness, accuracy, consistency and timeliness, each a share in [0, 1], weighted
0.3/0.3/0.2/0.2 into a score 0-100 and a tier: gold (>= 98) and silver (>= 90) are accepted,
bronze (>= 75) is flagged for review, below that rejected.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from metrify.contracts.calendar import quarter_hours_in_day
from metrify.quality.rules import INTERVAL, WARN_FREQUENCY, WARN_LATE, WARN_VOLTAGE

SCORE_DATASET = "meter_day_scores"
# The quality tasks' meter-day is the UTC day of the interval start, like the lake's `date=`
# partitions they read and write: always 96 quarter-hours. The warehouse's tiers
# (`meter_quality_tiers`) judge Europe/Berlin business days of 92, 96 or 100.
METER_DAY_TIMEZONE = "UTC"
WEIGHTS = {"completeness": 0.3, "accuracy": 0.3, "consistency": 0.2, "timeliness": 0.2}
TIERS = ((98.0, "gold", "accept"), (90.0, "silver", "accept"), (75.0, "bronze", "review"), (-1.0, "reject", "reject"))
CONSISTENCY_TYPES = ("stuck_meter", "spike", "duplicate_conflict")
SCORE_SCHEMA = pa.schema(
    [
        ("meter_id", pa.string()),
        ("day", pa.string()),
        ("readings", pa.int64()),
        ("expected_readings", pa.int64()),
        ("completeness", pa.float64()),
        ("accuracy", pa.float64()),
        ("consistency", pa.float64()),
        ("timeliness", pa.float64()),
        ("quality_score", pa.float64()),
        ("quality_tier", pa.string()),
        ("quality_action", pa.string()),
    ]
)


def tier_of(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tier = np.full(score.shape, "reject", dtype=object)
    action = np.full(score.shape, "reject", dtype=object)
    for threshold, name, act in reversed(TIERS):
        hit = score >= threshold
        tier[hit], action[hit] = name, act
    return tier, action


def day_of_interval(reading_ts: pd.Series, timezone: str) -> pd.Series:
    """The day (YYYY-MM-DD, on the clocks of `timezone`) each reading's interval starts in."""
    return (reading_ts - INTERVAL).dt.tz_convert(timezone).dt.strftime("%Y-%m-%d")


def expected_readings(days: pd.Series, timezone: str) -> pd.Series:
    """Readings due per meter on each day: its quarter-hours in the calendar of `timezone`."""
    lengths = {d: quarter_hours_in_day(date.fromisoformat(d), timezone) for d in days.unique()}
    return days.map(lengths).astype("int64")


def meter_day_scores(checked: pd.DataFrame, findings: pd.DataFrame, timezone: str = METER_DAY_TIMEZONE) -> pd.DataFrame:
    """Quality score per meter and day (the day of the interval start, reading_ts - 15 min, on
    the clocks of `timezone`). Completeness is distinct readings over the day's quarter-hours
    in the calendar (96 for a UTC day; 92 / 96 / 100 for a Europe/Berlin day), whatever hours
    the meter reported in."""
    day = day_of_interval(checked["reading_ts"], timezone)
    frame = pd.DataFrame(
        {
            "meter_id": checked["meter_id"],
            "day": day,
            "reading": ~checked["repeat"],
            "accurate": checked["reason"].isna() & (checked["warning_flags"] & (WARN_VOLTAGE | WARN_FREQUENCY)).eq(0),
            "timely": (checked["warning_flags"] & WARN_LATE).eq(0),
            "rows": 1,
        }
    )
    grouped = frame.groupby(["meter_id", "day"], sort=True).agg(
        readings=("reading", "sum"), accurate=("accurate", "sum"), timely=("timely", "sum"), rows=("rows", "sum")
    )
    inconsistent = findings[findings["anomaly_type"].isin(CONSISTENCY_TYPES)]
    if len(inconsistent):
        bad = inconsistent.assign(day=day_of_interval(inconsistent["reading_ts"], timezone))
        bad = bad.drop_duplicates(["meter_id", "reading_ts"]).groupby(["meter_id", "day"]).size()
        grouped["inconsistent"] = bad.reindex(grouped.index, fill_value=0)
    else:
        grouped["inconsistent"] = 0
    out = grouped.reset_index()
    out["expected_readings"] = expected_readings(out["day"], timezone)
    out["completeness"] = np.minimum(out["readings"] / out["expected_readings"], 1.0)
    out["accuracy"] = out["accurate"] / out["rows"]
    out["consistency"] = 1 - np.minimum(out["inconsistent"] / np.maximum(out["readings"], 1), 1.0)
    out["timeliness"] = out["timely"] / out["rows"]
    out["quality_score"] = np.round(100 * sum(w * out[k] for k, w in WEIGHTS.items()), 2)
    out["quality_tier"], out["quality_action"] = tier_of(out["quality_score"].to_numpy())
    return out[
        [
            "meter_id",
            "day",
            "readings",
            "expected_readings",
            "completeness",
            "accuracy",
            "consistency",
            "timeliness",
            "quality_score",
            "quality_tier",
            "quality_action",
        ]
    ]


def batch_score(
    checked: pd.DataFrame, findings: pd.DataFrame | None = None, expected_readings: int | None = None
) -> dict[str, Any]:
    """One quality score for a batch (an interval or a day)."""
    rows = len(checked)
    if rows == 0:
        return {"rows": 0, "quality_score": 0.0, "quality_tier": "reject", "quality_action": "reject"}
    distinct = int((~checked["repeat"]).sum())
    if expected_readings is None:
        meters = checked["meter_id"].nunique()
        slots = checked["reading_ts"].nunique()
        expected_readings = meters * slots
    flags = checked["warning_flags"]
    parts = {
        "completeness": min(distinct / max(expected_readings, 1), 1.0),
        "accuracy": float((checked["reason"].isna() & (flags & (WARN_VOLTAGE | WARN_FREQUENCY)).eq(0)).mean()),
        "consistency": 1.0 - float(checked["duplicate"].notna().mean()),
        "timeliness": float((flags & WARN_LATE).eq(0).mean()),
    }
    if findings is not None and len(findings):
        inconsistent = findings[findings["anomaly_type"].isin(CONSISTENCY_TYPES)].drop_duplicates(
            ["meter_id", "reading_ts"]
        )
        parts["consistency"] = max(0.0, parts["consistency"] - len(inconsistent) / rows)
    score = round(100 * sum(WEIGHTS[k] * v for k, v in parts.items()), 2)
    tier, action = tier_of(np.array([score]))
    return {
        "rows": rows,
        "expected_readings": int(expected_readings),
        **{k: round(v, 6) for k, v in parts.items()},
        "quality_score": score,
        "quality_tier": str(tier[0]),
        "quality_action": str(action[0]),
    }
