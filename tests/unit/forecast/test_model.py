"""The day-ahead load forecast of one series: DST days, holidays, fallback, quantile order, no leakage."""

from __future__ import annotations

import logging
from datetime import date, timedelta

import holidays
import numpy as np
import pandas as pd
import pytest

from metrify.forecast import model
from metrify.forecast.model import fallback_last_week, forecast_day, seasonal_naive, target_index

BERLIN = "Europe/Berlin"


def _load(first: date, last: date, seed: int = 0) -> tuple[pd.Series, pd.Series]:
    """A quarter-hour load with a daily shape, weekends, holidays and a temperature response; hourly temperature."""
    idx = pd.date_range(target_index(first)[0], target_index(last)[-1], freq="15min")
    hours = pd.date_range(idx[0], idx[-1] + pd.Timedelta(days=3), freq="h")
    temp = pd.Series(5 + 6 * np.sin(np.arange(len(hours)) / 24 / 4), index=hours)
    local = idx.tz_convert(BERLIN)
    shape = 100 + 40 * np.sin(2 * np.pi * (local.hour * 4 + local.minute // 15 - 28) / 96)
    weekend = np.where(local.day_of_week >= 5, 0.8, 1.0)
    t = temp.reindex(idx, method="ffill").to_numpy()
    rng = np.random.default_rng(seed)
    load = shape * weekend * (1 + 0.02 * (10 - t)) + rng.normal(0, 2, len(idx))
    return pd.Series(load, index=idx), temp


def test_model_forecasts_every_quarter_hour_in_quantile_order() -> None:
    load, temp = _load(date(2026, 9, 1), date(2026, 11, 20))
    result = forecast_day(load, temp, date(2026, 11, 22))
    assert len(result) == 96
    assert (result["method"] == "model").all()
    assert (result["p10_kwh"] <= result["p50_kwh"]).all() and (result["p50_kwh"] <= result["p90_kwh"]).all()
    assert list(result["interval_start"]) == list(target_index(date(2026, 11, 22)))
    actual = _load(date(2026, 9, 1), date(2026, 11, 22))[0].reindex(result["interval_start"]).to_numpy()
    naive = seasonal_naive(load, date(2026, 11, 22)).to_numpy()
    assert np.abs(result["p50_kwh"].to_numpy() - actual).mean() < np.abs(naive - actual).mean()


@pytest.mark.parametrize(("day", "quarter_hours"), [(date(2026, 3, 29), 92), (date(2026, 10, 25), 100)])
def test_dst_days_have_their_quarter_hours(day: date, quarter_hours: int) -> None:
    load, temp = _load(day - timedelta(days=60), day - timedelta(days=2))
    result = forecast_day(load, temp, day)
    assert len(result) == quarter_hours
    assert result["interval_start"].is_unique and result["p50_kwh"].notna().all()
    assert len(fallback_last_week(load, day)) == quarter_hours


def test_holiday_is_a_feature() -> None:
    load, temp = _load(date(2026, 8, 1), date(2026, 10, 10))
    idx = load.index
    features = model._features(load, temp, idx, 2, model._holidays({2026}))
    unity = features["holiday"][idx.tz_convert(BERLIN).date == date(2026, 10, 3)]
    assert features["holiday"].sum() > 0
    assert (features["holiday"][idx.tz_convert(BERLIN).date == date(2026, 9, 3)] == 0).all()
    assert len(unity) == 96 and (unity == 1).all()
    assert (features["holiday"][idx.tz_convert(BERLIN).date == date(2026, 8, 15)] == 0).all()  # not nationwide


def test_falls_back_without_temperature_for_the_target_day_and_logs_why(caplog: pytest.LogCaptureFixture) -> None:
    load, temp = _load(date(2026, 9, 1), date(2026, 11, 20))
    temp = temp[temp.index < pd.Timestamp("2026-11-21T23:00", tz="UTC")]
    with caplog.at_level(logging.WARNING, logger="metrify.forecast.model"):
        result = forecast_day(load, temp, date(2026, 11, 22))
    assert (result["method"] == "fallback_last_week").all()
    assert "temperature covers" in caplog.text


def test_falls_back_with_short_history_and_logs_why(caplog: pytest.LogCaptureFixture) -> None:
    load, temp = _load(date(2026, 11, 5), date(2026, 11, 20))
    with caplog.at_level(logging.WARNING, logger="metrify.forecast.model"):
        result = forecast_day(load, temp, date(2026, 11, 22))
    assert (result["method"] == "fallback_last_week").all()
    assert "days of history" in caplog.text
    assert (result["p10_kwh"] <= result["p50_kwh"]).all() and (result["p50_kwh"] <= result["p90_kwh"]).all()


def test_fallback_is_last_week_scaled_to_the_recent_level() -> None:
    load, _ = _load(date(2026, 10, 1), date(2026, 11, 20))
    result = fallback_last_week(load, date(2026, 11, 22))
    last_week = load.reindex(target_index(date(2026, 11, 15))).to_numpy()
    ratio = result["p50_kwh"].to_numpy() / last_week
    assert np.allclose(ratio, ratio[0])
    assert 0.8 < ratio[0] < 1.25


def test_too_little_history_for_any_forecast_is_a_clear_error() -> None:
    load, temp = _load(date(2026, 11, 17), date(2026, 11, 20))
    with pytest.raises(ValueError, match="days of history"):
        forecast_day(load, temp, date(2026, 11, 22))


def test_history_overlapping_the_target_day_is_rejected() -> None:
    load, temp = _load(date(2026, 9, 1), date(2026, 11, 22))
    with pytest.raises(ValueError, match="not before the target day"):
        forecast_day(load, temp, date(2026, 11, 22))


def test_forecast_does_not_depend_on_values_after_the_history() -> None:
    """Changing actuals after the cutoff (the target day) changes nothing: the function never sees them."""
    load, temp = _load(date(2026, 9, 1), date(2026, 11, 22))
    cutoff = target_index(date(2026, 11, 21))[0]
    first = forecast_day(load[load.index < cutoff], temp, date(2026, 11, 22))
    tampered = load.copy()
    tampered[tampered.index >= cutoff] *= 3
    second = forecast_day(tampered[tampered.index < cutoff], temp, date(2026, 11, 22))
    pd.testing.assert_frame_equal(first, second)
    # and the lags used reach back at least the gap: the short lag of a target quarter-hour is in the history
    idx = target_index(date(2026, 11, 22))
    assert (idx - 2 * pd.Timedelta(days=1) < cutoff).all()


def test_day_types_treat_a_public_holiday_as_a_sunday() -> None:
    holidays = model._holidays({2026})
    days = [date(2026, 12, 24), date(2026, 12, 25), date(2026, 12, 26), date(2026, 12, 27), date(2026, 12, 19)]
    # Thu Christmas Eve is a workday, Fri Christmas Day and Sat Boxing Day are holidays, Sun, a plain Saturday
    assert list(model._day_types(days, holidays)) == [0, 2, 2, 2, 1]


def _holiday_load(first: date, last: date) -> tuple[pd.Series, pd.Series]:
    """`_load` with Sundays and public holidays at 0.6 of a workday and Saturdays at 0.8 (the BDEW day types)."""
    load, temp = _load(first, last)
    local = load.index.tz_convert(BERLIN)
    public = set(holidays.Germany(years=[first.year, last.year], categories=("public",)))
    sunday_or_holiday = (local.day_of_week == 6) | np.array([d in public for d in local.date])
    factor = np.where(sunday_or_holiday, 0.6, np.where(local.day_of_week == 5, 0.8, 1.0))
    weekend = np.where(local.day_of_week >= 5, 0.8, 1.0)
    return load / weekend * factor, temp


def test_reference_of_a_holiday_is_the_last_sundays_and_holidays() -> None:
    load, temp = _holiday_load(date(2026, 10, 1), date(2026, 12, 23))
    idx = target_index(date(2026, 12, 25))
    features = model._features(load, temp, idx, 2, model._holidays({2026}))
    sundays = [date(2026, 12, 20), date(2026, 12, 13), date(2026, 12, 6)]
    expected = np.mean([load.reindex(target_index(d)).to_numpy() for d in sundays], axis=0)
    np.testing.assert_allclose(features["scale"].to_numpy(), expected)
    assert (features["day_type"] == 2).all() and (features["lag_week_day_type"] == 0).all()


def test_a_holiday_is_forecast_like_a_sunday_not_like_last_week() -> None:
    day = date(2026, 12, 25)  # a Friday
    load, temp = _holiday_load(date(2026, 9, 1), day)
    history = load[load.index < target_index(day - timedelta(days=1))[0]]
    result = forecast_day(history, temp, day)
    actual = load.reindex(target_index(day)).to_numpy()
    assert (result["method"] == "model").all()
    naive_error = np.abs(seasonal_naive(history, day).to_numpy() - actual).mean()
    model_error = np.abs(result["p50_kwh"].to_numpy() - actual).mean()
    assert model_error < 0.3 * naive_error
    assert abs(result["p50_kwh"].sum() / actual.sum() - 1) < 0.05


def test_a_trained_model_is_reused_for_later_days_with_their_own_history() -> None:
    load, temp = _load(date(2026, 9, 1), date(2026, 11, 30))
    day = date(2026, 11, 22)
    history = load[load.index < target_index(day - timedelta(days=1))[0]]
    trained = model.train_model(history, temp, lag_days=model.lag_days_for(history, day))
    # the composition is forecast_day
    pd.testing.assert_frame_equal(model.predict_day(trained, history, temp, day), forecast_day(history, temp, day))
    later = date(2026, 11, 26)
    later_history = load[load.index < target_index(later - timedelta(days=1))[0]]
    result = model.predict_day(trained, later_history, temp, later)
    actual = load.reindex(target_index(later)).to_numpy()
    assert np.abs(result["p50_kwh"].to_numpy() - actual).mean() < 0.05 * actual.mean()
    # the lags must match the training's, and the history must reach the training data's end
    with pytest.raises(ValueError, match="trained for 2"):
        model.predict_day(trained, later_history, temp, later + timedelta(days=1))
    earlier_history = load[load.index < target_index(day - timedelta(days=2))[0]]
    with pytest.raises(ValueError, match="before the model's training data"):
        model.predict_day(trained, earlier_history, temp, day - timedelta(days=1))


def test_calibration_rows_carry_a_day_level_temperature_forecast_error() -> None:
    load, temp = _load(date(2026, 9, 1), date(2026, 11, 20))
    idx = load.index[-96 * 14 :]
    cal = model._features(load, temp, idx, 2, model._holidays({2026}))
    shifted = model._with_forecast_error(cal)
    assert len(shifted) == model.CALIBRATION_DRAWS * len(cal)
    shift = shifted["day_temperature"].to_numpy() - np.tile(cal["day_temperature"].to_numpy(), model.CALIBRATION_DRAWS)
    per_day = shift.reshape(model.CALIBRATION_DRAWS * 14, 96)
    assert np.allclose(per_day, per_day[:, :1])  # one error per day, as a forecast is off all day
    assert 0.6 * model.FORECAST_TEMPERATURE_ERROR_K < per_day[:, 0].std() < 1.5 * model.FORECAST_TEMPERATURE_ERROR_K
    copies = pd.concat([cal] * model.CALIBRATION_DRAWS)
    np.testing.assert_allclose(shifted["temperature"].to_numpy() - copies["temperature"].to_numpy(), shift)
    # the load features stay as observed
    assert (shifted["reference_level"].to_numpy() == copies["reference_level"].to_numpy()).all()
