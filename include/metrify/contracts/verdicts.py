"""The quality gate's verdicts: one row per judged interval, loaded into the warehouse so BI and
on-call see which intervals are blocked (never in the facts), passed, or released by an operator."""

from __future__ import annotations

import pyarrow as pa

STATUSES = ("passed", "blocked", "released")
VERDICT_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("interval_date", pa.date32()),
        ("interval_hour", pa.int32()),  # null for daily datasets
        ("status", pa.string()),
        ("judged_rows", pa.int64()),
        ("validated_rows", pa.int64()),
        ("quarantined_rows", pa.int64()),
        ("quality_score", pa.float64()),
        ("failed_expectations", pa.string()),  # critical ones, "expectation(column)" joined by "; "
        ("judged_at", pa.timestamp("us", tz="UTC")),
        ("released_by", pa.string()),
        ("release_reason", pa.string()),
    ]
)
