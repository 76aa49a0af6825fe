"""The warehouse: loading the lake per interval, the meter registry, and running dbt.

An *interval* is one lake partition: `date=YYYY-MM-DD/hour=HH` for meter readings, grid status
and weather (all operators / sources of that hour together), `date=YYYY-MM-DD` for anomalies.
Loading an interval replaces it: its rows in the warehouse's `raw` schema are deleted and the
partition's Parquet files inserted, in one transaction, so loading twice (or a month later)
gives the same rows.

* DuckDB (embedded, `.metrify/warehouse.duckdb`): `read_parquet` over the partition's files.
* Snowflake (production): `COPY INTO … MATCH_BY_COLUMN_NAME` from an external stage on the S3
  lake into a temporary table, then delete + insert in one transaction (Snowflake DDL commits
  implicitly, so the COPY happens before the transaction opens).

Columns a file lacks load as NULL and extra file columns are ignored, in both engines, which is
what `MATCH_BY_COLUMN_NAME` does. Timestamps are stored as UTC without a zone
(`TIMESTAMP` / `TIMESTAMP_NTZ`); dbt derives Europe/Berlin business days from them.

The meter registry lives in PostgreSQL (`postgres_default`; an embedded `pgserver` locally) and is
copied from there into `raw.meter_registry`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date as Date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from metrify import lake
from metrify.settings import PROJECT_ROOT, Settings, load_settings

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

DBT_DIR = PROJECT_ROOT / "dbt"
RAW_SCHEMA_NAME = "raw"
REGISTRY_TABLE = "meter_registry"
META_COLUMNS = (("_interval_date", "date"), ("_interval_hour", "int"), ("_source_file", "text"),
                ("_loaded_at", "ts"))

# logical type -> (DuckDB, Snowflake)
TYPES = {
    "text": ("VARCHAR", "VARCHAR"),
    "float": ("DOUBLE", "FLOAT"),
    "int": ("INTEGER", "NUMBER(10,0)"),
    "ts": ("TIMESTAMP", "TIMESTAMP_NTZ"),
    "date": ("DATE", "DATE"),
}


@dataclass(frozen=True)
class Source:
    """A lake dataset the warehouse loads into `raw.<table>`."""

    table: str
    layer: str
    dataset: str
    columns: tuple[tuple[str, str], ...]
    ts_column: str
    hourly: bool = True
    leading_parts: tuple[str, ...] = ()  # partition keys before date= (operator=, source=)
    partition_columns: tuple[tuple[str, str], ...] = ()  # (column, partition key) filled from the path if absent

    def lake_dir(self, root: ObjectStoragePath) -> ObjectStoragePath:
        return root / self.layer / self.dataset

    @property
    def all_columns(self) -> tuple[tuple[str, str], ...]:
        return self.columns + META_COLUMNS


SOURCES: dict[str, Source] = {
    s.table: s
    for s in (
        Source("meter_readings", "raw", "meter_readings", (
            ("meter_id", "text"), ("reading_ts", "ts"), ("consumption_kwh", "float"),
            ("export_kwh", "float"), ("voltage", "float"), ("current", "float"),
            ("power_factor", "float"), ("frequency", "float"), ("temperature", "float"),
            ("humidity", "float"), ("topic", "text"), ("kafka_ts", "ts"), ("ingested_at", "ts"),
        ), ts_column="reading_ts"),
        Source("grid_status", "raw", "grid_status", (
            ("operator_name", "text"), ("reading_ts", "ts"), ("total_capacity_mw", "float"),
            ("available_capacity_mw", "float"), ("load_factor", "float"), ("frequency_hz", "float"),
            ("voltage_kv", "float"), ("grid_stability_score", "float"),
            ("renewable_percentage", "float"), ("region", "text"), ("ingested_at", "ts"),
        ), ts_column="reading_ts", leading_parts=("operator",), partition_columns=(("operator_name", "operator"),)),
        Source("weather", "raw", "weather", (
            ("city", "text"), ("source", "text"), ("observed_at", "ts"),
            ("temperature_celsius", "float"), ("humidity_percent", "float"), ("pressure_hpa", "float"),
            ("wind_speed_ms", "float"), ("wind_direction_degrees", "float"),
            ("cloud_cover_percent", "float"), ("visibility_km", "float"),
            ("energy_demand_factor", "float"), ("ingested_at", "ts"),
        ), ts_column="observed_at", leading_parts=("source",), partition_columns=(("source", "source"),)),
        Source("meter_anomalies", "anomalies", "meter_readings", (
            ("meter_id", "text"), ("reading_ts", "ts"), ("anomaly_type", "text"), ("severity", "text"),
            ("score", "float"), ("detector", "text"), ("details", "text"),
        ), ts_column="reading_ts", hourly=False),
    )
}
REGISTRY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("meter_id", "text"), ("load_profile", "text"), ("postal_code", "text"), ("city", "text"),
    ("region", "text"), ("grid_operator", "text"), ("latitude", "float"), ("longitude", "float"),
    ("installed_date", "date"), ("status", "text"), ("yearly_kwh", "float"), ("pv_kwp", "float"),
)

_PART_RE = re.compile(r"date=(\d{4}-\d{2}-\d{2})(?:/hour=(\d{2}))?/[^/]+\.parquet$")


@dataclass(frozen=True, order=True)
class Interval:
    """One lake partition: a UTC date and (for hourly datasets) an hour."""

    day: Date
    hour: int | None = None

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


# --------------------------------------------------------------------------------------------
# the lake side


def warehouse_path(settings: Settings | None = None) -> Path:
    settings = settings or load_settings()
    return Path(os.environ.get("METRIFY_WAREHOUSE_PATH") or settings.home / "warehouse.duckdb")


def partitions(source: Source, root: ObjectStoragePath | None = None,
               days: Iterable[Date] | None = None) -> dict[Interval, list[str]]:
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
                f"{'/'.join(p + '=…' for p in source.leading_parts)}/date=YYYY-MM-DD"
                f"{'/hour=HH' if source.hourly else ''}/<name>.parquet)")
        day = Date.fromisoformat(match.group(1))
        if wanted is not None and day not in wanted:
            continue
        hour = int(match.group(2)) if source.hourly and match.group(2) else None
        found.setdefault(Interval(day, hour), []).append(path)
    return {k: sorted(v) for k, v in sorted(found.items())}


def _fingerprint(root: ObjectStoragePath, files: Sequence[str]) -> str:
    """Names, sizes and modification times of an interval's files: changes when any is rewritten."""
    digest = hashlib.sha256()
    for path in files:
        info = root.fs.info(path)
        digest.update(f"{path}|{info.get('size')}|{info.get('mtime') or info.get('LastModified')}\n".encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# DuckDB


def connect_duckdb(path: Path | str | None = None) -> duckdb.DuckDBPyConnection:
    import duckdb

    path = Path(path) if path else warehouse_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(str(path))
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def _ddl(source_table: str, columns: Sequence[tuple[str, str]], engine: int, schema: str) -> str:
    cols = ", ".join(f'"{name.upper() if engine else name}" {TYPES[kind][engine]}' for name, kind in columns)
    return f"CREATE TABLE IF NOT EXISTS {schema}.{source_table} ({cols})"


def ensure_duckdb_tables(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA_NAME}")
    for source in SOURCES.values():
        conn.execute(_ddl(source.table, source.all_columns, 0, RAW_SCHEMA_NAME))
    conn.execute(_ddl(REGISTRY_TABLE, (*REGISTRY_COLUMNS, ("_loaded_at", "ts")), 0, RAW_SCHEMA_NAME))
    conn.execute(f"""CREATE TABLE IF NOT EXISTS {RAW_SCHEMA_NAME}._load_log (
        source VARCHAR, interval_date DATE, interval_hour INTEGER, fingerprint VARCHAR,
        files INTEGER, rows BIGINT, loaded_at TIMESTAMP)""")


def _select_list(source: Source, available: set[str]) -> str:
    exprs = []
    from_path = dict(source.partition_columns)
    for name, kind in source.columns:
        if name not in available and name in from_path:
            exprs.append(f"regexp_extract(filename, '{from_path[name]}=([^/]+)', 1) AS \"{name}\"")
        elif name not in available:
            exprs.append(f"CAST(NULL AS {TYPES[kind][0]}) AS \"{name}\"")
        elif kind == "ts":
            # tz-aware Parquet timestamps become naive UTC; naive ones are taken as UTC
            exprs.append(f"CAST(\"{name}\" AS TIMESTAMP) AS \"{name}\"")
        else:
            exprs.append(f"CAST(\"{name}\" AS {TYPES[kind][0]}) AS \"{name}\"")
    return ", ".join(exprs)


def _duckdb_relation(conn: duckdb.DuckDBPyConnection, root: ObjectStoragePath, files: Sequence[str]
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


def load_interval_duckdb(conn: duckdb.DuckDBPyConnection, source: Source, interval: Interval,
                         files: Sequence[str], root: ObjectStoragePath, fingerprint: str = "") -> LoadResult:
    """Replace one interval of `raw.<source>` with the given files, atomically."""
    started = time.perf_counter()
    table = f"{RAW_SCHEMA_NAME}.{source.table}"
    hour_sql = "IS NULL" if interval.hour is None else f"= {interval.hour}"
    where = f"_interval_date = DATE '{interval.day:%Y-%m-%d}' AND _interval_hour {hour_sql}"
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(f"DELETE FROM {table} WHERE {where}")
        rows = 0
        if files:
            relation, params = _duckdb_relation(conn, root, files)
            available = {r[0] for r in conn.execute(f"DESCRIBE SELECT * FROM {relation}", params).fetchall()}
            hour_value = "NULL" if interval.hour is None else str(interval.hour)
            conn.execute(
                f"INSERT INTO {table} SELECT {_select_list(source, available)}, "
                f"DATE '{interval.day:%Y-%m-%d}', {hour_value}, filename, now()::TIMESTAMP FROM {relation}",
                params)
            rows = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]
        conn.execute("DELETE FROM raw._load_log WHERE source = ? AND interval_date = ? AND interval_hour IS NOT DISTINCT FROM ?",
                     [source.table, interval.day, interval.hour])
        conn.execute("INSERT INTO raw._load_log VALUES (?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
                     [source.table, interval.day, interval.hour, fingerprint, len(files), rows])
        conn.execute("COMMIT")
    except Exception as exc:
        conn.execute("ROLLBACK")
        raise RuntimeError(f"loading {source.layer}/{source.dataset}/{interval} into {table} failed "
                           f"({len(files)} files, first {files[:1]}): {exc}") from exc
    finally:
        try:
            conn.unregister("_metrify_load")
        except Exception:  # noqa: BLE001 - nothing was registered
            pass
    return LoadResult(source.table, str(interval), len(files), rows, time.perf_counter() - started)


def load_interval(table: str, day: Date | str, hour: int | None = None, *,
                  settings: Settings | None = None, root: ObjectStoragePath | None = None,
                  conn: duckdb.DuckDBPyConnection | None = None) -> LoadResult:
    """Load (replace) one interval of a lake dataset into the DuckDB warehouse."""
    source = SOURCES[table]
    day = Date.fromisoformat(day) if isinstance(day, str) else day
    root = root if root is not None else lake.lake_root(settings)
    interval = Interval(day, hour if source.hourly else None)
    files = partitions(source, root, days=[day]).get(interval, [])
    with _duckdb(conn, settings) as db:
        ensure_duckdb_tables(db)
        return load_interval_duckdb(db, source, interval, files, root, _fingerprint(root, files))


def sync(tables: Iterable[str] | None = None, *, settings: Settings | None = None,
         root: ObjectStoragePath | None = None, days: Iterable[Date] | None = None,
         intervals: dict[str, Iterable[Interval]] | None = None,
         conn: duckdb.DuckDBPyConnection | None = None) -> SyncReport:
    """Load every interval whose files changed since it was last loaded (new, rewritten or gone).

    `intervals` restricts a table to the given intervals (e.g. the ones the quality gate
    validated). Work grows with the new data, not with the history: unchanged intervals cost
    one listing.
    """
    root = root if root is not None else lake.lake_root(settings)
    days = None if days is None else set(days)
    only = {name: set(values) for name, values in (intervals or {}).items()}
    report = SyncReport()
    with _duckdb(conn, settings) as db:
        ensure_duckdb_tables(db)
        for name in tables or SOURCES:
            source = SOURCES[name]
            known = {
                (d, h): fp for d, h, fp in db.execute(
                    "SELECT interval_date, interval_hour, fingerprint FROM raw._load_log WHERE source = ?",
                    [source.table]).fetchall()
                if days is None or d in days
            }
            present = partitions(source, root, days=days)
            if name in only:
                present = {k: v for k, v in present.items() if k in only[name]}
                known = {k: v for k, v in known.items() if Interval(*k) in only[name]}
            for interval, files in present.items():
                fingerprint = _fingerprint(root, files)
                if known.pop((interval.day, interval.hour), None) == fingerprint:
                    report.unchanged += 1
                    continue
                report.loaded.append(load_interval_duckdb(db, source, interval, files, root, fingerprint))
            for (day, hour) in known:  # intervals whose files were removed from the lake
                report.loaded.append(load_interval_duckdb(db, source, Interval(day, hour), [], root, ""))
    for result in report.loaded:
        log.info("loaded %s %s: %d files, %d rows in %.2fs", result.table, result.interval,
                 result.files, result.rows, result.seconds)
    return report


@contextmanager
def _duckdb(conn: duckdb.DuckDBPyConnection | None, settings: Settings | None
            ) -> Iterator[duckdb.DuckDBPyConnection]:
    if conn is not None:
        yield conn
        return
    own = connect_duckdb(warehouse_path(settings))
    try:
        yield own
    finally:
        own.close()


# --------------------------------------------------------------------------------------------
# Snowflake (production): external stage on the S3 lake + COPY INTO … MATCH_BY_COLUMN_NAME


def snowflake_setup_sql(stage_url: str, storage_integration: str | None = None, database: str | None = None
                        ) -> list[str]:
    """DDL for the raw schema, its tables and the external stage over the lake."""
    prefix = f"{database}." if database else ""
    schema = f"{prefix}{RAW_SCHEMA_NAME}"
    stage_opts = f" STORAGE_INTEGRATION = {storage_integration}" if storage_integration else ""
    statements = [f"CREATE SCHEMA IF NOT EXISTS {schema}",
                  f"CREATE STAGE IF NOT EXISTS {schema}.lake_stage URL = '{stage_url.rstrip('/')}/'{stage_opts}"]
    for source in SOURCES.values():
        statements.append(_ddl(source.table, source.all_columns, 1, schema))
    statements.append(_ddl(REGISTRY_TABLE, (*REGISTRY_COLUMNS, ("_loaded_at", "ts")), 1, schema))
    return statements


def snowflake_load_sql(source: Source, interval: Interval, relative_files: Sequence[str],
                       database: str | None = None) -> tuple[list[str], list[str]]:
    """(statements before the transaction, statements inside it, then a cleanup) for one interval.

    `relative_files` are paths relative to the lake root (= the stage URL).
    """
    prefix = f"{database}." if database else ""
    schema = f"{prefix}{RAW_SCHEMA_NAME}"
    table = f"{schema}.{source.table}"
    # a transient work table per interval (parallel loads of different intervals never meet)
    tmp = f"{schema}._load_{source.table}_{interval.day:%Y%m%d}_{'d' if interval.hour is None else f'{interval.hour:02d}'}"
    cols = ", ".join(name.upper() for name, _ in source.columns)
    hour_sql = "IS NULL" if interval.hour is None else f"= {interval.hour}"
    where = f"_INTERVAL_DATE = '{interval.day:%Y-%m-%d}'::DATE AND _INTERVAL_HOUR {hour_sql}"
    before = [f"CREATE OR REPLACE TRANSIENT TABLE {tmp} ({', '.join(f'{n.upper()} {TYPES[k][1]}' for n, k in source.columns)})"]
    for chunk_start in range(0, len(relative_files), 1000):  # COPY takes at most 1,000 FILES
        chunk = relative_files[chunk_start:chunk_start + 1000]
        listed = ", ".join(f"'{f}'" for f in chunk)
        before.append(
            f"COPY INTO {tmp} FROM @{schema}.lake_stage FILES = ({listed}) "
            "FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE FORCE = TRUE")
    hour_value = "NULL" if interval.hour is None else str(interval.hour)
    inside = [
        f"DELETE FROM {table} WHERE {where}",
        f"INSERT INTO {table} ({cols}, _INTERVAL_DATE, _INTERVAL_HOUR, _SOURCE_FILE, _LOADED_AT) "
        f"SELECT {cols}, '{interval.day:%Y-%m-%d}'::DATE, {hour_value}, NULL, "
        f"CURRENT_TIMESTAMP()::TIMESTAMP_NTZ FROM {tmp}",
    ]
    return before, inside + [f"DROP TABLE IF EXISTS {tmp}"]


def load_interval_snowflake(cursor: Any, source: Source, interval: Interval, relative_files: Sequence[str],
                            database: str | None = None) -> LoadResult:
    """Replace one interval in Snowflake through a DB-API cursor (snowflake-connector / hook)."""
    started = time.perf_counter()
    before, inside = snowflake_load_sql(source, interval, relative_files, database)
    for statement in before:
        cursor.execute(statement)
    cursor.execute("BEGIN")
    try:
        rows = 0
        for statement in inside[:-1]:
            cursor.execute(statement)
            rows = cursor.rowcount or 0  # the INSERT's row count
        cursor.execute("COMMIT")
        cursor.execute(inside[-1])
    except Exception as exc:
        cursor.execute("ROLLBACK")
        raise RuntimeError(f"loading {source.layer}/{source.dataset}/{interval} into Snowflake failed: {exc}") from exc
    return LoadResult(source.table, str(interval), len(relative_files), rows, time.perf_counter() - started)


def sync_snowflake(cursor: Any, root: ObjectStoragePath, tables: Iterable[str] | None = None,
                   days: Iterable[Date] | None = None, database: str | None = None) -> SyncReport:
    """Load every interval of the lake (or of `days`) into Snowflake; each load replaces its interval."""
    report = SyncReport()
    base = root.path.rstrip("/") + "/"
    for name in tables or SOURCES:
        source = SOURCES[name]
        for interval, files in partitions(source, root, days=days).items():
            relative = [f.removeprefix(base) if f.startswith(base) else f.split(base.lstrip('/'), 1)[-1]
                        for f in files]
            report.loaded.append(load_interval_snowflake(cursor, source, interval, relative, database))
    return report


def load_registry_snowflake(cursor: Any, frame: pd.DataFrame, database: str | None = None) -> int:
    """Replace `raw.meter_registry` in Snowflake with `frame` (rows of the operational registry)."""
    prefix = f"{database}." if database else ""
    table = f"{prefix}{RAW_SCHEMA_NAME}.{REGISTRY_TABLE}"
    names = [n for n, _ in REGISTRY_COLUMNS]
    records = [tuple(None if _isnull(v) else (str(v) if k in ("text", "date") else float(v))
                     for v, (_, k) in zip(row, REGISTRY_COLUMNS, strict=True))
               for row in frame[names].itertuples(index=False)]
    cursor.execute("BEGIN")
    cursor.execute(f"DELETE FROM {table}")
    if records:
        placeholders = ", ".join(["%s"] * len(names))
        cursor.executemany(f"INSERT INTO {table} ({', '.join(n.upper() for n in names)}) VALUES ({placeholders})",
                           records)
    cursor.execute(f"UPDATE {table} SET _LOADED_AT = CURRENT_TIMESTAMP()::TIMESTAMP_NTZ")
    cursor.execute("COMMIT")
    return len(records)


def _isnull(value: Any) -> bool:
    try:
        return value is None or value != value  # NaN
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# the meter registry: operational PostgreSQL -> warehouse


def start_registry_db(settings: Settings | None = None) -> str:
    """Start (or reuse) the embedded PostgreSQL in `.metrify/postgres`; returns its URI.

    The server keeps running after this process exits (stop it with `stop_registry_db`).
    It listens on a Unix socket only; the URI carries the socket directory as `host`.
    """
    import pgserver

    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it logs every pg_ctl call at INFO
    settings = settings or load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(settings.home / "postgres", cleanup_mode=None)
    return server.get_uri()


def stop_registry_db(settings: Settings | None = None, timeout: float = 30.0) -> None:
    """Stop the embedded PostgreSQL started by `start_registry_db` (a no-op when it is down).

    Sends the postmaster SIGINT (PostgreSQL's "fast" shutdown) and waits for it to exit.
    """
    import signal

    settings = settings or load_settings()
    pid_file = settings.home / "postgres" / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise TimeoutError(f"PostgreSQL (pid {pid}, {pid_file.parent}) did not stop within {timeout:.0f}s")


def registry_connection(uri: str) -> dict[str, Any]:
    """The Airflow connection (`postgres_default`) for a pgserver URI."""
    from urllib.parse import parse_qs, urlparse

    parsed = urlparse(uri)
    host = parse_qs(parsed.query).get("host", [parsed.hostname or "localhost"])[0]
    return {"conn_type": "postgres", "host": host, "login": parsed.username or "postgres",
            "password": parsed.password or "", "schema": parsed.path.lstrip("/") or "postgres",
            **({"port": parsed.port} if parsed.port else {})}


def write_registry(frame: pd.DataFrame, dsn: str) -> int:
    """Replace the operational `meter_registry` table in PostgreSQL with `frame`."""
    import psycopg2

    names = [n for n, _ in REGISTRY_COLUMNS]
    pg_types = {"text": "TEXT", "float": "DOUBLE PRECISION", "date": "DATE"}
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"""CREATE TABLE IF NOT EXISTS {REGISTRY_TABLE} (
            {', '.join(f'{n} {pg_types[k]}' + (' PRIMARY KEY' if n == 'meter_id' else '') for n, k in REGISTRY_COLUMNS)},
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now())""")
        cur.execute(f"TRUNCATE {REGISTRY_TABLE}")
        import io

        buffer = io.StringIO()
        frame[names].to_csv(buffer, index=False, header=False)
        buffer.seek(0)
        cur.copy_expert(f"COPY {REGISTRY_TABLE} ({', '.join(names)}) FROM STDIN WITH (FORMAT csv)", buffer)
    return len(frame)


