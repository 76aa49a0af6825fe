"""The energy business calendar's vocabulary: the business time zone and the length of a day.

A business day is a local (Europe/Berlin) day: 96 quarter-hours, 92 on the day the clocks go
forward (last Sunday of March) and 100 on the day they go back (last Sunday of October), known
in advance. A UTC day always has 96. The dbt project computes the same from its var
`business_timezone` (macro `quarter_hours_in_local_day`); tests keep the time zones equal and
the two definitions in agreement. `metrify.warehouse.business_calendar` re-exports these names.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

BUSINESS_TIMEZONE = "Europe/Berlin"
QUARTER_HOUR = timedelta(minutes=15)


def quarter_hours_in_day(day: date, timezone: str) -> int:
    """Quarter-hours from midnight of `day` to the next midnight, on the clocks of `timezone`."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC)
    return (end - start) // QUARTER_HOUR


def quarter_hours_in_local_day(day: date) -> int:
    """Quarter-hours in the business day `day`: 96, or 92 / 100 when the clocks change."""
    return quarter_hours_in_day(day, BUSINESS_TIMEZONE)
