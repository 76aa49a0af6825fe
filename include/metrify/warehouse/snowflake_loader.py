"""The Snowflake warehouse (production): COPY INTO from an external stage on the S3 lake.

Each interval is copied (`COPY INTO … MATCH_BY_COLUMN_NAME`) into a transient work table, then
its rows in `raw.<table>` are deleted and re-inserted in one transaction (Snowflake DDL commits
implicitly, so the COPY happens before the transaction opens). Every statement goes through a
DB-API cursor (the Airflow Snowflake hook's connection in production, fakesnow in the tests).

No outside string is pasted into SQL unchecked: dates, hours and values are bind parameters;
what Snowflake cannot bind (object keys in `FILES = (...)`, the stage URL, database, integration
and table names) passes a strict pattern of `metrify.validate` first.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date as Date
from typing import TYPE_CHECKING, Any

from metrify import redaction, validate
from metrify.warehouse.catalog import (
    RAW_SCHEMA_NAME,
    REGISTRY_COLUMNS,
    REGISTRY_TABLE,
    SNOWFLAKE,
    SOURCES,
    TYPES,
    VERDICT_COLUMNS,
    VERDICTS_TABLE,
    Interval,
    LoadResult,
    Source,
    SyncReport,
    create_table_sql,
    partitions,
)

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import ObjectStoragePath

#: One statement and its bind parameters (None: no parameters).
Statement = tuple[str, tuple[Any, ...] | None]


@contextmanager
def snowflake_cursor(conn_id: str) -> Iterator[Any]:
    """A cursor on the Snowflake connection `conn_id` (Airflow's hook, key-pair auth); the
    connection's key and password are registered with the masker first, so they reach no log."""
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

    redaction.register_connection(conn_id)
    with SnowflakeHook(snowflake_conn_id=conn_id).get_conn() as conn:
        yield conn.cursor()


def _schema(database: str | None) -> str:
    return f"{validate.identifier(database, 'database')}.{RAW_SCHEMA_NAME}" if database else RAW_SCHEMA_NAME


def snowflake_setup_sql(
    stage_url: str, storage_integration: str | None = None, database: str | None = None
) -> list[str]:
    """DDL for the raw schema, its tables and the external stage over the lake."""
    schema = _schema(database)
    url = validate.stage_url(stage_url.rstrip("/"), "stage URL")
    integration = validate.identifier(storage_integration, "storage integration") if storage_integration else None
    stage_opts = f" STORAGE_INTEGRATION = {integration}" if integration else ""
    statements = [
        f"CREATE SCHEMA IF NOT EXISTS {schema}",
        f"CREATE STAGE IF NOT EXISTS {schema}.lake_stage URL = '{url}/'{stage_opts}",
    ]
    for source in SOURCES.values():
        statements.append(create_table_sql(source.table, source.all_columns, SNOWFLAKE, schema))
    for table, columns in ((REGISTRY_TABLE, REGISTRY_COLUMNS), (VERDICTS_TABLE, VERDICT_COLUMNS)):
        statements.append(create_table_sql(table, (*columns, ("_loaded_at", "ts")), SNOWFLAKE, schema))
    return statements


def snowflake_load_sql(
    source: Source, interval: Interval, relative_files: Sequence[str], database: str | None = None
) -> tuple[list[Statement], list[Statement]]:
    """(statements before the transaction, statements inside it, then a cleanup) for one interval.

    `relative_files` are object keys relative to the lake root (= the stage URL); each must pass
    `validate.object_key` (Snowflake binds no values inside `FILES = (...)`).
    """
    schema = _schema(database)
    table = f"{schema}.{source.table}"
    keys = [validate.object_key(f, "object key") for f in relative_files]
    # a transient work table per interval (parallel loads of different intervals never meet)
    slot = "d" if interval.hour is None else f"{interval.hour:02d}"
    tmp = f"{schema}._load_{source.table}_{interval.day:%Y%m%d}_{slot}"
    cols = ", ".join(name.upper() for name, _ in source.columns)
    day = f"{interval.day:%Y-%m-%d}"
    where_params: tuple[Any, ...]
    if interval.hour is None:
        where, where_params, hour_sql = "_INTERVAL_DATE = %s::DATE AND _INTERVAL_HOUR IS NULL", (day,), "NULL"
        insert_params: tuple[Any, ...] = (day,)
    else:
        where, where_params, hour_sql = "_INTERVAL_DATE = %s::DATE AND _INTERVAL_HOUR = %s", (day, interval.hour), "%s"
        insert_params = (day, interval.hour)
    before: list[Statement] = [
        (
            f"CREATE OR REPLACE TRANSIENT TABLE {tmp} "
            f"({', '.join(f'{n.upper()} {TYPES[k][SNOWFLAKE]}' for n, k in source.columns)})",
            None,
        )
    ]
    for chunk_start in range(0, len(keys), 1000):  # COPY takes at most 1,000 FILES
        listed = ", ".join(f"'{key}'" for key in keys[chunk_start : chunk_start + 1000])
        before.append(
            (
                f"COPY INTO {tmp} FROM @{schema}.lake_stage FILES = ({listed}) "
                "FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE FORCE = TRUE",
                None,
            )
        )
    inside: list[Statement] = [
        (f"DELETE FROM {table} WHERE {where}", where_params),
        (
            f"INSERT INTO {table} ({cols}, _INTERVAL_DATE, _INTERVAL_HOUR, _SOURCE_FILE, _LOADED_AT) "
            f"SELECT {cols}, %s::DATE, {hour_sql}, NULL, CURRENT_TIMESTAMP()::TIMESTAMP_NTZ FROM {tmp}",
            insert_params,
        ),
    ]
    return before, inside + [(f"DROP TABLE IF EXISTS {tmp}", None)]


def load_interval_snowflake(
    cursor: Any, source: Source, interval: Interval, relative_files: Sequence[str], database: str | None = None
) -> LoadResult:
    """Replace one interval in Snowflake through a DB-API cursor (snowflake-connector / hook)."""
    started = time.perf_counter()
    before, inside = snowflake_load_sql(source, interval, relative_files, database)
    for statement, params in before:
        cursor.execute(statement, params)
    cursor.execute("BEGIN")
    try:
        rows = 0
        for statement, params in inside[:-1]:
            cursor.execute(statement, params)
            rows = cursor.rowcount or 0  # the INSERT's row count
        cursor.execute("COMMIT")
        cursor.execute(*inside[-1])
    except Exception as exc:
        cursor.execute("ROLLBACK")
        raise RuntimeError(f"loading {source.layer}/{source.dataset}/{interval} into Snowflake failed: {exc}") from exc
    return LoadResult(source.table, str(interval), len(relative_files), rows, time.perf_counter() - started)


def sync_snowflake(
    cursor: Any,
    root: ObjectStoragePath,
    tables: Iterable[str] | None = None,
    days: Iterable[Date] | None = None,
    database: str | None = None,
) -> SyncReport:
    """Load every interval of the lake (or of `days`) into Snowflake; each load replaces its interval."""
    report = SyncReport()
    base = root.path.rstrip("/") + "/"
    for name in tables or SOURCES:
        source = SOURCES[name]
        for interval, files in partitions(source, root, days=days).items():
            relative = [f.removeprefix(base) if f.startswith(base) else f.split(base.lstrip("/"), 1)[-1] for f in files]
            report.loaded.append(load_interval_snowflake(cursor, source, interval, relative, database))
    return report


def replace_table_snowflake(
    cursor: Any, table_name: str, columns: Sequence[tuple[str, str]], frame: pd.DataFrame, database: str | None = None
) -> int:
    """Replace every row of `raw.<table_name>` with `frame`'s `columns`, in one transaction
    (bind parameters only)."""
    table = f"{_schema(database)}.{validate.name(table_name, 'table')}"
    names = [n for n, _ in columns]
    records = [
        tuple(_bindable(v, kind) for v, (_, kind) in zip(row, columns, strict=True))
        for row in frame[names].itertuples(index=False)
    ]
    cursor.execute("BEGIN")
    cursor.execute(f"DELETE FROM {table}")
    if records:
        placeholders = ", ".join(["%s"] * len(names))
        cursor.executemany(
            f"INSERT INTO {table} ({', '.join(n.upper() for n in names)}) VALUES ({placeholders})", records
        )
    cursor.execute(f"UPDATE {table} SET _LOADED_AT = CURRENT_TIMESTAMP()::TIMESTAMP_NTZ")
    cursor.execute("COMMIT")
    return len(records)


def load_registry_snowflake(cursor: Any, frame: pd.DataFrame, database: str | None = None) -> int:
    """Replace `raw.meter_registry` with the operational registry's rows."""
    return replace_table_snowflake(cursor, REGISTRY_TABLE, REGISTRY_COLUMNS, frame, database)


def load_verdicts_snowflake(cursor: Any, frame: pd.DataFrame, database: str | None = None) -> int:
    """Replace `raw.quality_verdicts` with the gate's verdicts (one row per judged interval)."""
    return replace_table_snowflake(cursor, VERDICTS_TABLE, VERDICT_COLUMNS, frame, database)


def _bindable(value: Any, kind: str) -> Any:
    """A value as the Snowflake connector binds it for a column of logical type `kind`."""
    if _isnull(value):
        return None
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "ts":
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    return str(value)


def _isnull(value: Any) -> bool:
    try:
        return value is None or value != value  # NaN
    except (TypeError, ValueError):
        return False