def read_registry(dsn: str | None = None, conn_id: str = "postgres_default") -> pd.DataFrame:
    """The registry rows from PostgreSQL: through `dsn`, or the Airflow connection `conn_id`."""
    import pandas as pd
    import psycopg2

    names = [n for n, _ in REGISTRY_COLUMNS]
    query = f"SELECT {', '.join(names)} FROM {REGISTRY_TABLE} ORDER BY meter_id"
    if dsn is None:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        conn = PostgresHook(postgres_conn_id=conn_id).get_conn()
    else:
        conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return pd.DataFrame(cur.fetchall(), columns=names)
    finally:
        conn.close()


def load_registry_duckdb(frame: pd.DataFrame, conn: duckdb.DuckDBPyConnection | None = None,
                         settings: Settings | None = None) -> int:
    """Replace `raw.meter_registry` in DuckDB with the registry rows, in one transaction."""
    names = [n for n, _ in REGISTRY_COLUMNS]
    data = frame[names].copy()
    with _duckdb(conn, settings) as db:
        ensure_duckdb_tables(db)
        db.register("_registry", data)
        casts = ", ".join(f'CAST("{n}" AS {TYPES[k][0]})' for n, k in REGISTRY_COLUMNS)
        db.execute("BEGIN TRANSACTION")
        try:
            db.execute(f"DELETE FROM {RAW_SCHEMA_NAME}.{REGISTRY_TABLE}")
            db.execute(f"INSERT INTO {RAW_SCHEMA_NAME}.{REGISTRY_TABLE} SELECT {casts}, now()::TIMESTAMP FROM _registry")
            db.execute("COMMIT")
        except Exception:
            db.execute("ROLLBACK")
            raise
        finally:
            db.unregister("_registry")
    return len(data)


