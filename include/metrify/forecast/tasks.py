"""Task bodies of the `forecast_load` DAG: build each series' inputs, forecast the next local
day, land it in the lake (`forecast/load_forecast/date=<target day>/`) and draw the plot.

The run due after `warehouse_daily` on day D (which rebuilt D - 1) has history up to the end of
D - 1 and forecasts D + 1 (`target_day`), the day grid planners schedule on D.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import date as Date
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from metrify import lake
from metrify.config import FORECAST_HISTORY_DAYS, Settings, load_settings
from metrify.contracts import readings, weather
from metrify.contracts.calendar import BUSINESS_TIMEZONE
from metrify.contracts.forecast import (
    LOAD_FORECAST_DATASET,
    LOAD_FORECAST_LAYER,
    LOAD_FORECAST_SCHEMA,
    METHODS,
    SERIES_KINDS,
    WEATHER_FORECAST_DATASET,
)
from metrify.forecast.model import ForecastUnavailable
from metrify.forecast.series import (
    SeriesInputs,
    local_day_bounds,
    series_history,
    series_members,
    series_temperature,
)
from metrify.warehouse.business_calendar import daily_run_days

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)
ForecastDay = Callable[..., pd.DataFrame]
FORECAST_FILE = "load_forecast.parquet"
PLOT_DATASET = "plots"
PLOT_FILE = "load_forecast.png"


def target_day(data_interval_start: Any, data_interval_end: Any) -> Date:
    """The local day a run forecasts: the day after the run's date, i.e. two days after the
    business day `warehouse_daily` rebuilt in the same interval (`daily_run_days`)."""
    business, _ = daily_run_days(data_interval_start, data_interval_end)
    return max(business) + timedelta(days=2)


def run_logical_date(day: Date, timezone: str = BUSINESS_TIMEZONE) -> str:
    """The logical date (ISO) of the `forecast_load` run that forecasts `day`: 04:30 local on
    the day before (the inverse of `target_day`)."""
    import pendulum

    before = pendulum.date(day.year, day.month, day.day).subtract(days=1)
    return pendulum.datetime(before.year, before.month, before.day, 4, 30, tz=timezone).isoformat()


def build_inputs(
    registry: pd.DataFrame,
    meter_readings: pd.DataFrame,
    observations: pd.DataFrame,
    forecasts: pd.DataFrame,
    day: Date,
    issued_before: datetime,
    kinds: tuple[str, ...] = SERIES_KINDS,
) -> list[SeriesInputs]:
    """One `SeriesInputs` per series with meters; its notes say what the model lacks."""
    day_start, _ = local_day_bounds(day)
    built: list[SeriesInputs] = []
    for members in series_members(registry, kinds):
        history = series_history(meter_readings, members, end=day_start)
        temperature, notes = series_temperature(observations, forecasts, members, day, issued_before)
        if history.empty:
            notes.insert(0, "no validated readings of its meters in the history window")
        built.append(SeriesInputs(members, history, temperature, notes))
    return built


def forecast_series(inputs: list[SeriesInputs], day: Date, issued_at: datetime, forecast_day: ForecastDay) -> pa.Table:
    """Forecast every series with `forecast_day` (`metrify.forecast.model`) and return the rows
    in `LOAD_FORECAST_SCHEMA`; logs each series that fell back and why."""
    frames: list[pd.DataFrame] = []
    for item in inputs:
        m = item.members
        if item.history.empty:
            log.warning("forecast %s %r for %s: NO FORECAST, skipped: %s", m.kind, m.name, day, "; ".join(item.notes))
            continue
        try:
            result = forecast_day(item.history, item.temperature, day, issued_at=issued_at)
        except ForecastUnavailable as reason:
            log.warning("forecast %s %r for %s: NO FORECAST, skipped: %s", m.kind, m.name, day, reason)
            continue
        unknown = set(result["method"]) - set(METHODS)
        if unknown:
            raise ValueError(f"forecast of {m.kind} {m.name!r}: methods {sorted(unknown)} are not in {METHODS}")
        if (result["method"] != "model").any():
            log.warning(
                "forecast %s %r for %s: FALLBACK (%s); %d quarter-hours of history, reasons: %s",
                m.kind,
                m.name,
                day,
                ", ".join(sorted(set(result["method"]))),
                len(item.history),
                "; ".join(item.notes) or "the model declined (see the model's log lines above)",
            )
        else:
            log.info(
                "forecast %s %r for %s: model (%d quarter-hours of history)", m.kind, m.name, day, len(item.history)
            )
        frames.append(
            result.assign(
                series_kind=m.kind, series=m.name, target_date=day, meters=len(m.meter_ids), issued_at=issued_at
            )
        )
    if not frames:
        return LOAD_FORECAST_SCHEMA.empty_table()
    rows = pd.concat(frames, ignore_index=True)
    rows["interval_start"] = pd.to_datetime(rows["interval_start"], utc=True)
    rows["issued_at"] = pd.to_datetime(rows["issued_at"], utc=True)
    return pa.Table.from_pandas(rows[LOAD_FORECAST_SCHEMA.names], schema=LOAD_FORECAST_SCHEMA, preserve_index=False)


def forecast_path(root: ObjectStoragePath, day: Date) -> ObjectStoragePath:
    return lake.partition_path(root, LOAD_FORECAST_LAYER, LOAD_FORECAST_DATASET, date=day.isoformat()) / FORECAST_FILE


def plot_path(root: ObjectStoragePath, day: Date) -> ObjectStoragePath:
    return lake.partition_path(root, LOAD_FORECAST_LAYER, PLOT_DATASET, date=day.isoformat()) / PLOT_FILE


def _read(root: ObjectStoragePath, layer: str, dataset: str, time_column: str, since: pd.Timestamp) -> pd.DataFrame:
    """Rows of `layer/dataset` with `time_column >= since`, read from the files' own columns
    (no partition columns: `raw/weather_forecast` repeats `source` as a partition key)."""
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    folder = root / layer / dataset
    files = lake.list_files(folder)
    if not files:
        return pd.DataFrame()
    data = pads.dataset(files, filesystem=PyFileSystem(FSSpecHandler(folder.fs)), format="parquet")
    column = pads.field(time_column)
    return data.to_table(filter=column >= pa.scalar(since.to_pydatetime(), pa.timestamp("us", tz="UTC"))).to_pandas()


def read_inputs(
    root: ObjectStoragePath, day: Date, registry: pd.DataFrame, issued_before: datetime
) -> list[SeriesInputs]:
    """Read the history window from the lake (validated readings and weather, raw forecasts)."""
    day_start, _ = local_day_bounds(day)
    since = day_start - timedelta(days=FORECAST_HISTORY_DAYS)
    meter_readings = _read(root, "validated", readings.DATASET, "reading_ts", since)
    if meter_readings.empty:
        meter_readings = pd.DataFrame(columns=["meter_id", "reading_ts", "consumption_kwh"])
    observations = _read(root, "validated", weather.DATASET, "observed_at", since)
    forecasts = _read(root, "raw", WEATHER_FORECAST_DATASET, "valid_at", day_start)
    return build_inputs(registry, meter_readings, observations, forecasts, day, issued_before)


def run_forecast(
    data_interval_start: Any,
    data_interval_end: Any,
    settings: Settings | None = None,
    registry: pd.DataFrame | None = None,
    forecast_day: ForecastDay | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """`forecast_load`: forecast the run's target day per series, land it (replacing an earlier
    run's file for that day) and write the plot; returns a summary for the task log."""
    settings = settings or load_settings()
    if registry is None:
        from metrify.warehouse.registry import read_registry

        registry = read_registry(conn_id=settings.registry_conn_id)
    if forecast_day is None:
        from metrify.forecast.model import forecast_day as model_forecast_day

        forecast_day = model_forecast_day
    day = target_day(data_interval_start, data_interval_end)
    issued_at = (now or datetime.now(UTC)).replace(microsecond=0)
    root = lake.lake_root(settings)
    inputs = read_inputs(root, day, registry, issued_before=issued_at)
    kinds_with_meters = {(i.members.kind, i.members.name) for i in inputs}
    for kind in SERIES_KINDS:
        if not any(k == kind for k, _ in kinds_with_meters):
            log.warning("forecast %s: no series with registered meters, skipped", kind)
    table = forecast_series(inputs, day, issued_at, forecast_day)
    target = forecast_path(root, day)
    lake.write_parquet(table, target)
    landed = table.select(["series_kind", "series", "method"]).to_pylist()
    fallbacks = sorted({f"{r['series_kind']}:{r['series']}" for r in landed if r["method"] != "model"})
    log.info("landed %d forecast rows for %s at %s", table.num_rows, day, target)
    plot = write_plot(root, day, table, registry, end=local_day_bounds(day)[0])
    return {
        "target_date": day.isoformat(),
        "series": len(inputs),
        "rows": table.num_rows,
        "fallback_series": fallbacks,
        "path": str(target),
        "plot": plot,
    }


