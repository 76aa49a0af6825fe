"""What the fake APIs answer: grid and weather values from the simulator's shared physical models.

The meters' temperature, humidity and PV feed-in come from `simulator.ambient_weather` and
`simulator.solar_factor`, their frequency from `simulator.grid_frequency`; the fakes use the same
functions with the same seed, so a city's weather and the grid's frequency match what its meters
measured. Control-area load follows the BDEW profiles the meters use (`simulator.profile_kw`),
scaled to each area's yearly consumption and raised on cold days; generation per type follows
sun, cloud and wind at the area's largest city. Magnitudes are plausible, not official figures.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from metrify.contracts.geography import CITIES, City
from metrify_dev.simulator import ambient_weather, forecast_weather, grid_frequency, profile_kw, solar_factor

#: Yearly consumption per control area (TWh), roughly the areas' share of German demand.
YEARLY_TWH = {"TenneT": 140.0, "50Hertz": 100.0, "Amprion": 170.0, "TransnetBW": 75.0}
#: Installed capacity per control area and ENTSO-E production type (MW), rounded and plausible.
INSTALLED_MW = {
    "TenneT": {"B01": 4000, "B04": 7000, "B05": 4000, "B11": 3500, "B16": 35000, "B18": 6000, "B19": 20000},
    "50Hertz": {
        "B01": 2500,
        "B02": 9000,
        "B04": 4000,
        "B05": 1500,
        "B11": 200,
        "B16": 25000,
        "B18": 3000,
        "B19": 22000,
    },
    "Amprion": {"B01": 1500, "B02": 9000, "B04": 12000, "B05": 9000, "B11": 300, "B16": 15000, "B19": 12000},
    "TransnetBW": {"B01": 900, "B04": 2500, "B05": 5000, "B10": 1900, "B11": 900, "B16": 10000, "B19": 2000},
}
FOSSIL_ORDER = ("B02", "B05", "B04")  # merit order: lignite, hard coal, gas
MUST_RUN = {"B02": 0.3, "B05": 0.1, "B04": 0.1}


def area_city(operator: str) -> City:
    """The largest city of a control area stands in for its weather."""
    return max((c for c in CITIES if c.tso == operator), key=lambda c: c.population)


def quarter_starts(start: datetime, end: datetime) -> pd.DatetimeIndex:
    first = pd.Timestamp(start).tz_convert("UTC").floor("15min")
    return pd.date_range(first, pd.Timestamp(end).tz_convert("UTC"), freq="15min", inclusive="left")


def weather(ts_utc: pd.DatetimeIndex, lat: float, seed: int) -> pd.DataFrame:
    """`ambient_weather` plus visibility (m), which falls with humidity and cloud cover."""
    frame = ambient_weather(ts_utc, lat, seed)
    visibility = 50000 - 450 * np.clip(frame["humidity_percent"] - 55, 0, None) - 120 * frame["cloud_cover_percent"]
    frame["visibility_m"] = np.clip(visibility, 800, 50000).round(-1)
    return frame


def load_mw(operator: str, starts: pd.DatetimeIndex, seed: int) -> np.ndarray:
    """Actual load of a control area (MW) for quarter-hours starting at `starts`."""
    if len(starts) == 0:
        return np.array([])
    # profile_kw: kW per 1 GWh/year, i.e. MW per 1 TWh/year
    shape = 0.45 * profile_kw("H25", starts) + 0.55 * profile_kw("G25", starts)
    city = area_city(operator)
    temperature = weather(starts, city.lat, seed)["temperature_celsius"].to_numpy()
    heating = 1 + 0.01 * np.maximum(0, 15 - temperature)
    return np.round(YEARLY_TWH[operator] * shape * heating, 1)


def generation_mw(operator: str, starts: pd.DatetimeIndex, seed: int) -> dict[str, np.ndarray]:
    """Actual generation per production type (MW)."""
    city = area_city(operator)
    w = weather(starts, city.lat, seed)
    cap = INSTALLED_MW[operator]
    sun = solar_factor(starts + pd.Timedelta(minutes=7.5), city.lat, city.lon)
    clouds = w["cloud_cover_percent"].to_numpy()
    hub_wind = w["wind_speed_ms"].to_numpy() * 1.6
    out: dict[str, np.ndarray] = {}
    if "B16" in cap:
        out["B16"] = cap["B16"] * 0.85 * sun * (1 - 0.7 * clouds / 100)
    if "B19" in cap:
        out["B19"] = cap["B19"] * 0.9 * np.clip((hub_wind / 12) ** 3, 0, 1)
    if "B18" in cap:
        out["B18"] = cap["B18"] * 0.95 * np.clip((hub_wind * 1.3 / 12) ** 3, 0, 1)
    for psr, share in (("B01", 0.65), ("B11", 0.5)):
        if psr in cap:
            out[psr] = np.full(len(starts), cap[psr] * share)
    residual = load_mw(operator, starts, seed) - sum(out.values(), np.zeros(len(starts)))
    for psr in FOSSIL_ORDER:
        if psr in cap:
            minimum = cap[psr] * MUST_RUN[psr]
            out[psr] = np.clip(residual, minimum, cap[psr] * 0.9)
            residual = residual - out[psr]
    if "B10" in cap:
        out["B10"] = np.clip(residual, 0, cap["B10"])
    return {psr: np.round(values, 1) for psr, values in out.items()}


def frequency_hz(starts: pd.DatetimeIndex, seed: int, anchor: datetime | None = None) -> np.ndarray:
    """`grid_frequency` for the given quarter-hours, computed along the path that starts at `anchor`.

    The simulator draws frequency as one AR(1) path from its window start; the fake serves the
    same path when `anchor` is the simulation start. Times before the anchor use a path from
    their own UTC midnight.
    """
    if len(starts) == 0:
        return np.array([])
    values = np.empty(len(starts))
    anchor_ts = pd.Timestamp(anchor).tz_convert("UTC") if anchor is not None else None
    groups: dict[pd.Timestamp, list[int]] = {}
    for i, ts in enumerate(starts):
        origin = anchor_ts if anchor_ts is not None and ts >= anchor_ts else ts.floor("D")
        groups.setdefault(origin, []).append(i)
    for origin, positions in groups.items():
        last = starts[positions[-1]]
        path_index = pd.date_range(origin, last, freq="15min")
        path = grid_frequency(path_index, seed)
        lookup = dict(zip(path_index, path, strict=True))
        for i in positions:
            values[i] = lookup[starts[i]]
    return np.round(values, 4)


#: How far ahead one forecast run reaches (MOSMIX-L: 240 h); the fakes draw every run over it.
FORECAST_RUN_HOURS = 240


def forecast(ts_utc: pd.DatetimeIndex, lat: float, seed: int, issued_at: datetime) -> pd.DataFrame:
    """What the run issued at `issued_at` forecasts for `ts_utc` (hours within the run's reach).

    `simulator.forecast_weather` draws its hourly error along the index it is given, so the fakes
    always draw the whole run, the hours [issued_at, issued_at + FORECAST_RUN_HOURS), and pick
    `ts_utc` from it: every request for the same run answers the same values.
    """
    issued = pd.Timestamp(issued_at).tz_convert("UTC").floor("h")
    run = pd.date_range(issued, periods=FORECAST_RUN_HOURS, freq="h")
    frame = forecast_weather(run, lat, seed, issued.to_pydatetime())
    return frame.reindex(ts_utc)