# --------------------------------------------------------------------------------------------
# dbt


def dbt_env(target: str = "duckdb", settings: Settings | None = None, extra: dict[str, str] | None = None
            ) -> dict[str, str]:
    """Environment variables profiles.yml reads."""
    settings = settings or load_settings()
    return {"METRIFY_WAREHOUSE_PATH": str(warehouse_path(settings)), "DBT_TARGET": target,
            **(extra or {})}


@dataclass
class DbtResult:
    success: bool
    command: list[str]
    seconds: float
    statuses: dict[str, str]
    failures: list[str]


def run_dbt(args: Sequence[str], target: str = "duckdb", settings: Settings | None = None,
            env: dict[str, str] | None = None, vars: dict[str, Any] | None = None,
            target_path: Path | None = None) -> DbtResult:
    """Run a dbt command in-process (dbtRunner) against `target`; raises nothing, reports all."""
    from dbt.cli.main import dbtRunner

    settings = settings or load_settings()
    saved = {k: os.environ.get(k) for k in dbt_env(target, settings, env)}
    os.environ.update(dbt_env(target, settings, env))
    command = [*args, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--target", target,
               "--log-path", str(settings.home / "logs" / "dbt")]
    if target_path:
        command += ["--target-path", str(target_path)]
    if vars:
        command += ["--vars", json.dumps(vars)]
    started = time.perf_counter()
    try:
        result = dbtRunner().invoke(command)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    statuses: dict[str, str] = {}
    failures: list[str] = []
    for item in getattr(result.result, "results", None) or []:
        name = getattr(item.node, "unique_id", str(item))
        status = str(getattr(item.status, "value", item.status))
        statuses[name] = status
        if status in ("error", "fail", "runtime error"):
            failures.append(f"{name}: {status}: {item.message}")
    if result.exception is not None:
        failures.append(f"dbt {' '.join(args)} raised {result.exception!r}")
    return DbtResult(bool(result.success), command, time.perf_counter() - started, statuses, failures)