def write_plot(
    root: ObjectStoragePath, day: Date, forecast: pa.Table, registry: pd.DataFrame, end: pd.Timestamp
) -> str:
    """The PNG beside the forecast: per region, the p50 with its p10-p90 band for the target
    day and the forecasts landed for the week before, against the actual load; returns its path."""
    frame = forecast.to_pandas()
    since = local_day_bounds(day - timedelta(days=7))[0]
    earlier = _read(root, LOAD_FORECAST_LAYER, LOAD_FORECAST_DATASET, "interval_start", since)
    if not earlier.empty:
        earlier = earlier[earlier["target_date"].astype(str) != day.isoformat()]
        frame = pd.concat([earlier[frame.columns], frame], ignore_index=True)
    readings_since = _read(root, "validated", readings.DATASET, "reading_ts", since)
    actual: dict[str, pd.Series] = {}
    if not readings_since.empty:
        for members in series_members(registry, ("region",)):
            actual[members.name] = series_history(readings_since, members, end=end)
    path = plot_path(root, day)
    path.parent.mkdir(parents=True, exist_ok=True)  # a local lake needs the folder; an object store ignores it
    lake.put_bytes(render_plot(frame, actual, day), path)
    log.info("forecast plot for %s (forecast vs actual per region, last week): %s", day, path)
    return str(path)


