"""Erasure of one meter's data (GDPR Art. 17): the lake, the warehouse and the registry.

`erase_meter(meter_id, ...)` removes every row of one meter and records what it removed:

* **Lake**: every Parquet file below a data layer (`raw/`, `validated/`, `quarantine/`,
  `anomalies/`, `quality/`, and any layer added later: the files are found by their columns,
  not by a list) that holds a `meter_id` column, or a quarantined Kafka message
  (`key`/`raw_value`) of the meter. Parquet files are immutable: each affected file is
  rewritten without the meter's rows through `lake.write_parquet` (a reader sees the old file
  or the new one, never half of one), or removed when nothing else is left in it.
* **Gate markers** (`_quality/`, `_quality_releases/`): sample rows naming the meter get its
  pseudonym instead; where the erasure rewrote the raw files a verdict was given for, the
  verdict (and a release) is carried over to the rewritten files, so the gate does not judge
  the hour again (and a released hour is not blocked again) just because a meter left it.
* **Great Expectations results and Data Docs** (`<METRIFY_HOME>/gx/`, on the worker that runs
  the erasure): a JSON or HTML file naming the meter (an unexpected value) gets its pseudonym.
* **Warehouse**: every base table with a `meter_id` column (raw copies, dbt staging, facts,
  dimensions, per-meter metrics, the unregistered-meter alert state), found through
  `information_schema`, loses the meter's rows in one transaction. The statements bind the
  meter id as a parameter; the same SQL runs on DuckDB (`?`) and Snowflake (`%s`).
* **Registry**: the meter's row of the operational registry table (`meter_registry`), when a
  registry connection is given (the DAG `erase_meter` passes the PostgreSQL registry's).

The **audit record** (`_audit/erasures/<when>-<id>.json` in the lake) names the meter only by
its keyed pseudonym (`metrify.redaction.pseudonym`: an auditor holding the id can recompute it,
nobody can read the id back from it), with who asked, which run, when, and the rows removed per
file, layer, warehouse table and registry. Neither the record nor a log line holds the meter id.

Erasing twice is harmless: the second run finds nothing and records that. A failed erasure writes
its record too (`status: failed`, the error, and what it had erased until then).
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from metrify import lake, redaction, validate
from metrify.config import Settings, load_settings
from metrify.contracts import registry

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

AUDIT_FOLDER = "_audit/erasures"
MARKER_FOLDERS = ("_quality", "_quality_releases")
METER_COLUMN = "meter_id"
# a quarantined Kafka message: its key (the meter id) and its undecoded bytes
MESSAGE_COLUMNS = ("key", "raw_value")


@dataclass
class FileErasure:
    """What the erasure did to one lake file (`path` relative to the lake root)."""

    path: str
    layer: str
    dataset: str
    rows_removed: int
    rows_kept: int
    action: str  # "rewritten" or "removed" (nothing else was left in it)


@dataclass
class ErasureReport:
    """The audit record of one erasure: the meter only by its pseudonym."""

    erasure_id: str
    meter_pseudonym: str
    requested_by: str
    run_id: str | None
    started_at: str
    finished_at: str = ""
    lake_files: list[FileErasure] = field(default_factory=list)
    markers_updated: int = 0
    gx_files_scrubbed: int = 0
    warehouse_target: str = ""
    warehouse_tables: dict[str, int] = field(default_factory=dict)
    registry_rows: int | None = None  # None: no registry connection was given
    status: str = "running"  # complete, or failed (`error`): what is listed was erased
    error: str = ""
    audit_path: str = ""

    @property
    def lake_rows_by_layer(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for f in self.lake_files:
            key = f"{f.layer}/{f.dataset}"
            totals[key] = totals.get(key, 0) + f.rows_removed
        return totals

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["lake_rows_by_layer"] = self.lake_rows_by_layer
        record["lake_rows_removed"] = sum(f.rows_removed for f in self.lake_files)
        record["warehouse_rows_removed"] = sum(self.warehouse_tables.values())
        return record


def check_meter_id(meter_id: Any) -> str:
    """The meter id if it is one (`metrify.validate.meter_id`); else ValueError saying what a
    meter id looks like (without echoing more than the validator does)."""
    return validate.meter_id(meter_id, "meter_id")


# --------------------------------------------------------------------------- the lake


def _relative(root: ObjectStoragePath, fs_path: str) -> str:
    base = str(root.path).rstrip("/") + "/"
    if not fs_path.startswith(base):
        raise ValueError(f"{fs_path} is not below the lake root {base}")
    return validate.object_key(fs_path[len(base) :], "lake file")


def data_layers(root: ObjectStoragePath) -> list[str]:
    """The lake's data layers: its top-level folders, except state and audit folders (`_...`)."""
    if not root.exists():
        return []
    names = [str(p).rstrip("/").rsplit("/", 1)[-1] for p in root.fs.ls(root.path, detail=False)]
    return sorted(n for n in names if not n.startswith("_") and root.fs.isdir(f"{str(root.path).rstrip('/')}/{n}"))


