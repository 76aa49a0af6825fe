"""Settings read from the environment in one place."""

from __future__ import annotations

import pytest

from metrify.config import load_settings


def test_the_late_lookback_defaults_to_35_days_and_can_be_set() -> None:
    assert load_settings({}).late_lookback_days == 35
    assert load_settings({"METRIFY_LATE_LOOKBACK_DAYS": "90"}).late_lookback_days == 90


@pytest.mark.parametrize("value", ["0", "-3", "five"])
def test_a_late_lookback_that_is_not_a_positive_number_of_days_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="METRIFY_LATE_LOOKBACK_DAYS must be a positive whole number of days"):
        load_settings({"METRIFY_LATE_LOOKBACK_DAYS": value})