def render_plot(forecast: pd.DataFrame, actual: dict[str, pd.Series], day: Date) -> bytes:
    """PNG bytes: one panel per region, the forecast's p10-p90 band and p50 against the actual."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regions = forecast[forecast["series_kind"] == "region"]
    names = sorted(regions["series"].unique()) or ["(no region forecast)"]
    fig, axes = plt.subplots(len(names), 1, figsize=(11, 2.2 * len(names)), sharex=True, squeeze=False)
    buffer = io.BytesIO()
    try:
        for ax, name in zip(axes[:, 0], names, strict=True):
            mine = regions[regions["series"] == name].sort_values("interval_start")
            if mine.empty:  # no series could be forecast (e.g. no history yet): the task log says why
                ax.text(0.5, 0.5, "no forecast landed: see the task log", ha="center", transform=ax.transAxes)
                ax.set_title(f"{day}: no region forecast", fontsize=9)
                continue
            ts = pd.to_datetime(mine["interval_start"], utc=True).dt.tz_convert(BUSINESS_TIMEZONE)
            ax.fill_between(ts, mine["p10_kwh"], mine["p90_kwh"], alpha=0.3, label="p10-p90", step="post")
            ax.plot(ts, mine["p50_kwh"], label="forecast p50", drawstyle="steps-post")
            seen = actual.get(name)
            if seen is not None and not seen.empty:
                ax.plot(
                    seen.index.tz_convert(BUSINESS_TIMEZONE), seen.to_numpy(), label="actual", color="black", lw=0.8
                )
            ax.set_title(f"{name}: forecast for {day} and the week before, kWh per quarter-hour", fontsize=9)
            ax.legend(loc="upper left", fontsize=7)
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=80)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def load_into_warehouse(data_interval_start: Any, data_interval_end: Any) -> dict[str, Any]:
    """`forecast_load`'s second task: replace the run's target day in `raw.load_forecast`."""
    from metrify.warehouse.tasks import load_forecast_day

    return load_forecast_day(target_day(data_interval_start, data_interval_end))
