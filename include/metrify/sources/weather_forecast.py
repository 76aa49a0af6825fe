"""Weather forecasts polled into the lake: DWD's MOSMIX (through Bright Sky) and OpenWeatherMap's
5 day / 3 hour forecast, normalized to `metrify.contracts.forecast.WEATHER_FORECAST_SCHEMA`.

**Issue time.** DWD computes MOSMIX-L four times a day, from the 03, 09, 15 and 21 UTC runs
(`ISSUE_HOURS`), and publishes each about 1-2 h later; Bright Sky picks new files up within
minutes. Neither API says which run an answer comes from, so a poll at `as_of` attributes its
values to the newest run that is out by then: the latest `ISSUE_HOURS` run at least
`AVAILABLE_AFTER` (2 h) before `as_of` (`latest_run`). OpenWeatherMap updates its forecast
more often but states no run time either; it gets the same attribution, so both sources of one
poll share `issued_at` and compare like with like.

**Landing.** One file per source and run, every city in it:

    raw/weather_forecast/source=<dwd|openweathermap>/date=<issue date>/hour=<issue hour>/<YYYYMMDDTHH00>.parquet

Re-polling the same run overwrites the same file (idempotent); a city that fails this time
keeps the rows an earlier poll of the same run landed for it. DWD is asked for the hours
[`issued_at`, `issued_at` + `HORIZON`) (72 h: the next local day in full, from any run);
OpenWeatherMap answers its whole 5-day list (40 steps of 3 h), all of which land.

**Failures** behave like the observations': a malformed payload is quarantined under
`quarantine/weather_forecast/` with its reason, a city without forecast records fails, the other
cities land, then the task fails naming source, cities and connection; HTTP 401/403 fails at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from metrify import lake
from metrify.contracts.forecast import WEATHER_FORECAST_DATASET, WEATHER_FORECAST_SCHEMA
from metrify.contracts.geography import City
from metrify.contracts.weather import SOURCES
from metrify.sources import brightsky, openweathermap
from metrify.sources.grid import SourceFailed
from metrify.sources.http import Endpoint, HttpClient
from metrify.sources.landing import quarantine, raw_path, stamp
from metrify.sources.weather import city_columns, configured_cities, poll_cities

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

#: MOSMIX-L runs (UTC hours) and how long after its run a forecast is available.
ISSUE_HOURS = (3, 9, 15, 21)
AVAILABLE_AFTER = timedelta(hours=2)
#: How far past its issue time a DWD forecast is polled (covers the next local day from any run).
HORIZON = timedelta(hours=72)


def latest_run(as_of: datetime) -> datetime:
    """The newest forecast run (`ISSUE_HOURS`, UTC) available at `as_of` (`AVAILABLE_AFTER` later)."""
    ready = pd.Timestamp(as_of).tz_convert("UTC") - AVAILABLE_AFTER
    day = ready.normalize()
    for offset in (0, 1):
        base = day - pd.Timedelta(days=offset)
        runs = [base + pd.Timedelta(hours=h) for h in ISSUE_HOURS if base + pd.Timedelta(hours=h) <= ready]
        if runs:
            return runs[-1].to_pydatetime()
    raise AssertionError("unreachable: a run exists every day")


def fetch_city(source: str, client: HttpClient, city: City, issued_at: datetime) -> list[dict[str, Any]]:
    """Forecast records (valid_at + values) for one city from the run issued at `issued_at`."""
    if source == "dwd":
        units = str(client.endpoint.extra.get("units", "si"))
        return brightsky.fetch_forecast(client, city.lat, city.lon, issued_at, issued_at + HORIZON, units=units)
    return openweathermap.fetch_forecast(client, city.lat, city.lon)


def _keep_landed(table: pa.Table, path: ObjectStoragePath, cities: Sequence[str]) -> pa.Table:
    """Add the rows an earlier poll of the same run landed for `cities` (none fresh this time)."""
    if not cities or not path.exists():
        return table
    with path.open("rb") as handle:
        landed = pq.read_table(handle).select(WEATHER_FORECAST_SCHEMA.names).cast(WEATHER_FORECAST_SCHEMA)
    return pa.concat_tables([table, landed.filter(pc.is_in(landed["city"], value_set=pa.array(list(cities))))])


def forecast_path(root: ObjectStoragePath, source: str, issued_at: datetime) -> ObjectStoragePath:
    """Where one source's forecast run lands (see module docstring)."""
    return raw_path(root, WEATHER_FORECAST_DATASET, "source", source, issued_at, stamp(issued_at))


def ingest_forecast(
    source: str,
    as_of: datetime,
    endpoint: Endpoint,
    root: ObjectStoragePath,
    cities: Sequence[City] | None = None,
) -> dict[str, Any]:
    """Poll one source's newest forecast run at `as_of` for every city and land it in one file."""
    if source not in SOURCES:
        raise ValueError(f"unknown weather source {source!r}; expected one of {SOURCES}")
    cities = list(cities or configured_cities())
    issued_at = latest_run(as_of)
    client = HttpClient(endpoint)
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    polled = poll_cities(
        cities,
        lambda city: fetch_city(source, client, city, issued_at),
        lambda city, exc: quarantine(root, WEATHER_FORECAST_DATASET, exc, city.name, issued_at, issued_at + HORIZON),
        failures,
    )
    for city, records in polled:
        ahead = [r for r in records if r["valid_at"] >= issued_at]
        if not ahead:
            failures.append(f"{city.name}: the answer holds no forecast from {issued_at.isoformat()} on")
            continue
        for record in ahead:
            rows.append(
                {
                    **city_columns(city),
                    "source": source,
                    "issued_at": issued_at,
                    "lead_hours": round((record["valid_at"] - issued_at).total_seconds() / 3600),
                    **{k: record[k] for k in ("valid_at", "temperature_celsius", "humidity_percent")},
                    "wind_speed_ms": record["wind_speed_ms"],
                    "cloud_cover_percent": record["cloud_cover_percent"],
                }
            )
    path = forecast_path(root, source, issued_at)
    if rows:
        frame = pd.DataFrame(rows)
        frame["ingested_at"] = datetime.now(UTC)
        table = pa.Table.from_pandas(
            frame[WEATHER_FORECAST_SCHEMA.names], schema=WEATHER_FORECAST_SCHEMA, preserve_index=False
        )
        fresh = set(frame["city"])
        lake.write_parquet(_keep_landed(table, path, [c.name for c in cities if c.name not in fresh]), path)
    log.info(
        "%s: landed %d forecast rows of the run issued %s for %d cities at %s (%d HTTP calls)",
        source,
        len(rows),
        issued_at.isoformat(),
        len(cities) - len(failures),
        path,
        client.calls,
    )
    if failures:
        raise SourceFailed(
            f"{source} forecast issued {issued_at.isoformat()}: {len(failures)} of {len(cities)} cities failed "
            f"(the others landed; connection '{endpoint.conn_id}'): " + "; ".join(failures) + ". Airflow retries "
            "this task; a quarantined payload means the provider changed its format: see the adapter's docstring."
        )
    return {"source": source, "issued_at": issued_at.isoformat(), "rows": len(rows), "cities": len(cities)}
