"""What the warehouse loads from the lake: its sources, their columns, and the lake intervals.

The warehouse reads what the quality gate let through and nothing else: meter readings, grid
status and weather from `validated/` (an interval the gate blocked has no file there), anomaly
findings from `anomalies/`, flagged substitute values from `substituted/` (kept apart from the
measured readings all the way to the metrics), and the day-ahead load forecast from
`forecast/load_forecast/` (aggregates per region and control area, no meter ids). An *interval*
is one lake partition: `date=YYYY-MM-DD/hour=HH` for meter readings (the gate judges hours),
`date=YYYY-MM-DD` for grid status, weather, anomalies and substitutes (whose date is the
business day), and the forecast's target local day for the load forecast.
Loading an interval replaces it (`duckdb_loader`, `snowflake_loader`), so loading twice (or a
month later) gives the same rows. Column names come from the contracts; each is loaded with a
logical type that maps to DuckDB and Snowflake (`TYPES`). Timestamps are stored as UTC without
a zone (`TIMESTAMP` / `TIMESTAMP_NTZ`); dbt derives Europe/Berlin business days from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date as Date
from typing import TYPE_CHECKING

import pyarrow as pa

from metrify import lake, validate
from metrify.contracts import anomalies, forecast, grid, readings, registry, substitutes, verdicts, weather

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

RAW_SCHEMA_NAME = "raw"
REGISTRY_TABLE = registry.TABLE
META_COLUMNS = (("_interval_date", "date"), ("_interval_hour", "int"), ("_source_file", "text"), ("_loaded_at", "ts"))

# logical type -> (DuckDB, Snowflake)
TYPES = {
    "text": ("VARCHAR", "VARCHAR"),
    "float": ("DOUBLE", "FLOAT"),
    "int": ("INTEGER", "NUMBER(10,0)"),
    "ts": ("TIMESTAMP", "TIMESTAMP_NTZ"),
    "date": ("DATE", "DATE"),
    "bool": ("BOOLEAN", "BOOLEAN"),
}
DUCKDB, SNOWFLAKE = 0, 1  # index into TYPES


def logical_type(arrow_type: pa.DataType) -> str:
    """The warehouse's logical type of an Arrow column type."""
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "text"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_timestamp(arrow_type):
        return "ts"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    raise TypeError(f"no warehouse type for Arrow type {arrow_type}")


def columns_of(schema: pa.Schema, names: Iterable[str] | None = None) -> tuple[tuple[str, str], ...]:
    """(name, logical type) of `names` (default: every field) as the contract's schema types them."""
    return tuple((name, logical_type(schema.field(name).type)) for name in (names or schema.names))


@dataclass(frozen=True)
class Source:
    """A lake dataset the warehouse loads into `raw.<table>`."""

    table: str
    layer: str
    dataset: str
    columns: tuple[tuple[str, str], ...]
    ts_column: str
    hourly: bool = True

    def lake_dir(self, root: ObjectStoragePath) -> ObjectStoragePath:
        return root / self.layer / self.dataset

    @property
    def all_columns(self) -> tuple[tuple[str, str], ...]:
        return self.columns + META_COLUMNS