def manifest_path() -> Path:
    return DBT_DIR / "target" / "manifest.json"


def build_manifest(settings: Settings | None = None) -> Path:
    """`dbt parse` (no database connection) writing dbt/target/manifest.json for Cosmos to render."""
    result = run_dbt(["parse"], target="duckdb", settings=settings)
    if not result.success or not manifest_path().exists():
        raise RuntimeError(f"dbt parse failed for {DBT_DIR}: {result.failures}")
    return manifest_path()


def duckdb_profile_conn(settings: Settings | None = None) -> dict[str, Any]:
    """Airflow connection `metrify_duckdb` for Cosmos's DuckDB profile mapping."""
    return {"conn_type": "duckdb", "host": str(warehouse_path(settings))}


# --------------------------------------------------------------------------------------------
# entry points for the DAGs (plain functions; the DAG files only wire them)


def warehouse_target() -> str:
    from metrify.transform import target

    return target()


VALIDATED_READINGS_URI = "metrify://lake/validated/meter_readings"


def validated_intervals(triggering_asset_events: Any) -> list[Interval] | None:
    """Meter-reading intervals the quality gate passed, from the `extra["intervals"]` of the
    `metrify://lake/validated/meter_readings` events that triggered the run (None: no event
    says, so every changed interval is loaded)."""
    if not triggering_asset_events:
        return None
    found: list[Interval] = []
    said = False
    for asset, events in dict(triggering_asset_events).items():
        if getattr(asset, "uri", getattr(asset, "name", str(asset))) != VALIDATED_READINGS_URI:
            continue
        for event in events:
            extra = getattr(event, "extra", None) or {}
            if "intervals" in extra:
                said = True
                found.extend(Interval.parse(text) for text in extra["intervals"])
    return sorted(set(found)) if said else None


