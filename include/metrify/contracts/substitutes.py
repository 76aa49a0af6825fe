"""The `substituted/meter_readings` contract: substitute values (Ersatzwerte) for a meter's
missing quarter-hours of one business day, each flagged with its method and the reason of the gap.

`warehouse_daily` writes one file per Europe/Berlin business day,
`substituted/meter_readings/date=<business day>/substitutes.parquet` (a rerun or backfill of the
day replaces it; a day without substitutes gets an empty file, so the warehouse's interval is
emptied too). Substitutes never mix with measured readings: the warehouse keeps them in their
own columns (`substituted_kwh`, `substituted_quarter_hours`, `substitution_methods`), and a
measured reading that arrives later for the same quarter-hour wins over its substitute.
"""

from __future__ import annotations

import pyarrow as pa

LAYER = "substituted"
DATASET = "meter_readings"
FILE_NAME = "substitutes.parquet"

#: Why a quarter-hour had no validated reading (the substitute fills it).
GAP_NO_READING = "no_reading"  # nothing arrived (or it is not validated)
GAP_QUARANTINED = "quarantined"  # the gate quarantined the meter's reading (row rules)
GAP_REASONS = (GAP_NO_READING, GAP_QUARANTINED)

#: Why a missing quarter-hour was deliberately left unfilled (counted, never written).
UNFILLED_BLOCKED = "blocked_by_gate"  # the quality gate blocked the hour: it stays a visible block
UNFILLED_NO_FALLBACK = "no_fallback_profile"  # too little own history, and no BDEW profile for the class (WP)
UNFILLED_NO_PROFILE = "no_registry_profile"  # too little own history, and no load profile / yearly_kwh
UNFILLED_REASONS = (UNFILLED_BLOCKED, UNFILLED_NO_FALLBACK, UNFILLED_NO_PROFILE)

SUBSTITUTE_SCHEMA = pa.schema(
    [
        ("meter_id", pa.string()),
        ("business_date", pa.date32()),  # the Europe/Berlin day the quarter-hour belongs to
        ("interval_start", pa.timestamp("us", tz="UTC")),  # quarter-hour start
        ("reading_ts", pa.timestamp("us", tz="UTC")),  # quarter-hour end, as meter readings key it
        ("substitute_kwh", pa.float64()),
        ("method", pa.string()),  # metrify.substitution.method.METHODS
        ("gap_reason", pa.string()),  # GAP_REASONS
        ("computed_at", pa.timestamp("us", tz="UTC")),
    ]
)
KEY = ("meter_id", "reading_ts")
