"""Day-ahead load forecast of one series (a federal state or a control area) in quarter-hours.

Library: LightGBM quantile regression (`objective="quantile"`, one model per quantile of
`QUANTILES`) on our own features. OpenSTEF 3.4 resolves beside our pins only by downgrading
pandas 3.1 to 2.2, scikit-learn 1.9 to 1.5 and holidays to 0.21 and by pulling mlflow;
mlforecast 1.1 and statsforecast 2.1 require pandas < 3. LightGBM is what those tools use
underneath, so we use it directly.

Features per quarter-hour: the Europe/Berlin quarter-hour of the day, weekday and BDEW day type
(workday, Saturday, Sunday or German public holiday from `holidays`, as the BDEW profiles treat a
holiday), the temperature, the local day's mean temperature and its change against the reference days
(weather observations over the history, the weather forecast over the target day), and the loads lagged
by the gap to the history's end (2 days when the history ends the day before yesterday's end) and by 7
days with their day types. The model learns the load relative to a holiday-aware reference profile: the
mean of the last `REFERENCE_DAYS` days of the target's day type that are in the history (a holiday's
reference is the last Sundays and holidays, not the workday a week earlier), so one model shape fits a
series of any size and the level carries over. Only information available at issue time enters: every
load feature is at least the gap between the history's end and the last target quarter-hour old.

`forecast_day` = `train_model` + `predict_day`: production trains per call; a caller forecasting
consecutive days (the backtest) may reuse one trained model, each day's features from its own history.
The p10-p90 band is calibrated split-conformally on the last `CALIBRATION_DAYS` days of history, with
their temperatures shifted by draws of a day-ahead forecast error (`FORECAST_TEMPERATURE_ERROR_K`): the
calibration days hold observations, a target day holds a forecast.

When the model cannot (too little history, no temperature for the target day, a training
error), `fallback_last_week` forecasts the same weekday last week scaled to the recent level,
and the reason is logged.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from metrify.contracts.forecast import METHODS, QUANTILES

log = logging.getLogger(__name__)

BERLIN = "Europe/Berlin"
QUARTER_HOUR = pd.Timedelta(minutes=15)
DAY = pd.Timedelta(days=1)
MODEL_VERSION = "lgbm-quantile-2"
FALLBACK_VERSION = "last-week-scaled-1"
#: The model trains only on at least this many days of history (lags of 7 days eat the first week).
MIN_HISTORY_DAYS_MODEL = 21
#: The fallback needs the same weekday last week and a week of level before it.
MIN_HISTORY_DAYS_FALLBACK = 8
#: The recent level: the mean load over this many days before the shortest lag.
LEVEL_DAYS = 7
#: The seasonal lag in days (same quarter-hour one week earlier).
WEEK_LAG_DAYS = 7
#: The share of the target day's quarter-hours that must have a temperature for the model to run.
MIN_TEMPERATURE_COVERAGE = 1.0
#: Past days whose fallback errors calibrate the fallback's interval, and the band used without them.
FALLBACK_ERROR_DAYS = 28
FALLBACK_DEFAULT_BAND = (0.85, 1.15)
#: The quantile models' settings (LightGBM's native training API, which needs no scikit-learn):
#: small and fast, under a second per series on 2 cores; fewer, larger leaves than LightGBM's defaults
#: because a regional sum is noisy (in the backtest 100 rounds of 15 leaves matched 200 of 31).
LGBM_ROUNDS = 100
LGBM_PARAMS: dict[str, Any] = {
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 50,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "feature_fraction": 0.9,
    "num_threads": 1,
    "verbose": -1,
    "seed": 0,
}
#: Residual calibration: the last days of history held out to widen or narrow the model's interval
#: to its nominal coverage (split conformal on the ratio actual / p50).
CALIBRATION_DAYS = 14
#: The day-ahead weather forecast's temperature error (K, one standard deviation of a day's mean; DWD MOSMIX
#: and OpenWeatherMap are off by about 1.5-2.5 K a day ahead), and how many draws of it calibrate the band.
FORECAST_TEMPERATURE_ERROR_K = 2.0
CALIBRATION_DRAWS = 4
#: The calibration factors' bounds (a factor at a bound means the quantile models are far off).
WIDEN_RANGE = (0.5, 5.0)
#: The holiday-aware reference profile: the mean of the last this many days of the target's day type.
REFERENCE_DAYS = 3
#: The BDEW day types (demandlib treats a public holiday as a Sunday).
DAY_TYPE_WORKDAY, DAY_TYPE_SATURDAY, DAY_TYPE_HOLIDAY = 0, 1, 2

MODEL_METHOD, FALLBACK_METHOD = METHODS
COLUMNS = ["interval_start", "p10_kwh", "p50_kwh", "p90_kwh", "method", "model_version"]


class ForecastUnavailable(ValueError):
    """The model cannot forecast this series for this day; the message says why."""


def target_index(target_day: date) -> pd.DatetimeIndex:
    """The UTC starts of the quarter-hours of the Europe/Berlin `target_day` (92, 96 or 100)."""
    start = pd.Timestamp(target_day).tz_localize(BERLIN)
    end = pd.Timestamp(target_day + timedelta(days=1)).tz_localize(BERLIN)
    return pd.date_range(start.tz_convert("UTC"), end.tz_convert("UTC"), freq="15min", inclusive="left")


def _check_history(history: pd.Series, target_day: date) -> pd.Series:
    """The history sorted on a tz-aware UTC index; rejects an index that is not or overlaps `target_day`."""
    if not isinstance(history.index, pd.DatetimeIndex) or history.index.tz is None:
        raise ValueError("history: the index must be tz-aware UTC interval starts")
    series = history.sort_index().astype(float)
    series.index = series.index.tz_convert("UTC")
    if series.index.has_duplicates:
        raise ValueError(f"history: duplicate interval starts, e.g. {series.index[series.index.duplicated()][0]}")
    first_target = target_index(target_day)[0]
    if len(series) and series.index[-1] >= first_target:
        raise ValueError(
            f"history: ends at {series.index[-1]}, not before the target day {target_day} ({first_target} UTC)"
        )
    return series


def _regular(series: pd.Series) -> pd.Series:
    """The series on a full quarter-hour grid (missing quarter-hours as NaN)."""
    if series.empty:
        return series
    grid = pd.date_range(series.index[0], series.index[-1], freq="15min")
    return series.reindex(grid)


def _local_days(history: pd.Series) -> int:
    """Complete days of history (96 quarter-hours count as a day)."""
    return int(history.notna().sum() // 96)


def _wall_key(index: pd.DatetimeIndex) -> np.ndarray:
    """Local minutes since midnight (wall clock), the quarter-hour of the day."""
    local = index.tz_convert(BERLIN)
    return np.asarray(local.hour * 60 + local.minute)


def _day_frame(series: pd.Series, day: date) -> pd.Series:
    """The values of the local `day`, indexed by local wall minute (the repeated autumn hour keeps its first)."""
    idx = target_index(day)
    values = series.reindex(idx)
    keyed = pd.Series(values.to_numpy(), index=_wall_key(idx))
    return keyed[~keyed.index.duplicated()]


def _last_week_point(series: pd.Series, target_day: date) -> np.ndarray:
    """The same weekday last week mapped onto `target_day`'s quarter-hours, scaled to the recent level."""
    ref_day = target_day - timedelta(days=WEEK_LAG_DAYS)
    ref = _day_frame(series, ref_day)
    keys = _wall_key(target_index(target_day))
    # a spring DST target day has no 02:xx; an autumn one repeats it: both map by wall clock
    values = ref.reindex(keys).to_numpy(dtype=float)
    if np.isnan(values).any():
        # the reference day lacks wall-clock times of the target (autumn 02:xx after a spring day): nearest earlier
        values = pd.Series(values).ffill().bfill().to_numpy()
    ref_end = target_index(ref_day)[-1] + QUARTER_HOUR
    cutoff = series.index[-1] + QUARTER_HOUR
    recent = series[series.index >= cutoff - LEVEL_DAYS * DAY].mean()
    before_ref = series[(series.index < ref_end) & (series.index >= ref_end - LEVEL_DAYS * DAY)].mean()
    scale = float(recent / before_ref) if before_ref and not math.isnan(before_ref) else 1.0
    if not math.isfinite(scale) or scale <= 0:
        scale = 1.0
    return values * scale