BUSINESS_TIMEZONE = "Europe/Berlin"


def daily_run_days(interval_start: Any, interval_end: Any, timezone: str = BUSINESS_TIMEZONE
                   ) -> tuple[list[Date], list[Date]]:
    """(business days, UTC lake dates) a `warehouse_daily` run rebuilds.

    A cron schedule in Airflow 3 is a CronTriggerTimetable: the run's data interval is the
    instant it is due (start == end), so the run due at 02:30 Europe/Berlin on day D rebuilds
    the business day D - 1, now complete. A run with a real interval rebuilds every business
    day that ends inside it. The lake is partitioned by UTC date: a business day's readings
    span two UTC dates (the first hour(s) of the local day and the reading at local midnight).
    """
    import pendulum

    start = pendulum.instance(interval_start).in_timezone(timezone)
    end = pendulum.instance(interval_end).in_timezone(timezone)
    if end.date() > start.date():
        business = [start.date() + pendulum.duration(days=i) for i in range((end.date() - start.date()).days)]
    else:
        business = [start.date() - pendulum.duration(days=1)]
    utc: set[Date] = set()
    for day in business:
        first = pendulum.datetime(day.year, day.month, day.day, tz=timezone).in_timezone("UTC")
        last = first.in_timezone(timezone).add(days=1).in_timezone("UTC")
        utc.update(first.date() + pendulum.duration(days=i) for i in range((last.date() - first.date()).days + 1))
    return [Date(d.year, d.month, d.day) for d in business], sorted(Date(d.year, d.month, d.day) for d in utc)