def meter_rows(table: pa.Table, meter_id: str) -> pa.Array | None:
    """A boolean mask of the meter's rows in a lake table, or None if the table holds no meter
    ids: a `meter_id` column equal to it, or a quarantined message keyed by it or whose bytes
    hold it as a JSON string."""
    names = set(table.column_names)
    if METER_COLUMN in names:
        return pc.fill_null(pc.equal(table[METER_COLUMN].cast(pa.string()), meter_id), False)
    if set(MESSAGE_COLUMNS) <= names:
        key = pc.fill_null(pc.equal(table["key"].cast(pa.binary()), pa.scalar(meter_id.encode(), pa.binary())), False)
        body = pc.fill_null(pc.match_substring(table["raw_value"].cast(pa.binary()), f'"{meter_id}"'), False)
        return pc.or_(key, body)
    return None


def _may_hold_meters(schema: pa.Schema) -> bool:
    return METER_COLUMN in schema.names or set(MESSAGE_COLUMNS) <= set(schema.names)


def erase_file(
    root: ObjectStoragePath, fs_path: str, meter_id: str, before_change: Callable[[], None] | None = None
) -> FileErasure | None:
    """Rewrite one lake file without the meter's rows (atomically), or remove it if nothing is
    left; None if the file holds none of them. `before_change` runs just before a change."""
    with root.fs.open(fs_path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        schema = parquet.schema_arrow
        if not _may_hold_meters(schema):
            return None
        if METER_COLUMN in schema.names:  # most files: one column read tells whether to go on
            ids = parquet.read(columns=[METER_COLUMN])
            if not pc.any(pc.equal(ids[METER_COLUMN].cast(pa.string()), meter_id)).as_py():
                return None
        table = parquet.read()
    mask = meter_rows(table, meter_id)
    if mask is None:
        return None
    removed = pc.sum(mask).as_py() or 0
    if not removed:
        return None
    relative = _relative(root, fs_path)
    target = root / relative
    if before_change is not None:
        before_change()
    kept = table.filter(pc.invert(mask))
    if kept.num_rows:
        lake.write_parquet(kept, target)
        action = "rewritten"
    else:
        target.unlink()
        action = "removed"
    layer, dataset = (relative.split("/") + [""])[:2]
    return FileErasure(relative, layer, dataset, int(removed), kept.num_rows, action)


def _raw_interval(relative: str) -> tuple[str, str, int | None] | None:
    """(dataset, date, hour) of a raw file's gate interval, or None for another file."""
    match = re.fullmatch(r"raw/([a-z][a-z0-9_]*)/date=(\d{4}-\d{2}-\d{2})(?:/hour=(\d{2}))?/[^/]+\.parquet", relative)
    if not match:
        return None
    return match.group(1), match.group(2), int(match.group(3)) if match.group(3) else None


def _scrub(value: Any, pattern: re.Pattern[str], replacement: str) -> Any:
    if isinstance(value, str):
        return pattern.sub(replacement, value)
    if isinstance(value, dict):
        return {k: _scrub(v, pattern, replacement) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, pattern, replacement) for v in value]
    return value


