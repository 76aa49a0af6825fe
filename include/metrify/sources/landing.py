"""Writing polled data into the lake: raw partitions (idempotent) and quarantine (with reasons).

Raw files are keyed by the data interval they hold, so running or backfilling an interval again
replaces the same file:

    raw/grid_status/operator=<op>/date=YYYY-MM-DD/hour=HH/<YYYYMMDDTHHMM>.parquet  (reading_ts, UTC)
    raw/weather/source=<dwd|openweathermap>/date=YYYY-MM-DD/hour=HH/<YYYYMMDDTHH00>.parquet
    quarantine/<dataset>/date=YYYY-MM-DD/<source>+<subject>+<YYYYMMDDTHHMM>.parquet

A quarantine row keeps the source, the subject (operator or city), the interval, the redacted
request, the raw payload (first 1 MB) and the reason.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from metrify import lake
from metrify.sources import PayloadError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

QUARANTINE_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("subject", pa.string()),
        ("interval_start", pa.timestamp("us", tz="UTC")),
        ("interval_end", pa.timestamp("us", tz="UTC")),
        ("request", pa.string()),
        ("raw_payload", pa.string()),
        ("reason", pa.string()),
        ("quarantined_at", pa.timestamp("us", tz="UTC")),
    ]
)
MAX_PAYLOAD = 1_000_000


def stamp(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y%m%dT%H%M")


def safe(value: str) -> str:
    """A partition/file-name-safe form of a name (keeps letters incl. umlauts, digits, - and _);
    a name with none of them becomes `unnamed`, so a file name never loses a part."""
    return re.sub(r"[^\w\-]+", "_", value).strip("_") or "unnamed"


def raw_path(root: ObjectStoragePath, dataset: str, key: str, value: str, ts: datetime, name: str) -> ObjectStoragePath:
    ts = ts.astimezone(UTC)
    return (
        lake.partition_path(
            root, "raw", dataset, **{key: safe(value)}, date=ts.strftime("%Y-%m-%d"), hour=ts.strftime("%H")
        )
        / f"{name}.parquet"
    )


def quarantine(
    root: ObjectStoragePath,
    dataset: str,
    error: PayloadError,
    subject: str,
    interval_start: datetime,
    interval_end: datetime,
) -> ObjectStoragePath:
    """Write one quarantine row for a bad payload; the same source/subject/interval overwrites."""
    row = {
        "source": error.source,
        "subject": subject,
        "interval_start": interval_start.astimezone(UTC),
        "interval_end": interval_end.astimezone(UTC),
        "request": error.request,
        "raw_payload": error.raw[:MAX_PAYLOAD],
        "reason": error.reason,
        "quarantined_at": datetime.now(UTC),
    }
    table = pa.Table.from_pylist([row], schema=QUARANTINE_SCHEMA)
    path = (
        lake.partition_path(root, "quarantine", dataset, date=interval_start.astimezone(UTC).strftime("%Y-%m-%d"))
        / f"{safe(error.source)}+{safe(subject)}+{stamp(interval_start)}.parquet"
    )
    lake.write_parquet(table, path)
    return path