def daily_run_logical_date(business_day: Date, timezone: str = BUSINESS_TIMEZONE) -> str:
    """The logical date (ISO) of the `warehouse_daily` run that rebuilds `business_day`: 02:30
    local on the next day (03:30 on a spring-forward day, as cron fires then)."""
    import pendulum

    nxt = pendulum.date(business_day.year, business_day.month, business_day.day).add(days=1)
    due = pendulum.datetime(nxt.year, nxt.month, nxt.day, 2, 30, tz=timezone)
    return due.isoformat()


def load_lake_for_transform(days: Iterable[Date] | None = None, settings: Settings | None = None,
                            validated: Iterable[Interval] | None = None) -> dict[str, Any]:
    """Load what changed in the lake into the warehouse's raw schema; returns a summary.

    DuckDB: every interval whose files changed (all days, or `days`); meter readings only for
    the `validated` intervals when given. Snowflake: the intervals of `days` (required there:
    COPY INTO from the lake stage, each interval replaced).
    """
    if warehouse_target() == "snowflake":
        if days is None:
            raise ValueError("loading Snowflake needs the days to load (the DAG passes its data interval)")
        from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

        with SnowflakeHook(snowflake_conn_id="snowflake_default").get_conn() as conn:
            report = sync_snowflake(conn.cursor(), lake.lake_root(settings), days=list(days))
    else:
        report = sync(settings=settings, days=list(days) if days is not None else None,
                      intervals=None if validated is None else {"meter_readings": list(validated)})
    summary = {"intervals_loaded": len(report.loaded), "intervals_unchanged": report.unchanged,
               "rows_loaded": report.rows,
               "by_table": {t: sum(r.rows for r in report.loaded if r.table == t) for t in SOURCES}}
    log.info("warehouse load: %s", summary)
    return summary


