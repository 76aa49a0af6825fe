"""Reconciliation of the warehouse facts with the lake, hour by hour, in count and kWh.

Only the facts' MEASURED part (`reading_count`, `consumption_kwh`) is compared with validated/:
substitute values (`substituted_kwh`, `substituted_quarter_hours`) are not readings, and one that
leaked into the measured columns shows up here as a mismatch. An hour of substitutes only has
no readings on either side."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date as Date
from typing import TYPE_CHECKING, Any

from metrify import lake
from metrify.config import Settings, load_settings
from metrify.warehouse.catalog import SOURCES, partitions
from metrify.warehouse.duckdb_loader import duckdb_session

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import ObjectStoragePath


def lake_hourly_totals(root: ObjectStoragePath | None = None, days: Iterable[Date] | None = None) -> pd.DataFrame:
    """Validated readings and their kWh per UTC hour (interval start), counted straight from the
    lake's validated/ Parquet files as they are (one reading of record per reading: a second
    copy there would be counted and show up as a mismatch)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = root if root is not None else lake.lake_root()
    tables = []
    for files in partitions(SOURCES["meter_readings"], root, days=days).values():
        for path in files:
            with root.fs.open(path, "rb") as handle:
                tables.append(pq.read_table(handle, columns=["meter_id", "reading_ts", "consumption_kwh"]))
    if not tables:
        return pd.DataFrame(columns=["readings", "consumption_kwh"])
    frame = pa.concat_tables(tables, promote_options="default").to_pandas()
    hour = (pd.to_datetime(frame["reading_ts"], utc=True) - pd.Timedelta(minutes=15)).dt.floor("h")
    return frame.groupby(hour.dt.tz_localize(None).rename("hour_start")).agg(
        readings=("meter_id", "size"), consumption_kwh=("consumption_kwh", "sum")
    )


def reconcile(settings: Settings | None = None, tolerance_kwh: float = 1e-6) -> list[dict[str, Any]]:
    """Hours where the DuckDB fact's measured part disagrees with validated/ (count or kWh);
    empty when they agree."""
    settings = settings or load_settings()
    lake_totals = lake_hourly_totals(lake.lake_root(settings))
    with duckdb_session(None, settings) as db:
        fact = (
            db.execute(
                "SELECT hour_start, sum(reading_count) AS readings, sum(consumption_kwh) AS consumption_kwh "
                "FROM marts.fct_meter_readings_hourly GROUP BY hour_start"
            )
            .df()
            .set_index("hour_start")
        )
    return compare_hourly(lake_totals, fact, tolerance_kwh)


def compare_hourly(lake_totals: pd.DataFrame, fact: pd.DataFrame, tolerance_kwh: float = 1e-6) -> list[dict[str, Any]]:
    """Hours where `fact` (readings, consumption_kwh per hour_start) disagrees with the lake's
    totals, whichever engine the fact was read from; empty when they agree."""
    mismatches = []
    for hour in sorted(set(lake_totals.index) | set(fact.index)):
        lake_row = lake_totals.loc[hour] if hour in lake_totals.index else None
        fact_row = fact.loc[hour] if hour in fact.index else None
        lake_n = int(lake_row["readings"]) if lake_row is not None else 0
        fact_n = int(fact_row["readings"]) if fact_row is not None else 0
        lake_kwh = float(lake_row["consumption_kwh"]) if lake_row is not None else 0.0
        fact_kwh = float(fact_row["consumption_kwh"]) if fact_row is not None else 0.0
        if lake_n != fact_n or abs(lake_kwh - fact_kwh) > tolerance_kwh:
            mismatches.append(
                {
                    "hour_start": str(hour),
                    "lake_readings": lake_n,
                    "fact_readings": fact_n,
                    "lake_kwh": lake_kwh,
                    "fact_kwh": fact_kwh,
                }
            )
    return mismatches
