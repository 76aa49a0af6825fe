"""When a publisher's interval is due, and how a run names what is still missing.

Each source publishes an interval some time after the interval ends: its publication delay, a
named constant in its adapter (`entsoe.PUBLICATION_DELAY`, `brightsky.PUBLICATION_DELAY`,
`openweathermap.PUBLICATION_DELAY`). An interval missing while still inside that delay is
*pending*: the run skips it, and a later run's trailing re-poll lands it. An interval still
missing after the delay is *overdue*: the task fails, so that Airflow retries and on-call sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

#: RUNBOOK.md section for overdue data (the alert links it, the failure message names it).
RUNBOOK_SECTION = "RUNBOOK.md, 'Source data missing'"
MAX_SPANS = 10


def is_due(start: datetime, step: timedelta, delay: timedelta, now: datetime) -> bool:
    """Whether the interval [start, start + step) should be published by `now`."""
    return start + step + delay <= now


def split_due(
    starts: Sequence[datetime], step: timedelta, delay: timedelta, now: datetime
) -> tuple[list[datetime], list[datetime]]:
    """(overdue, pending) among the interval starts, in their order."""
    overdue = [s for s in starts if is_due(s, step, delay, now)]
    return overdue, [s for s in starts if not is_due(s, step, delay, now)]


def hours_text(delay: timedelta) -> str:
    return f"{delay / timedelta(hours=1):g} h"


def count(n: int, noun: str) -> str:
    """'1 quarter-hour', '4 quarter-hours'."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def spans(starts: Sequence[datetime], step: timedelta) -> str:
    """Consecutive intervals as UTC ranges: '2026-11-22 09:00–10:00 UTC, 2026-11-22 11:00–11:15 UTC'."""
    runs: list[tuple[datetime, datetime]] = []
    for start in sorted(starts):
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], start + step)
        else:
            runs.append((start, start + step))
    texts = []
    for first, last in runs[:MAX_SPANS]:
        a, b = first.astimezone(UTC), last.astimezone(UTC)
        end = f"{b:%H:%M}" if b.date() == a.date() else f"{b:%Y-%m-%d %H:%M}"
        texts.append(f"{a:%Y-%m-%d %H:%M}–{end} UTC")
    if len(runs) > MAX_SPANS:
        texts.append(f"and {len(runs) - MAX_SPANS} more ranges")
    return ", ".join(texts)