def load_registry_for_transform(conn_id: str = "postgres_default", settings: Settings | None = None) -> int:
    """Copy the meter registry from PostgreSQL (`conn_id`) into the warehouse; returns its rows."""
    frame = read_registry(conn_id=conn_id)
    if frame.empty:
        raise RuntimeError(f"the meter registry in PostgreSQL ({conn_id}, table {REGISTRY_TABLE}) is empty: "
                           "dim_meters would be empty and every fact would fail its relationship test")
    if warehouse_target() == "snowflake":
        from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

        with SnowflakeHook(snowflake_conn_id="snowflake_default").get_conn() as conn:
            return load_registry_snowflake(conn.cursor(), frame)
    return load_registry_duckdb(frame, settings=settings)


def seed_registry(registry: pd.DataFrame, settings: Settings | None = None) -> dict[str, Any]:
    """Start the embedded PostgreSQL, write the simulator's registry into it, and return the
    Airflow connection (`postgres_default`) that reaches it."""
    uri = start_registry_db(settings)
    write_registry(registry, uri)
    return registry_connection(uri)


def embedded_connections(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Airflow connections the warehouse DAGs need locally: the DuckDB file for Cosmos."""
    return {"metrify_duckdb": duckdb_profile_conn(settings)}


def summary(settings: Settings | None = None) -> dict[str, int]:
    """Row counts of every staging, mart and metric table in the DuckDB warehouse."""
    with _duckdb(None, settings) as db:
        tables = db.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('raw', 'staging', 'marts', 'metrics') AND table_name NOT LIKE '\\_%' ESCAPE '\\' "
            "ORDER BY 1, 2").fetchall()
        return {f"{s}.{t}": db.execute(f'SELECT count(*) FROM "{s}"."{t}"').fetchone()[0] for s, t in tables}


def lake_hourly_totals(root: ObjectStoragePath | None = None, days: Iterable[Date] | None = None
                       ) -> pd.DataFrame:
    """Distinct readings and their kWh per UTC hour (interval start), straight from the lake's
    raw Parquet: copies of a reading collapse with the same rule as staging (latest ingestion)."""
    import pandas as pd
    import pyarrow as pa

    root = root if root is not None else lake.lake_root()
    source = SOURCES["meter_readings"]
    columns = ["meter_id", "reading_ts", "consumption_kwh", "export_kwh", "voltage", "frequency",
               "kafka_ts", "ingested_at"]
    tables = []
    for files in partitions(source, root, days=days).values():
        for path in files:
            with root.fs.open(path, "rb") as handle:
                import pyarrow.parquet as pq

                tables.append(pq.read_table(handle, columns=columns))
    if not tables:
        return pd.DataFrame(columns=["readings", "consumption_kwh"])
    frame = pa.concat_tables(tables, promote_options="default").to_pandas()
    order = ["ingested_at", "kafka_ts", "consumption_kwh", "export_kwh", "voltage", "frequency"]
    frame = frame.sort_values(order, ascending=False, na_position="last", kind="stable")
    frame = frame.drop_duplicates(["meter_id", "reading_ts"], keep="first")
    hour = (pd.to_datetime(frame["reading_ts"], utc=True) - pd.Timedelta(minutes=15)).dt.floor("h")
    totals = frame.groupby(hour.dt.tz_localize(None).rename("hour_start")).agg(
        readings=("meter_id", "size"), consumption_kwh=("consumption_kwh", "sum"))
    return totals


def reconcile(settings: Settings | None = None, tolerance_kwh: float = 1e-6) -> list[dict[str, Any]]:
    """Hours where the DuckDB fact disagrees with the lake (count or kWh); empty when they agree."""
    settings = settings or load_settings()
    lake_totals = lake_hourly_totals(lake.lake_root(settings))
    with _duckdb(None, settings) as db:
        fact = db.execute("SELECT hour_start, sum(reading_count) AS readings, sum(consumption_kwh) AS consumption_kwh "
                          "FROM marts.fct_meter_readings_hourly GROUP BY hour_start").df().set_index("hour_start")
    mismatches = []
    for hour in sorted(set(lake_totals.index) | set(fact.index)):
        lake_row = lake_totals.loc[hour] if hour in lake_totals.index else None
        fact_row = fact.loc[hour] if hour in fact.index else None
        lake_n = int(lake_row["readings"]) if lake_row is not None else 0
        fact_n = int(fact_row["readings"]) if fact_row is not None else 0
        lake_kwh = float(lake_row["consumption_kwh"]) if lake_row is not None else 0.0
        fact_kwh = float(fact_row["consumption_kwh"]) if fact_row is not None else 0.0
        if lake_n != fact_n or abs(lake_kwh - fact_kwh) > tolerance_kwh:
            mismatches.append({"hour_start": str(hour), "lake_readings": lake_n, "fact_readings": fact_n,
                               "lake_kwh": lake_kwh, "fact_kwh": fact_kwh})
    return mismatches