def erase_lake(
    root: ObjectStoragePath, meter_id: str, pseudonym: str, on_file: Callable[[FileErasure], None] | None = None
) -> tuple[list[FileErasure], int]:
    """Erase the meter from every data file of the lake; then update the gate's markers.
    Returns the files changed and the number of markers updated."""
    from metrify.quality.gate import GateInterval

    changed: list[FileErasure] = []
    before: dict[tuple[str, str, int | None], str] = {}  # raw interval -> its fingerprint before
    for layer in data_layers(root):
        for fs_path in lake.list_files(root / layer):
            relative = _relative(root, fs_path)
            interval = _raw_interval(relative)

            def remember(interval: tuple[str, str, int | None] | None = interval, folder: str = relative) -> None:
                if interval is not None and interval not in before:  # before its first file changes
                    before[interval] = lake.fingerprint(root, lake.list_files(root / folder.rsplit("/", 1)[0]))

            done = erase_file(root, fs_path, meter_id, remember)
            if done is None:
                continue
            changed.append(done)
            if on_file is not None:
                on_file(done)
    rewritten = {i for i in map(_raw_interval, (f.path for f in changed)) if i is not None}
    # rows removed per gate interval and verdict count: raw rows, validated and gate-quarantined rows
    counted: dict[tuple[str, str, int | None], dict[str, int]] = {}
    for f in changed:
        match = re.fullmatch(
            r"(raw|validated|quarantine)/([a-z][a-z0-9_]*?)(_gate)?/date=([\d-]+)(?:/hour=(\d{2}))?/.*", f.path
        )
        if match and (match.group(1) == "quarantine") == bool(match.group(3)):
            key = (match.group(2), match.group(4), int(match.group(5)) if match.group(5) else None)
            field_name = {"raw": "rows", "validated": "validated", "quarantine": "quarantined"}[match.group(1)]
            counts = counted.setdefault(key, {})
            counts[field_name] = counts.get(field_name, 0) + f.rows_removed

    # The gate's verdicts: carried over to the rewritten raw files, and scrubbed of the meter id.
    carried: dict[str, tuple[str, str, list[str], dict[str, int]]] = {}  # marker -> old, new, files, removed
    for dataset, date, hour in rewritten:
        parts = {"date": date, **({} if hour is None else {"hour": f"{hour:02d}"})}
        files = lake.list_files(lake.partition_path(root, "raw", dataset, **parts))
        gate_interval = GateInterval(dataset, date, hour)
        for marker in (gate_interval.marker(root), gate_interval.release_file(root)):
            carried[str(marker.path)] = (
                before[(dataset, date, hour)],
                lake.fingerprint(root, files),
                files,
                counted.get((dataset, date, hour), {}) if marker == gate_interval.marker(root) else {},
            )
    pattern = meter_pattern(meter_id)
    updated = 0
    for folder_name in MARKER_FOLDERS:
        for fs_path in lake.list_files(root / folder_name, suffix=".json"):
            path = root / _relative(root, fs_path)
            document = lake.read_json(path)
            if document is None:
                continue
            fresh = _scrub(document, pattern, pseudonym)
            if fs_path in carried:
                old, new, files, removed = carried[fs_path]
                if fresh.get("raw_fingerprint") == old:  # the verdict was current: it still is
                    fresh["raw_fingerprint"] = new
                    fresh["raw_files"] = files
                    for name, count in removed.items():  # its counts now those of the files
                        if isinstance(fresh.get(name), int):
                            fresh[name] = max(fresh[name] - count, 0)
                    fresh.setdefault("erasures", []).append(
                        {"meter_pseudonym": pseudonym, "erased_at": datetime.now(UTC).isoformat(timespec="seconds")}
                    )
            if fresh != document:
                lake.write_json(fresh, path)
                updated += 1
    return changed, updated


