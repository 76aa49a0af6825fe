"""Meters the registry does not know (yet): counted after every build and alerted once per meter.

A new installation often reads before the metering operations system has registered it. dbt
keeps its readings: `dim_meters` lists every meter seen in the readings that the registry lacks
as status `unregistered` (attributes null, `first_seen_at` its first reading), so the facts'
relationships hold and the warehouse run succeeds; the meter gets its registry attributes on the
first build after the registry caught up. This module is the run's side of it: the `report` task
counts those meters and their readings and alerts on-call once per meter.

Which meters were already alerted lives in the warehouse, beside `dim_meters`, in the table
`raw._unregistered_meter_alerts` (meter, first seen, alerted at): not a dbt model, so a full
refresh keeps it. A meter is recorded after its alert was handed to the channels, so a crash in
between alerts it again on the next run rather than never.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from metrify.oncall.alerts import build_alert, runbook_link, send

log = logging.getLogger(__name__)

UNREGISTERED = "unregistered"
ALERT_TABLE = "raw._unregistered_meter_alerts"
ALERT_KIND = "meters not in the registry"
NAMED_IN_ALERT = 20  # an alert names at most this many meters, then says how many more


@dataclass
class UnregisteredReport:
    """What the warehouse holds of meters the registry does not know, after one build."""

    meters: int = 0
    readings: int = 0
    newly_alerted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"meters": self.meters, "readings": self.readings, "newly_alerted": list(self.newly_alerted)}


def alert_table_sql() -> str:
    """The state table of alerted meters (same SQL on DuckDB and Snowflake)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {ALERT_TABLE} "
        "(meter_id VARCHAR(64), first_seen_at TIMESTAMP, alerted_at TIMESTAMP)"
    )


def unregistered_meters(cursor: Any) -> list[tuple[str, datetime | None, bool]]:
    """(meter_id, first_seen_at, already alerted) of every `unregistered` member of dim_meters."""
    cursor.execute(alert_table_sql())
    return [
        (str(meter), first_seen, bool(alerted))
        for meter, first_seen, alerted in cursor.execute(
            "SELECT d.meter_id, d.first_seen_at, a.meter_id IS NOT NULL "
            f"FROM marts.dim_meters AS d LEFT JOIN {ALERT_TABLE} AS a ON d.meter_id = a.meter_id "
            f"WHERE d.status = '{UNREGISTERED}' ORDER BY d.meter_id"
        ).fetchall()
    ]


def readings_of_unregistered(cursor: Any, since: datetime) -> int:
    """Readings in the hourly fact of the unregistered meters, from the hour `since` falls in
    (their earliest first reading: the fact is scanned from there, not over its whole history)."""
    start = (since - timedelta(minutes=15)).replace(minute=0, second=0, microsecond=0)
    row = cursor.execute(
        "SELECT coalesce(sum(f.reading_count), 0) FROM marts.fct_meter_readings_hourly AS f "
        f"WHERE f.hour_start >= CAST('{start:%Y-%m-%d %H:%M:%S}' AS TIMESTAMP) AND f.meter_id IN "
        f"(SELECT d.meter_id FROM marts.dim_meters AS d WHERE d.status = '{UNREGISTERED}')"
    ).fetchone()
    return int(row[0] or 0)


def unregistered_alert(meters: list[tuple[str, datetime | None]], context: dict[str, Any] | None) -> dict[str, Any]:
    """One alert naming the meters seen for the first time without a registry entry."""
    alert = build_alert(ALERT_KIND, dict(context or {}))
    named = ", ".join(f"{m} (first reading {seen:%Y-%m-%d %H:%M} UTC)" for m, seen in meters[:NAMED_IN_ALERT] if seen)
    more = f" and {len(meters) - NAMED_IN_ALERT} more" if len(meters) > NAMED_IN_ALERT else ""
    alert["error"] = (
        f"{len(meters)} meter(s) not in the registry: {named}{more}. Their readings are kept in the "
        "warehouse (dim_meters status 'unregistered', no region yet); register them in the metering "
        "operations system. Alerted once per meter."
    )
    alert["runbook"] = runbook_link(ALERT_KIND)
    return alert


def counted(cursor: Any, found: list[tuple[str, datetime | None, bool]]) -> UnregisteredReport:
    """The report for the unregistered meters `found`: how many, and their readings."""
    seen = [s for _, s, _ in found if s is not None]
    return UnregisteredReport(meters=len(found), readings=readings_of_unregistered(cursor, min(seen)) if seen else 0)


def count_unregistered(cursor: Any) -> UnregisteredReport:
    """The unregistered meters and their readings, without alerting (e.g. for a printout)."""
    return counted(cursor, unregistered_meters(cursor))


def note_unregistered(cursor: Any, placeholder: str, context: dict[str, Any] | None = None) -> UnregisteredReport:
    """Count the unregistered meters and their readings; alert the ones never alerted before and
    remember them (`placeholder`: the driver's bind marker, `?` for DuckDB, `%s` for Snowflake).
    Never fails the run over an unknown meter."""
    found = unregistered_meters(cursor)
    report = counted(cursor, found)
    new = [(m, s) for m, s, alerted in found if not alerted]
    if new:
        alert = unregistered_alert(new, context)
        send(alert)  # redacted there: the channels see each meter as its pseudonym
        now = datetime.now(UTC).replace(tzinfo=None)
        cursor.executemany(
            f"INSERT INTO {ALERT_TABLE} VALUES ({placeholder}, {placeholder}, {placeholder})",
            [(m, s, now) for m, s in new],
        )
        report.newly_alerted = [m for m, _ in new]
    log.info(
        "%d meter(s) not in the registry, %d reading(s) kept; newly alerted: %s",
        report.meters,
        report.readings,
        ", ".join(report.newly_alerted) or "none",
    )
    return report
