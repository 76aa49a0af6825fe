"""The checks of the production-shaped run (`metrify_dev.production`) that need no services:
which business day the scheduled daily run rebuilds, and how a rebuilt fact is compared."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from metrify_dev.production import FLOAT_RELATIVE_TOLERANCE, compare_facts, latest_rebuilt_business_day

COLUMNS = ["meter_id", "hour_start", "reading_count", "consumption_kwh"]
ROW = ("m-1", datetime(2026, 11, 25, 10, tzinfo=UTC), 4, 0.1 + 0.2 + 0.3)


@pytest.mark.parametrize(
    ("now", "day"),
    [
        ("2026-11-26T20:37:00+00:00", date(2026, 11, 25)),  # after today's 02:30 (CET): yesterday
        ("2026-11-26T01:29:00+00:00", date(2026, 11, 24)),  # 02:29 CET: today's run is not due yet
        ("2026-11-26T01:30:00+00:00", date(2026, 11, 25)),  # 02:30 CET, due now
        ("2026-07-01T00:29:00+00:00", date(2026, 6, 29)),  # 02:29 CEST
        ("2026-07-01T00:30:00+00:00", date(2026, 6, 30)),
    ],
)
def test_the_latest_due_daily_run_rebuilds_the_business_day_before_it(now: str, day: date) -> None:
    assert latest_rebuilt_business_day(datetime.fromisoformat(now)) == day


def test_a_float_summed_in_another_order_is_the_same_fact_and_is_reported() -> None:
    reordered = (*ROW[:3], 0.3 + 0.2 + 0.1)
    assert reordered[3] != ROW[3]  # the last bit differs
    result = compare_facts(COLUMNS, [ROW], [reordered])
    assert result["facts_identical"], result
    assert result["exact_differences"]["consumption_kwh"]["rows"] == 1
    assert 0 < result["exact_differences"]["consumption_kwh"]["max_rel"] < FLOAT_RELATIVE_TOLERANCE


@pytest.mark.parametrize(
    "changed",
    [
        (*ROW[:3], ROW[3] + 0.001),  # a real change of a reading
        (*ROW[:2], 3, ROW[3]),  # an integer column
        ("m-2", *ROW[1:]),  # another meter
    ],
)
def test_any_other_difference_is_a_different_fact(changed: tuple) -> None:
    result = compare_facts(COLUMNS, [ROW], [changed])
    assert not result["facts_identical"], result
    assert result["first_difference"]["after"] == changed


def test_a_row_more_or_less_is_a_different_fact() -> None:
    assert not compare_facts(COLUMNS, [ROW], [ROW, ROW])["facts_identical"]
    assert compare_facts(COLUMNS, [ROW], [ROW]) == {"facts_identical": True, "rows": 1, "exact_differences": {}}
