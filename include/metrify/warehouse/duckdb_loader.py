"""The DuckDB warehouse (embedded): each lake interval loaded with `read_parquet`, replaced atomically.

Loading an interval deletes its rows in `raw.<table>` and inserts the partition's Parquet files
in one transaction, and records the files' fingerprint in `raw._load_log`, so `sync` loads only
what changed (new, rewritten or removed files). Columns a file lacks load as NULL and extra file
columns are ignored, as Snowflake's `MATCH_BY_COLUMN_NAME` does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date as Date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metrify import lake, validate
from metrify.config import Settings, load_settings
from metrify.warehouse.catalog import (
    DUCKDB,
    RAW_SCHEMA_NAME,
    REGISTRY_COLUMNS,
    REGISTRY_TABLE,
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
    import duckdb
    import pandas as pd
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)


def connect_duckdb(path: Path | str | None = None) -> duckdb.DuckDBPyConnection:
    import duckdb

    path = Path(path) if path else load_settings().warehouse_path
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(str(path))
    conn.execute("SET TimeZone = 'UTC'")
    return conn


@contextmanager
def duckdb_session(
    conn: duckdb.DuckDBPyConnection | None = None, settings: Settings | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """`conn` if given, else a connection to the settings' warehouse file, closed afterwards."""
    if conn is not None:
        yield conn
        return
    own = connect_duckdb((settings or load_settings()).warehouse_path)
    try:
        yield own
    finally:
        own.close()