def seasonal_naive(history: pd.Series, target_day: date) -> pd.Series:
    """The benchmark: each quarter-hour's value one week earlier (same local wall time), unscaled."""
    series = _regular(_check_history(history, target_day))
    ref = _day_frame(series, target_day - timedelta(days=WEEK_LAG_DAYS))
    idx = target_index(target_day)
    values = ref.reindex(_wall_key(idx)).ffill().bfill().to_numpy(dtype=float)
    return pd.Series(values, index=idx, name="seasonal_naive_kwh")


def fallback_last_week(history: pd.Series, target_day: date) -> pd.DataFrame:
    """Same weekday last week, scaled to the recent level; p10/p90 from its own errors on past days."""
    series = _regular(_check_history(history, target_day))
    days = _local_days(series)
    if days < MIN_HISTORY_DAYS_FALLBACK:
        raise ForecastUnavailable(
            f"fallback: {days} days of history, needs at least {MIN_HISTORY_DAYS_FALLBACK} for target {target_day}"
        )
    point = _last_week_point(series, target_day)
    if np.isnan(point).all():
        raise ForecastUnavailable(f"fallback: no history on {target_day - timedelta(days=WEEK_LAG_DAYS)}")
    ratios: list[np.ndarray] = []
    last_day = series.index[-1].tz_convert(BERLIN).date()
    gap = (target_day - last_day).days
    for back in range(1, FALLBACK_ERROR_DAYS + 1):
        past_day = last_day - timedelta(days=back - 1)
        cutoff = target_index(past_day - timedelta(days=gap - 1))[0]
        past_history = series[series.index < cutoff]
        if _local_days(past_history) < MIN_HISTORY_DAYS_FALLBACK:
            break
        past_point = _last_week_point(past_history, past_day)
        actual = series.reindex(target_index(past_day)).to_numpy(dtype=float)
        ok = (past_point > 0) & np.isfinite(actual) & np.isfinite(past_point)
        ratios.append(actual[ok] / past_point[ok])
    if ratios and sum(len(r) for r in ratios) >= 96 * 3:
        pooled = np.concatenate(ratios)
        low, high = float(np.quantile(pooled, 0.1)), float(np.quantile(pooled, 0.9))
    else:
        low, high = FALLBACK_DEFAULT_BAND
    idx = target_index(target_day)
    return pd.DataFrame(
        {
            "interval_start": idx,
            "p10_kwh": point * min(low, 1.0),
            "p50_kwh": point,
            "p90_kwh": point * max(high, 1.0),
            "method": FALLBACK_METHOD,
            "model_version": FALLBACK_VERSION,
        }
    )[COLUMNS]


