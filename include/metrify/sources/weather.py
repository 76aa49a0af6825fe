"""The canonical `weather` contract, the energy demand factor, and landing one source's hour(s).

| field | DWD via Bright Sky (`units=si`) | OpenWeatherMap (`units=metric`) |
|---|---|---|
| city | configured city (`metrify.contracts.geography.CITIES`) | same |
| source | `dwd` | `openweathermap` |
| observed_at | `weather[].timestamp` | `dt` (current) / `data[0].dt` (timemachine) |
| temperature_celsius | `temperature` K − 273.15 | `main.temp` / `temp` |
| humidity_percent | `relative_humidity` | `main.humidity` / `humidity` |
| pressure_hpa | `pressure_msl` Pa / 100 | `main.pressure` / `pressure` |
| wind_speed_ms | `wind_speed` | `wind.speed` / `wind_speed` |
| wind_direction_degrees | `wind_direction` | `wind.deg` / `wind_deg` |
| cloud_cover_percent | `cloud_cover` | `clouds.all` / `clouds` |
| visibility_km | `visibility` m / 1000 | `visibility` m / 1000 |
| energy_demand_factor | `energy_demand_factor` below | same |

Energy demand factor (1.0 = a mild, calm, half-cloudy hour; multiplies expected consumption):

    heating = 0.025 × max(0, 15 °C − T)                 # space heating below 15 °C, +2.5 %/K
    cooling = 0.030 × max(0, T − 24 °C)                 # air conditioning above 24 °C, +3 %/K
    wind    = 0.005 × max(0, v − 5 m/s) if T < 15 °C    # wind chill raises heat loss
    light   = 0.001 × (cloud_cover − 50 %)              # lighting, less PV self-supply when dull
    factor  = round(1 + heating + cooling + wind + light, 3)

Missing inputs count as neutral (T = 15 °C, v = 0, cloud cover 50 %).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from metrify import lake
from metrify.config import load_settings
from metrify.contracts.geography import CITIES, CITY_BY_NAME, City, largest_cities
from metrify.contracts.weather import DATASET, SOURCES, WEATHER_SCHEMA
from metrify.sources import NoDataError, PayloadError, brightsky, openweathermap, publication
from metrify.sources.grid import SourceFailed
from metrify.sources.http import AuthError, Endpoint, HttpClient, HttpError
from metrify.sources.landing import quarantine, raw_path, stamp

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

Records = TypeVar("Records")  # what one city's fetch returns

HOUR = timedelta(hours=1)
LIVE_WINDOW = timedelta(minutes=90)  # an interval ending this recently is polled with "current weather"
#: How late each source publishes an hour (defined in its adapter).
PUBLICATION_DELAYS = {"dwd": brightsky.PUBLICATION_DELAY, "openweathermap": openweathermap.PUBLICATION_DELAY}


class NotAvailable(RuntimeError):
    """The source cannot serve this interval at all (e.g. current-weather API asked about the past)."""


def energy_demand_factor(temperature_celsius: Any, wind_speed_ms: Any, cloud_cover_percent: Any) -> np.ndarray:
    """The documented weather-driven demand multiplier (see module docstring)."""
    t = np.nan_to_num(np.asarray(temperature_celsius, dtype=float), nan=15.0)
    v = np.nan_to_num(np.asarray(wind_speed_ms, dtype=float), nan=0.0)
    c = np.nan_to_num(np.asarray(cloud_cover_percent, dtype=float), nan=50.0)
    heating = 0.025 * np.maximum(0, 15 - t)
    cooling = 0.030 * np.maximum(0, t - 24)
    wind = np.where(t < 15, 0.005 * np.maximum(0, v - 5), 0.0)
    light = 0.001 * (c - 50)
    return np.round(1 + heating + cooling + wind + light, 3)


def configured_cities(spec: str | None = None) -> list[City]:
    """Cities to poll: `METRIFY_WEATHER_CITIES` (comma-separated names, or `largest:N`), else all
    cities of `metrify.contracts.geography`, which hold the ten largest and every city simulated meters live in."""
    spec = spec if spec is not None else load_settings().weather_cities
    spec = spec.strip()
    if not spec:
        return list(CITIES)
    if spec.startswith("largest:"):
        return largest_cities(int(spec.split(":", 1)[1]))
    unknown = [n.strip() for n in spec.split(",") if n.strip() and n.strip() not in CITY_BY_NAME]
    if unknown:
        raise ValueError(f"METRIFY_WEATHER_CITIES names unknown cities {unknown}; known: {sorted(CITY_BY_NAME)}")
    return [CITY_BY_NAME[n.strip()] for n in spec.split(",") if n.strip()]


def hours(start: datetime, end: datetime) -> list[datetime]:
    first = pd.Timestamp(start).tz_convert("UTC").floor("h")
    return [
        t.to_pydatetime() for t in pd.date_range(first, pd.Timestamp(end).tz_convert("UTC"), freq="h", inclusive="left")
    ]


def _fetch_city(
    source: str, client: HttpClient, city: City, start: datetime, end: datetime, now: datetime
) -> dict[datetime, dict[str, Any]]:
    """Records of one city keyed by the hour (interval start) they belong to."""
    if source == "dwd":
        units = str(client.endpoint.extra.get("units", "si"))
        records = brightsky.fetch_hourly(client, city.lat, city.lon, start, end, units=units)
        return {pd.Timestamp(r["observed_at"]).floor("h").to_pydatetime(): r for r in records}
    out: dict[datetime, dict[str, Any]] = {}
    history = str(client.endpoint.extra.get("history", "none"))
    wanted = hours(start, end)
    # "current weather" is one observation: it stands for the latest live hour only (given to
    # two hours, the same observation landed twice); earlier hours come from history
    live = [hour for hour in wanted if hour + HOUR >= now - LIVE_WINDOW and hour <= now]
    for hour in wanted:
        if live and hour == live[-1]:
            out[hour] = openweathermap.fetch_current(client, city.lat, city.lon)
        elif history == "timemachine":
            try:
                out[hour] = openweathermap.fetch_at(client, city.lat, city.lon, hour)
            except NoDataError:
                continue  # no observation for that hour: judged like any missing hour
        elif hour in live:
            continue  # no history configured: judged like any missing hour
        else:
            raise NotAvailable(
                f"OpenWeatherMap's current-weather API cannot serve the past hour {hour.isoformat()}; set "
                f'"history": "timemachine" in connection \'{client.endpoint.conn_id}\' extra (One Call 3.0 '
                f"subscription) to backfill it"
            )
    return out


def poll_cities(
    cities: Sequence[City],
    fetch: Callable[[City], Records],
    quarantine_payload: Callable[[City, PayloadError], Any],
    failures: list[str],
) -> Iterator[tuple[City, Records]]:
    """Each city's answer, one city at a time: a malformed payload is quarantined (its path goes
    into `failures`), a city without data or with an HTTP error is noted in `failures`, and the
    others go on; an auth error stops the poll (no point asking for the other cities)."""
    for city in cities:
        try:
            records = fetch(city)
        except PayloadError as exc:
            failures.append(f"{city.name}: {exc.reason} (quarantined at {quarantine_payload(city, exc)})")
            continue
        except AuthError:
            raise
        except (NoDataError, HttpError) as exc:
            failures.append(f"{city.name}: {exc}")
            continue
        yield city, records


def city_columns(city: City) -> dict[str, str]:
    """The place columns every weather row carries."""
    return {"city": city.name, "region": city.region, "grid_operator": city.tso}


def with_landed_rows(table: pa.Table, path: ObjectStoragePath, cities: Sequence[str]) -> pa.Table:
    """Add the rows an earlier run landed in `path` for `cities` (which have no fresh record this
    time): a re-poll never drops a city's hour it cannot replace."""
    if not cities or not path.exists():
        return table
    with path.open("rb") as handle:
        landed = pq.read_table(handle).select(WEATHER_SCHEMA.names).cast(WEATHER_SCHEMA)
    keep = landed.filter(pc.is_in(landed["city"], value_set=pa.array(list(cities))))
    return pa.concat_tables([table, keep])