def scalar(conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    """The first column of the first row of a query (None when it returns no row)."""
    row = conn.execute(sql, params or []).fetchone()
    return None if row is None else row[0]


def ensure_duckdb_tables(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA_NAME}")
    for source in SOURCES.values():
        conn.execute(create_table_sql(source.table, source.all_columns, DUCKDB, RAW_SCHEMA_NAME))
    for table, columns in ((REGISTRY_TABLE, REGISTRY_COLUMNS), (VERDICTS_TABLE, VERDICT_COLUMNS)):
        conn.execute(create_table_sql(table, (*columns, ("_loaded_at", "ts")), DUCKDB, RAW_SCHEMA_NAME))
    conn.execute(f"""CREATE TABLE IF NOT EXISTS {RAW_SCHEMA_NAME}._load_log (
        source VARCHAR, interval_date DATE, interval_hour INTEGER, fingerprint VARCHAR,
        files INTEGER, rows BIGINT, loaded_at TIMESTAMP)""")


def _select_list(source: Source, available: set[str]) -> str:
    """The SELECT list reading `source.columns` from files that have the `available` columns."""
    exprs = []
    for name, kind in source.columns:
        if name not in available:
            exprs.append(f'CAST(NULL AS {TYPES[kind][DUCKDB]}) AS "{name}"')
        elif kind == "ts":
            # tz-aware Parquet timestamps become naive UTC; naive ones are taken as UTC
            exprs.append(f'CAST("{name}" AS TIMESTAMP) AS "{name}"')
        else:
            exprs.append(f'CAST("{name}" AS {TYPES[kind][DUCKDB]}) AS "{name}"')
    return ", ".join(exprs)


def _duckdb_relation(
    conn: duckdb.DuckDBPyConnection, root: ObjectStoragePath, files: Sequence[str]
) -> tuple[str, list[Any]]:
    """SQL (and parameters) reading the files: read_parquet locally, Arrow for object stores."""
    if lake.is_local(root):
        return "read_parquet(?, union_by_name = true, filename = true, hive_partitioning = false)", [list(files)]
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in files:
        with root.fs.open(path, "rb") as handle:
            table = pq.read_table(handle)
        tables.append(table.append_column("filename", pa.array([path] * table.num_rows, pa.string())))
    conn.register("_metrify_load", pa.concat_tables(tables, promote_options="default"))
    return "_metrify_load", []


def load_interval_duckdb(
    conn: duckdb.DuckDBPyConnection,
    source: Source,
    interval: Interval,
    files: Sequence[str],
    root: ObjectStoragePath,
    files_fingerprint: str = "",
) -> LoadResult:
    """Replace one interval of `raw.<source>` with the given files, atomically."""
    started = time.perf_counter()
    table = f"{RAW_SCHEMA_NAME}.{source.table}"
    where = "_interval_date = ? AND _interval_hour IS NOT DISTINCT FROM ?"
    bound = [interval.day, interval.hour]
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(f"DELETE FROM {table} WHERE {where}", bound)
        rows = 0
        if files:
            relation, params = _duckdb_relation(conn, root, files)
            available = {r[0] for r in conn.execute(f"DESCRIBE SELECT * FROM {relation}", params).fetchall()}
            conn.execute(
                f"INSERT INTO {table} SELECT {_select_list(source, available)}, "
                f"CAST(? AS DATE), CAST(? AS INTEGER), filename, now()::TIMESTAMP FROM {relation}",
                [*bound, *params],
            )
            rows = scalar(conn, f"SELECT count(*) FROM {table} WHERE {where}", bound)
        conn.execute(
            "DELETE FROM raw._load_log WHERE source = ? AND interval_date = ? AND interval_hour IS NOT DISTINCT FROM ?",
            [source.table, interval.day, interval.hour],
        )
        conn.execute(
            "INSERT INTO raw._load_log VALUES (?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
            [source.table, interval.day, interval.hour, files_fingerprint, len(files), rows],
        )
        conn.execute("COMMIT")
    except Exception as exc:
        conn.execute("ROLLBACK")
        raise RuntimeError(
            f"loading {source.layer}/{source.dataset}/{interval} into {table} failed "
            f"({len(files)} files, first {files[:1]}): {exc}"
        ) from exc
    finally:
        try:
            conn.unregister("_metrify_load")
        except Exception:
            pass
    return LoadResult(source.table, str(interval), len(files), rows, time.perf_counter() - started)


def load_interval(
    table: str,
    day: Date | str,
    hour: int | None = None,
    *,
    settings: Settings | None = None,
    root: ObjectStoragePath | None = None,
    conn: duckdb.DuckDBPyConnection | None = None,
) -> LoadResult:
    """Load (replace) one interval of a lake dataset into the DuckDB warehouse."""
    source = SOURCES[table]
    day = Date.fromisoformat(day) if isinstance(day, str) else day
    root = root if root is not None else lake.lake_root(settings)
    interval = Interval(day, hour if source.hourly else None)
    files = partitions(source, root, days=[day]).get(interval, [])
    with duckdb_session(conn, settings) as db:
        ensure_duckdb_tables(db)
        return load_interval_duckdb(db, source, interval, files, root, lake.fingerprint(root, list(files)))


def sync(
    tables: Iterable[str] | None = None,
    *,
    settings: Settings | None = None,
    root: ObjectStoragePath | None = None,
    days: Iterable[Date] | None = None,
    intervals: dict[str, Iterable[Interval]] | None = None,
    conn: duckdb.DuckDBPyConnection | None = None,
) -> SyncReport:
    """Load every interval whose files changed since it was last loaded (new, rewritten or gone).

    `intervals` restricts a table to the given intervals (e.g. the ones the quality gate
    validated). Work grows with the new data, not with the history: unchanged intervals cost
    one listing.
    """
    root = root if root is not None else lake.lake_root(settings)
    days = None if days is None else set(days)
    only = {name: set(values) for name, values in (intervals or {}).items()}
    report = SyncReport()
    with duckdb_session(conn, settings) as db:
        ensure_duckdb_tables(db)
        for name in tables or SOURCES:
            source = SOURCES[name]
            known = {
                (d, h): fp
                for d, h, fp in db.execute(
                    "SELECT interval_date, interval_hour, fingerprint FROM raw._load_log WHERE source = ?",
                    [source.table],
                ).fetchall()
                if days is None or d in days
            }
            present = partitions(source, root, days=days)
            if name in only:
                present = {k: v for k, v in present.items() if k in only[name]}
                known = {k: v for k, v in known.items() if Interval(*k) in only[name]}
            for interval, files in present.items():
                current = lake.fingerprint(root, list(files))
                if known.pop((interval.day, interval.hour), None) == current:
                    report.unchanged += 1
                    continue
                report.loaded.append(load_interval_duckdb(db, source, interval, files, root, current))
            for day, hour in known:  # intervals whose files were removed from the lake
                report.loaded.append(load_interval_duckdb(db, source, Interval(day, hour), [], root, ""))
    for result in report.loaded:
        log.info(
            "loaded %s %s: %d files, %d rows in %.2fs",
            result.table,
            result.interval,
            result.files,
            result.rows,
            result.seconds,
        )
    return report


def replace_table(
    table: str,
    columns: Sequence[tuple[str, str]],
    frame: pd.DataFrame,
    conn: duckdb.DuckDBPyConnection | None = None,
    settings: Settings | None = None,
) -> int:
    """Replace every row of `raw.<table>` with `frame`'s `columns`, in one transaction."""
    validate.name(table, "table")
    data = frame[[n for n, _ in columns]].copy()
    with duckdb_session(conn, settings) as db:
        ensure_duckdb_tables(db)
        db.register("_replacement", data)
        casts = ", ".join(f'CAST("{n}" AS {TYPES[k][DUCKDB]})' for n, k in columns)
        db.execute("BEGIN TRANSACTION")
        try:
            db.execute(f"DELETE FROM {RAW_SCHEMA_NAME}.{table}")
            db.execute(f"INSERT INTO {RAW_SCHEMA_NAME}.{table} SELECT {casts}, now()::TIMESTAMP FROM _replacement")
            db.execute("COMMIT")
        except Exception:
            db.execute("ROLLBACK")
            raise
        finally:
            db.unregister("_replacement")
    return len(data)


def load_registry_duckdb(
    frame: pd.DataFrame, conn: duckdb.DuckDBPyConnection | None = None, settings: Settings | None = None
) -> int:
    """Replace `raw.meter_registry` with the operational registry's rows."""
    return replace_table(REGISTRY_TABLE, REGISTRY_COLUMNS, frame, conn, settings)


def load_verdicts_duckdb(
    frame: pd.DataFrame, conn: duckdb.DuckDBPyConnection | None = None, settings: Settings | None = None
) -> int:
    """Replace `raw.quality_verdicts` with the gate's verdicts (one row per judged interval)."""
    return replace_table(VERDICTS_TABLE, VERDICT_COLUMNS, frame, conn, settings)


def summary(settings: Settings | None = None) -> dict[str, int]:
    """Row counts of every staging, mart and metric table in the DuckDB warehouse."""
    with duckdb_session(None, settings) as db:
        tables = db.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('raw', 'staging', 'marts', 'metrics') AND table_name NOT LIKE '\\_%' ESCAPE '\\' "
            "ORDER BY 1, 2"
        ).fetchall()
        return {f"{s}.{t}": scalar(db, f'SELECT count(*) FROM "{s}"."{t}"') for s, t in tables}