METER_READING_COLUMNS = (
    *readings.PAYLOAD_SCHEMA.names,
    "topic",
    "kafka_ts",
    "ingested_at",
    "delivered_copies",
    "corrected",
)
SOURCES: dict[str, Source] = {
    s.table: s
    for s in (
        Source(
            "meter_readings",
            "validated",
            readings.DATASET,
            columns_of(readings.VALIDATED_SCHEMA, METER_READING_COLUMNS),
            ts_column="reading_ts",
        ),
        Source(
            "grid_status",
            "validated",
            grid.DATASET,
            columns_of(grid.GRID_SCHEMA, grid.CONTRACT_COLUMNS),
            ts_column=grid.TIME_COLUMN,
            hourly=False,
        ),
        Source(
            "weather",
            "validated",
            weather.DATASET,
            columns_of(weather.WEATHER_SCHEMA, weather.CONTRACT_COLUMNS),
            ts_column=weather.TIME_COLUMN,
            hourly=False,
        ),
        Source(
            "meter_anomalies",
            "anomalies",
            readings.DATASET,
            columns_of(anomalies.METER_ANOMALY_SCHEMA),
            ts_column="reading_ts",
            hourly=False,
        ),
        Source(
            forecast.LOAD_FORECAST_WAREHOUSE_TABLE,
            forecast.LOAD_FORECAST_LAYER,
            forecast.LOAD_FORECAST_DATASET,
            columns_of(forecast.LOAD_FORECAST_SCHEMA),
            ts_column="interval_start",
            hourly=False,
        ),
        # substitute values of missing quarter-hours, one partition per business day (warehouse_daily)
        Source(
            "substituted_readings",
            substitutes.LAYER,
            substitutes.DATASET,
            columns_of(substitutes.SUBSTITUTE_SCHEMA),
            ts_column="reading_ts",
            hourly=False,
        ),
    )
}
REGISTRY_COLUMNS = columns_of(registry.REGISTRY_SCHEMA)
VERDICTS_TABLE = "quality_verdicts"
VERDICT_COLUMNS = columns_of(verdicts.VERDICT_SCHEMA)

_PART_RE = re.compile(r"date=(\d{4}-\d{2}-\d{2})(?:/hour=(\d{2}))?/[^/]+\.parquet$")


@dataclass(frozen=True, order=True)
class Interval:
    """One lake partition: a UTC date and (for hourly datasets) an hour."""

    day: Date
    hour: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.day, Date):
            raise ValueError(f"interval day must be a date; got {self.day!r}")
        if self.hour is not None:
            validate.hour(self.hour, "interval hour")

    def __str__(self) -> str:
        return f"date={self.day:%Y-%m-%d}" + ("" if self.hour is None else f"/hour={self.hour:02d}")

    @classmethod
    def parse(cls, text: str) -> Interval:
        """`date=YYYY-MM-DD[/hour=HH]` (the lake partition path) -> Interval."""
        match = re.fullmatch(r"date=(\d{4}-\d{2}-\d{2})(?:/hour=(\d{1,2}))?", text.strip().strip("/"))
        if not match:
            raise ValueError(f"not an interval: {text!r} (expected date=YYYY-MM-DD or date=YYYY-MM-DD/hour=HH)")
        return cls(Date.fromisoformat(match.group(1)), int(match.group(2)) if match.group(2) else None)


@dataclass
class LoadResult:
    table: str
    interval: str
    files: int
    rows: int
    seconds: float


@dataclass
class SyncReport:
    loaded: list[LoadResult] = field(default_factory=list)
    unchanged: int = 0

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.loaded)


def create_table_sql(table: str, columns: Sequence[tuple[str, str]], engine: int, schema: str) -> str:
    """`CREATE TABLE IF NOT EXISTS` for DuckDB (`engine=DUCKDB`) or Snowflake (upper-case names)."""
    cols = ", ".join(
        f'"{name.upper() if engine == SNOWFLAKE else name}" {TYPES[kind][engine]}' for name, kind in columns
    )
    return f"CREATE TABLE IF NOT EXISTS {schema}.{table} ({cols})"


def partitions(
    source: Source, root: ObjectStoragePath | None = None, days: Iterable[Date] | None = None
) -> dict[Interval, list[str]]:
    """Every interval of `source` in the lake with its Parquet files (paths as the fs sees them)."""
    root = root if root is not None else lake.lake_root()
    base = source.lake_dir(root)
    found: dict[Interval, list[str]] = {}
    wanted = set(days) if days is not None else None
    for path in lake.list_files(base):
        match = _PART_RE.search(path)
        if not match:
            raise ValueError(
                f"unexpected file in the lake under {base}: {path} (expected "
                f"date=YYYY-MM-DD{'/hour=HH' if source.hourly else ''}/<name>.parquet)"
            )
        day = Date.fromisoformat(match.group(1))
        if wanted is not None and day not in wanted:
            continue
        hour = int(match.group(2)) if source.hourly and match.group(2) else None
        found.setdefault(Interval(day, hour), []).append(path)
    return {k: sorted(v) for k, v in sorted(found.items())}