def ingest_source(
    source: str,
    start: datetime,
    end: datetime,
    endpoint: Endpoint,
    root: ObjectStoragePath,
    cities: Sequence[City] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Poll one weather source for every city and hour in [start, end); land one file per hour.

    Bright Sky takes the whole window in one request per city. An hour a city has no record for is
    skipped with a log line while it is inside the source's publication delay (a later run's
    trailing re-poll lands it) and is a failure after it. Bad payloads are quarantined per city.
    Failed cities do not stop the others: they land, then the task fails naming the cities, hours
    and connection. An auth error fails at once (no point asking for the other cities).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown weather source {source!r}; expected one of {SOURCES}")
    cities = list(cities or configured_cities())
    now = now or datetime.now(UTC)
    delay = PUBLICATION_DELAYS[source]
    client = HttpClient(endpoint)
    wanted = hours(start, end)
    by_hour: dict[datetime, list[dict[str, Any]]] = {h: [] for h in wanted}
    failures: list[str] = []
    pending: list[str] = []
    advice = "Airflow retries this task"
    polled = poll_cities(
        cities,
        lambda city: _fetch_city(source, client, city, start, end, now),
        lambda city, exc: quarantine(root, DATASET, exc, city.name, start, end),
        failures,
    )
    for city, records in polled:
        for hour, record in records.items():
            if hour in by_hour:
                by_hour[hour].append(
                    {
                        **city_columns(city),
                        "latitude": city.lat,
                        "longitude": city.lon,
                        "source": source,
                        **record,
                    }
                )
        overdue, not_yet = publication.split_due([h for h in wanted if h not in records], HOUR, delay, now)
        if overdue:
            failures.append(
                f"{city.name}: no record for {publication.spans(overdue, HOUR)}, older than the "
                f"{publication.hours_text(delay)} publication delay"
            )
            advice = f"Airflow retries this task; if the hours stay missing, follow {publication.RUNBOOK_SECTION}"
        if not_yet:
            pending.append(f"{city.name} {publication.spans(not_yet, HOUR)}")
    ingested_at = datetime.now(UTC)
    landed = 0
    for hour, rows in by_hour.items():
        if not rows:
            continue
        frame = pd.DataFrame(rows)
        frame["energy_demand_factor"] = energy_demand_factor(
            frame["temperature_celsius"], frame["wind_speed_ms"], frame["cloud_cover_percent"]
        )
        frame["ingested_at"] = ingested_at
        table = pa.Table.from_pandas(frame[WEATHER_SCHEMA.names], schema=WEATHER_SCHEMA, preserve_index=False)
        path = raw_path(root, DATASET, "source", source, hour, stamp(hour))
        fresh = set(frame["city"])
        lake.write_parquet(with_landed_rows(table, path, [c.name for c in cities if c.name not in fresh]), path)
        landed += len(rows)
    window = f"{start.isoformat()}..{end.isoformat()}"
    log.info("%s: landed %d city-hours for %s (%d HTTP calls)", source, landed, window, client.calls)
    if pending:
        log.info(
            "%s: not yet published, skipped (the source publishes up to %s late; the next runs re-poll them): %s",
            source,
            publication.hours_text(delay),
            "; ".join(pending),
        )
    if failures:
        raise SourceFailed(
            f"{source}: {len(failures)} of {len(cities)} cities failed for {window} (the others landed; "
            f"connection '{endpoint.conn_id}'): " + "; ".join(failures) + f". {advice}."
        )
    return {"source": source, "rows": landed, "cities": len(cities), "calls": client.calls}
