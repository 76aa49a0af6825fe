"""The energy business calendar: local (Europe/Berlin) days and the runs that rebuild them.

A business day is a local day: 92, 96 or 100 quarter-hours (spring-forward, normal,
fall-back; `quarter_hours_in_local_day`, defined once in `metrify.contracts.calendar` so the
quality tasks share it). The lake is partitioned by UTC date, so a business day spans two UTC
dates. The dbt project uses the same time zone (var `business_timezone`) and the same day
lengths (macro `quarter_hours_in_local_day`); tests keep them equal.
"""

from __future__ import annotations

from datetime import date as Date
from typing import Any

from metrify.contracts.calendar import BUSINESS_TIMEZONE, quarter_hours_in_day, quarter_hours_in_local_day

__all__ = [
    "BUSINESS_TIMEZONE",
    "daily_run_days",
    "daily_run_logical_date",
    "quarter_hours_in_day",
    "quarter_hours_in_local_day",
]


def daily_run_days(
    interval_start: Any, interval_end: Any, timezone: str = BUSINESS_TIMEZONE
) -> tuple[list[Date], list[Date]]:
    """(business days, UTC lake dates) a `warehouse_daily` run rebuilds.

    A cron schedule in Airflow 3 is a CronTriggerTimetable: the run's data interval is the
    instant it is due (start == end), so the run due at 02:30 Europe/Berlin on day D rebuilds
    the business day D - 1, now complete. A run with a real interval rebuilds every business
    day that ends inside it. The lake is partitioned by UTC date: a business day's readings
    span two UTC dates (the first hour(s) of the local day and the reading at local midnight).
    """
    import pendulum

    start = pendulum.instance(interval_start).in_timezone(timezone)
    end = pendulum.instance(interval_end).in_timezone(timezone)
    if end.date() > start.date():
        business = [start.date() + pendulum.duration(days=i) for i in range((end.date() - start.date()).days)]
    else:
        business = [start.date() - pendulum.duration(days=1)]
    utc: set[Date] = set()
    for day in business:
        first = pendulum.datetime(day.year, day.month, day.day, tz=timezone).in_timezone("UTC")
        last = first.in_timezone(timezone).add(days=1).in_timezone("UTC")
        utc.update(first.date() + pendulum.duration(days=i) for i in range((last.date() - first.date()).days + 1))
    return [Date(d.year, d.month, d.day) for d in business], sorted(Date(d.year, d.month, d.day) for d in utc)


def daily_run_logical_date(business_day: Date, timezone: str = BUSINESS_TIMEZONE) -> str:
    """The logical date (ISO) of the `warehouse_daily` run that rebuilds `business_day`: 02:30
    local on the next day (03:30 on a spring-forward day, as cron fires then)."""
    import pendulum

    nxt = pendulum.date(business_day.year, business_day.month, business_day.day).add(days=1)
    due = pendulum.datetime(nxt.year, nxt.month, nxt.day, 2, 30, tz=timezone)
    return due.isoformat()
