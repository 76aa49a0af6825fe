"""The logical date of the forecast_load run for a target day (what `metrify run` and backfills pass)."""

from __future__ import annotations

from datetime import date

import pendulum
import pytest

from metrify.forecast.tasks import run_logical_date, target_day


@pytest.mark.parametrize(
    "day", [date(2026, 3, 29), date(2026, 3, 30), date(2026, 10, 25), date(2026, 10, 26), date(2026, 11, 28)]
)
def test_the_run_for_a_day_forecasts_that_day(day: date) -> None:
    due = pendulum.parse(run_logical_date(day))
    assert due.in_timezone("Europe/Berlin").hour == 4 and due.in_timezone("Europe/Berlin").minute == 30
    assert target_day(due, due) == day