def meter_pattern(meter_id: str) -> re.Pattern[str]:
    """The meter id as a whole token (not the start of a longer id)."""
    return re.compile(rf"(?<![A-Za-z0-9._-]){re.escape(meter_id)}(?![A-Za-z0-9._-])")


def scrub_local_folder(
    folder: Path, meter_id: str, pseudonym: str, suffixes: tuple[str, ...] = (".json", ".html")
) -> int:
    """Replace the meter id by its pseudonym in the text files below a local folder (each file
    replaced atomically); returns how many files changed."""
    pattern = meter_pattern(meter_id)
    changed = 0
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if not path.is_file() or path.suffix not in suffixes:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        fresh = pattern.sub(pseudonym, text)
        if fresh != text:
            tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
            tmp.write_text(fresh, encoding="utf-8")
            os.replace(tmp, path)
            changed += 1
    return changed


# --------------------------------------------------------------------------- warehouse and registry

# Base tables with a meter id column, in the current database (DuckDB and Snowflake both keep
# `information_schema`; Snowflake upper-cases unquoted names).
METER_TABLES_SQL = (
    "SELECT c.table_schema, c.table_name, c.column_name "
    "FROM information_schema.columns AS c JOIN information_schema.tables AS t "
    "ON t.table_catalog = c.table_catalog AND t.table_schema = c.table_schema AND t.table_name = c.table_name "
    "WHERE lower(c.column_name) = 'meter_id' AND t.table_type = 'BASE TABLE' "
    "AND lower(c.table_schema) <> 'information_schema' AND c.table_catalog = current_database() "
    "ORDER BY 1, 2"
)


def meter_tables(cursor: Any) -> list[tuple[str, str, str]]:
    """(schema, table, column) of every warehouse base table with a meter id column; each name
    checked as an identifier (it is quoted into the statements below, never a value)."""
    rows = cursor.execute(METER_TABLES_SQL).fetchall()
    return [
        (validate.identifier(s, "schema"), validate.identifier(t, "table"), validate.identifier(c, "column"))
        for s, t, c in rows
    ]


def erase_warehouse(cursor: Any, meter_id: str, placeholder: str = "?") -> dict[str, int]:
    """Delete the meter's rows from every warehouse base table with a meter id column, in one
    transaction; returns rows removed per `schema.table`. `cursor`: a DuckDB connection
    (`placeholder` `?`) or a Snowflake cursor (`%s`)."""
    meter_id = check_meter_id(meter_id)
    tables = meter_tables(cursor)
    removed: dict[str, int] = {}
    cursor.execute("BEGIN TRANSACTION")
    try:
        for schema, table, column in tables:
            where = f'FROM "{schema}"."{table}" WHERE "{column}" = {placeholder}'
            count = int(cursor.execute(f"SELECT count(*) {where}", [meter_id]).fetchone()[0])
            if count:
                cursor.execute(f"DELETE {where}", [meter_id])
            removed[f"{schema}.{table}"] = count
        cursor.execute("COMMIT")
    except Exception:
        cursor.execute("ROLLBACK")
        raise
    return removed


def erase_registry(cursor: Any, meter_id: str, placeholder: str = "%s", table: str = registry.TABLE) -> int:
    """Delete the meter's row(s) from the operational registry table; returns how many.
    `cursor`: a DB-API cursor (PostgreSQL: `%s`)."""
    meter_id = check_meter_id(meter_id)
    table = validate.name(table, "registry table")
    cursor.execute(f"SELECT count(*) FROM {table} WHERE meter_id = {placeholder}", [meter_id])
    count = int(cursor.fetchone()[0])
    if count:
        cursor.execute(f"DELETE FROM {table} WHERE meter_id = {placeholder}", [meter_id])
    return count