def _quarter_hour_temperature(temperature: pd.Series, index: pd.DatetimeIndex) -> pd.Series:
    """Temperature on `index`: an hourly series is interpolated to quarter-hours, a gap stays NaN."""
    if not isinstance(temperature.index, pd.DatetimeIndex) or temperature.index.tz is None:
        raise ValueError("temperature: the index must be tz-aware UTC")
    temp = temperature.sort_index().astype(float)
    temp.index = temp.index.tz_convert("UTC")
    temp = temp[~temp.index.duplicated()]
    union = temp.index.union(index)
    filled = temp.reindex(union).interpolate(method="time", limit=4, limit_area="inside")
    # the last hour's quarter-hours after the final hourly value
    filled = filled.ffill(limit=3)
    return filled.reindex(index)


def _day_types(days: Any, holiday_days: set[date]) -> np.ndarray:
    """The BDEW day type of each local date: 0 workday, 1 Saturday, 2 Sunday or public holiday."""
    return np.array(
        [DAY_TYPE_HOLIDAY if d in holiday_days or d.weekday() == 6 else int(d.weekday() == 5) for d in days], dtype=int
    )


def _day_matrix(load: pd.Series) -> pd.DataFrame:
    """The load per local date (rows, every date of the load's span) and local quarter-hour of the day
    (columns 0..95): the repeated autumn hour is averaged, the missing spring hour stays NaN."""
    local = load.index.tz_convert(BERLIN)
    frame = pd.DataFrame(
        {"day": local.date, "qh": local.hour * 4 + local.minute // 15, "value": load.to_numpy(dtype=float)}
    )
    matrix = frame.groupby(["day", "qh"])["value"].mean().unstack("qh")
    if len(local):
        first, last = local[0].date(), local[-1].date()
        matrix = matrix.reindex([first + timedelta(days=i) for i in range((last - first).days + 1)])
    return matrix.reindex(columns=range(96))


def _reference_days(
    day: date, lag_days: int, day_type: int, available: list[date], types: dict[date, int]
) -> list[date]:
    """The last `REFERENCE_DAYS` complete days of `day_type` at least `lag_days` before `day` (holiday-aware:
    a holiday's reference is the last Sundays and holidays, a workday's the last workdays)."""
    found: list[date] = []
    for candidate in reversed(available):
        if candidate > day - timedelta(days=lag_days):
            continue
        if types[candidate] == day_type:
            found.append(candidate)
            if len(found) == REFERENCE_DAYS:
                break
    return found


def _features(
    load: pd.Series, temperature: pd.Series, index: pd.DatetimeIndex, lag_days: int, holiday_days: set[date]
) -> pd.DataFrame:
    """The model's features for the quarter-hours of `index` from the load (full grid) and temperature.

    Only loads at least `lag_days` days before a quarter-hour's local day enter its features.
    """
    local = index.tz_convert(BERLIN)
    local_dates = np.array(local.date)
    quarter = np.asarray(local.hour * 4 + local.minute // 15)
    temp = _quarter_hour_temperature(temperature, index)
    day_mean = temp.groupby(local_dates).transform("mean")
    level = _level(load, index, lag_days)
    matrix = _day_matrix(load)
    # a day counts as a reference only when it is complete (no missing quarter-hour but the spring hour)
    complete = [d for d, n in matrix.notna().sum(axis=1).items() if n >= 92]
    span_temp = _quarter_hour_temperature(temperature, load.index)
    load_day_temp = span_temp.groupby(np.array(load.index.tz_convert(BERLIN).date)).mean()
    all_days = sorted(set(matrix.index) | set(local_dates))
    types = dict(zip(all_days, _day_types(all_days, holiday_days), strict=True))
    reference = np.full(len(index), np.nan)
    reference_temp = np.full(len(index), np.nan)
    for day in sorted(set(local_dates)):
        refs = _reference_days(day, lag_days, types[day], complete, types)
        if len(refs) < REFERENCE_DAYS:
            continue
        rows = local_dates == day
        profile = matrix.loc[refs].mean(axis=0).ffill().bfill().to_numpy()
        reference[rows] = profile[quarter[rows]]
        reference_temp[rows] = float(load_day_temp.reindex(refs).mean())
    lag_short_dates = np.array((local - lag_days * DAY).date)
    lag_week_dates = local_dates - timedelta(days=WEEK_LAG_DAYS)
    day_temperature = day_mean.to_numpy()
    frame = pd.DataFrame(
        {
            "quarter_hour": quarter,
            "weekday": local.day_of_week.to_numpy(),
            "holiday": np.array([d in holiday_days for d in local_dates], dtype=int),
            "day_type": np.array([types[d] for d in local_dates], dtype=int),
            "temperature": temp.to_numpy(),
            "day_temperature": day_temperature,
            "temperature_change": day_temperature - reference_temp,
            "reference_level": reference / level,
            "lag_short": load.reindex(index - lag_days * DAY).to_numpy() / reference,
            "lag_short_day_type": _day_types(lag_short_dates, holiday_days),
            "lag_week": load.reindex(index - WEEK_LAG_DAYS * DAY).to_numpy() / reference,
            "lag_week_day_type": _day_types(lag_week_dates, holiday_days),
        },
        index=index,
    )
    # the scale: the model learns the load relative to the holiday-aware reference profile
    frame["scale"] = np.where(reference > 0, reference, np.nan)
    return frame


def _level(load: pd.Series, index: pd.DatetimeIndex, lag_days: int) -> np.ndarray:
    """The recent level per quarter-hour: mean load over `LEVEL_DAYS` days ending `lag_days` days before it.

    Constant within a local day (its first quarter-hour's level), so a day's shape is kept.
    """
    rolling = load.rolling(f"{LEVEL_DAYS}D", min_periods=96 * (LEVEL_DAYS - 1)).mean()
    local_dates = np.array(index.tz_convert(BERLIN).date)
    firsts = {d: target_index(d)[0] for d in set(local_dates)}
    # the level's window ends where the day's first quarter-hour lagged by `lag_days` is
    values = {
        d: rolling.asof(t - lag_days * DAY) if t - lag_days * DAY >= load.index[0] else np.nan
        for d, t in firsts.items()
    }
    return np.array([values[d] for d in local_dates], dtype=float)


def _holidays(years: set[int]) -> set[date]:
    """German public holidays (nationwide) of `years`."""
    import holidays

    return set(holidays.Germany(years=sorted(years), categories=("public",)).keys())


def _holidays_around(first: date, last: date) -> set[date]:
    """The nationwide holidays of every year from the year before `first` to `last`'s."""
    return _holidays(set(range(first.year - 1, last.year + 1)))


@dataclass(frozen=True)
class TrainedModel:
    """The quantile models of one series trained on its history, usable for later target days whose
    history ends `lag_days` days before the target day's end (see `train_model` and `predict_day`)."""

    models: dict[float, Any]
    features: list[str]
    widen_low: float
    widen_high: float
    lag_days: int
    trained_until: pd.Timestamp


def forecast_day(
    history: pd.Series,
    temperature: pd.Series,
    target_day: date,
    *,
    issued_at: datetime | None = None,
) -> pd.DataFrame:
    """history: kWh per quarter-hour of one series, index = tz-aware UTC interval starts, ending before target_day
    (typically at the end of the day before yesterday: the forecast runs after the daily warehouse build on day D
    for D+1). temperature: °C per hour or quarter-hour, UTC index, observations over the history and the weather
    forecast over target_day. Returns one row per quarter-hour of the Europe/Berlin target_day:
    interval_start (UTC), p10_kwh, p50_kwh, p90_kwh, method ("model" | "fallback_last_week"), model_version.

    Trains on the history (`train_model`) and predicts the target day (`predict_day`); falls back to
    `fallback_last_week`, with the reason logged, when either cannot."""
    series = _regular(_check_history(history, target_day))
    if issued_at is not None:
        log.debug("forecast for %s issued at %s", target_day, issued_at)
    try:
        trained = train_model(series, temperature, lag_days=lag_days_for(series, target_day))
        return predict_day(trained, series, temperature, target_day)
    except ForecastUnavailable as reason:
        log.warning("load forecast for %s falls back to last week: %s", target_day, reason)
    except Exception as error:  # any training error falls back, with its reason logged
        log.warning("load forecast for %s falls back to last week: model error %r", target_day, error)
    return fallback_last_week(series.dropna(), target_day)


def lag_days_for(history: pd.Series, target_day: date) -> int:
    """Whole days from the history's end to the end of `target_day` (2 when the history ends the day before
    the issue day): the shortest lag the features may use."""
    if history.empty:
        raise ForecastUnavailable("history: empty")
    end = target_index(target_day)[-1] + QUARTER_HOUR
    return max(1, math.ceil((end - (history.index[-1] + QUARTER_HOUR)) / DAY))


def train_model(history: pd.Series, temperature: pd.Series, *, lag_days: int) -> TrainedModel:
    """Train the quantile models on `history` (kWh per quarter-hour, UTC index) and observed `temperature`
    for forecasts whose history ends `lag_days` days before the target day's end, and calibrate the band
    split-conformally on the last `CALIBRATION_DAYS` days. Raises `ForecastUnavailable` when it cannot.

    `forecast_day` trains per call; a caller forecasting consecutive days (the backtest) may reuse one
    trained model for later days, passing each day's own history to `predict_day`."""
    series = _regular(history.sort_index().astype(float))
    days = _local_days(series)
    if days < MIN_HISTORY_DAYS_MODEL:
        raise ForecastUnavailable(f"{days} days of history, the model needs at least {MIN_HISTORY_DAYS_MODEL}")
    if lag_days >= WEEK_LAG_DAYS:
        raise ForecastUnavailable(f"history ends {lag_days} days before the target day's end, too far for the lags")
    local_end = series.index[-1].tz_convert(BERLIN).date()
    holiday_days = _holidays_around(series.index[0].tz_convert(BERLIN).date(), local_end + timedelta(days=7))
    train = _features(series, temperature, series.index, lag_days, holiday_days)
    train["y"] = series.to_numpy() / train["scale"].to_numpy()
    train = train.dropna()
    if len(train) < 96 * 7:
        raise ForecastUnavailable(f"only {len(train)} complete training quarter-hours after lags and temperature")
    features = [c for c in train.columns if c not in ("y", "scale")]
    # split conformal: fit on all but the last CALIBRATION_DAYS days, measure how the band covers them
    cal_start = train.index[-1] - CALIBRATION_DAYS * DAY
    fit_part, cal_part = train[train.index <= cal_start], train[train.index > cal_start]
    widen_low = widen_high = 1.0
    if len(fit_part) >= 96 * 7 and len(cal_part) >= 96 * 3:
        widen_low, widen_high = _calibrate(_fit(fit_part, features), _with_forecast_error(cal_part), features)
    return TrainedModel(_fit(train, features), features, widen_low, widen_high, lag_days, series.index[-1])


def predict_day(trained: TrainedModel, history: pd.Series, temperature: pd.Series, target_day: date) -> pd.DataFrame:
    """The quantile forecast of `target_day` from a trained model and the history up to the issue (the
    features' lags and level come from `history`, which must end `trained.lag_days` days before the target
    day's end); `temperature` covers the history (observed) and the target day (forecast)."""
    series = _regular(_check_history(history, target_day))
    lag_days = lag_days_for(series, target_day)
    if lag_days != trained.lag_days:
        raise ValueError(
            f"history ends {lag_days} days before {target_day}'s end, the model was trained for {trained.lag_days}"
        )
    if series.index[-1] < trained.trained_until:
        raise ValueError(f"history ends {series.index[-1]}, before the model's training data ({trained.trained_until})")
    idx = target_index(target_day)
    target_temp = _quarter_hour_temperature(temperature, idx)
    coverage = float(target_temp.notna().mean())
    if coverage < MIN_TEMPERATURE_COVERAGE:
        raise ForecastUnavailable(
            f"temperature covers {coverage:.0%} of the target day {target_day}, needs {MIN_TEMPERATURE_COVERAGE:.0%}"
        )
    holiday_days = _holidays_around(series.index[0].tz_convert(BERLIN).date(), target_day)
    predict = _features(series, temperature, idx, lag_days, holiday_days)
    features = trained.features
    if predict[features].isna().any().any():
        missing = predict[features].columns[predict[features].isna().any()].tolist()
        raise ForecastUnavailable(f"target-day features incomplete: {missing}")
    level = predict["scale"].to_numpy()
    preds = np.sort(np.column_stack([trained.models[q].predict(predict[features]) for q in QUANTILES]), axis=1)
    p50 = preds[:, 1]
    low = p50 - trained.widen_low * (p50 - preds[:, 0])
    high = p50 + trained.widen_high * (preds[:, 2] - p50)
    return pd.DataFrame(
        {
            "interval_start": idx,
            "p10_kwh": np.clip(low, 0, None) * level,
            "p50_kwh": np.clip(p50, 0, None) * level,
            "p90_kwh": np.clip(high, 0, None) * level,
            "method": MODEL_METHOD,
            "model_version": MODEL_VERSION,
        }
    )[COLUMNS]


def _with_forecast_error(cal: pd.DataFrame) -> pd.DataFrame:
    """The calibration rows as the forecast sees them: `CALIBRATION_DRAWS` copies, each local day's
    temperature features shifted by a draw of the weather forecast's day-ahead error (the history holds
    observations, the target day a forecast), so the band covers the forecast temperature's own error."""
    days = np.array(cal.index.tz_convert(BERLIN).date)
    _, day_of_row = np.unique(days, return_inverse=True)
    rng = np.random.default_rng(0)
    copies = []
    for _ in range(CALIBRATION_DRAWS):
        shift = rng.normal(0.0, FORECAST_TEMPERATURE_ERROR_K, day_of_row.max() + 1)[day_of_row]
        copy = cal.copy()
        for column in ("temperature", "day_temperature", "temperature_change"):
            copy[column] = copy[column] + shift
        copies.append(copy)
    return pd.concat(copies)


def _fit(train: pd.DataFrame, features: list[str]) -> dict[float, Any]:
    """One LightGBM quantile model per quantile."""
    import lightgbm as lgb

    models: dict[float, Any] = {}
    for q in QUANTILES:
        data = lgb.Dataset(train[features], train["y"], params={"verbose": -1})
        models[q] = lgb.train({**LGBM_PARAMS, "objective": "quantile", "alpha": q}, data, num_boost_round=LGBM_ROUNDS)
    return models


def _calibrate(models: dict[float, Any], cal: pd.DataFrame, features: list[str]) -> tuple[float, float]:
    """The factors on the band's lower and upper half-widths that make each side miss `QUANTILES[0]` of the
    held-out days' quarter-hours (conformalized quantile regression, one factor per side)."""
    preds = np.sort(np.column_stack([models[q].predict(cal[features]) for q in QUANTILES]), axis=1)
    p50 = preds[:, 1]
    y = cal["y"].to_numpy()
    below = np.maximum(p50 - preds[:, 0], 1e-9)
    above = np.maximum(preds[:, 2] - p50, 1e-9)
    low = np.quantile(np.where(y < p50, (p50 - y) / below, 0.0), 1 - QUANTILES[0])
    high = np.quantile(np.where(y > p50, (y - p50) / above, 0.0), 1 - QUANTILES[0])
    return float(np.clip(low, *WIDEN_RANGE)), float(np.clip(high, *WIDEN_RANGE))