# --------------------------------------------------------------------------- the whole erasure


def audit_path(root: ObjectStoragePath, report: ErasureReport) -> ObjectStoragePath:
    stamp = report.started_at.replace(":", "").replace("-", "").replace("+0000", "Z")
    return root / AUDIT_FOLDER / f"{stamp}-{report.erasure_id}.json"


def write_audit(root: ObjectStoragePath, report: ErasureReport) -> ObjectStoragePath:
    """Store the audit record atomically in the lake (`_audit/erasures/`)."""
    path = audit_path(root, report)
    report.audit_path = _relative(root, str(path.path))
    lake.write_json(report.as_dict(), path)
    return path


def erase_meter(
    meter_id: str,
    *,
    requested_by: str,
    run_id: str | None = None,
    settings: Settings | None = None,
    root: ObjectStoragePath | None = None,
    warehouse: Any = None,
    warehouse_placeholder: str = "?",
    registry_cursor: Any = None,
    registry_placeholder: str = "%s",
) -> ErasureReport:
    """Erase one meter from the lake, the warehouse and (given its cursor) the registry, and
    write the audit record.

    `warehouse`: a DuckDB connection or Snowflake cursor; None opens the settings' DuckDB
    warehouse (`METRIFY_WAREHOUSE_TARGET=duckdb`; for Snowflake the caller passes the cursor).
    Raises ValueError for something that is not a meter id, before anything is touched.
    """
    meter_id = check_meter_id(meter_id)
    settings = settings or load_settings()
    root = root if root is not None else lake.lake_root(settings)
    pseudonym = redaction.pseudonym(meter_id, settings)
    report = ErasureReport(
        erasure_id=uuid.uuid4().hex[:12],
        meter_pseudonym=pseudonym,
        requested_by=requested_by,
        run_id=run_id,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        warehouse_target=settings.warehouse_target,
    )
    log.info("erasing meter %s (erasure %s, asked by %s)", pseudonym, report.erasure_id, requested_by)

    if warehouse is None and settings.warehouse_target != "duckdb":
        raise ValueError("erasing from Snowflake needs its cursor (the DAG erase_meter passes one)")

    def noted(done: FileErasure) -> None:
        report.lake_files.append(done)
        log.info("%s %s: %d row(s) removed, %d kept", done.action, done.path, done.rows_removed, done.rows_kept)

    try:
        _, report.markers_updated = erase_lake(root, meter_id, pseudonym, on_file=noted)
        report.gx_files_scrubbed = scrub_local_folder(settings.gx_home, meter_id, pseudonym)
        if warehouse is not None:
            report.warehouse_tables = erase_warehouse(warehouse, meter_id, warehouse_placeholder)
        elif settings.warehouse_path.exists():
            from metrify.warehouse.duckdb_loader import duckdb_session

            with duckdb_session(None, settings) as db:
                report.warehouse_tables = erase_warehouse(db, meter_id, "?")
        if registry_cursor is not None:
            report.registry_rows = erase_registry(registry_cursor, meter_id, registry_placeholder)
        report.status = "complete"
    except Exception as exc:
        # the record says how far it got; the error names the meter by its pseudonym only
        report.status = "failed"
        report.error = meter_pattern(meter_id).sub(pseudonym, f"{type(exc).__name__}: {exc}")[:2000]
        raise
    finally:
        report.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
        write_audit(root, report)
    log.info(
        "erased meter %s: lake %s, %d marker(s), %d GX file(s), warehouse %s, registry %s; audit %s",
        pseudonym,
        report.lake_rows_by_layer or "nothing",
        report.markers_updated,
        report.gx_files_scrubbed,
        {t: n for t, n in report.warehouse_tables.items() if n} or "nothing",
        "not asked" if report.registry_rows is None else report.registry_rows,
        report.audit_path,
    )
    return report
