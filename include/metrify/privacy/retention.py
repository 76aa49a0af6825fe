"""Retention: each lake layer keeps its `date=` partitions for `METRIFY_RETENTION_DAYS_<LAYER>` days.

`apply_retention()` (the daily DAG `apply_retention`) removes, in every dataset of each layer
with a limit (`Settings.retention_days`; 0 keeps the layer forever), the `date=YYYY-MM-DD`
partitions older than the limit: a partition of day D goes once D < today (UTC) - days. Only
`date=` folders directly below `<layer>/<dataset>/` are touched, never the state and audit
folders (`_state/`, `_quality/`, `_audit/`, ...). What was removed is logged and recorded in
`_audit/retention/<when>.json`.

The warehouse is not trimmed here: the DuckDB warehouse empties an interval whose validated
files are gone on its next sync; the dbt facts keep their history (see README, "Personal data").
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import date as Date
from typing import TYPE_CHECKING, Any

from metrify import lake, validate
from metrify.config import Settings, load_settings

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

AUDIT_FOLDER = "_audit/retention"
_DATE_FOLDER = re.compile(r"date=(\d{4}-\d{2}-\d{2})")


@dataclass
class RemovedPartition:
    path: str  # relative to the lake root: <layer>/<dataset>/date=YYYY-MM-DD
    files: int


@dataclass
class RetentionReport:
    today: str
    retention_days: dict[str, int]
    removed: list[RemovedPartition] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "partitions_removed": len(self.removed), "files_removed": self.files}

    @property
    def files(self) -> int:
        return sum(p.files for p in self.removed)


def _children(path: ObjectStoragePath) -> list[str]:
    if not path.exists():
        return []
    return sorted(str(p).rstrip("/").rsplit("/", 1)[-1] for p in path.fs.ls(path.path, detail=False))


def expired_partitions(root: ObjectStoragePath, layer: str, days: int, today: Date) -> list[ObjectStoragePath]:
    """The `date=` partitions of every dataset of `layer` older than `days` before `today`."""
    if days <= 0:
        return []
    cutoff = today - timedelta(days=days)
    base = root / validate.name(layer, "layer")
    found = []
    for dataset in _children(base):
        if dataset.startswith("_") or not (base / dataset).is_dir():
            continue
        for name in _children(base / dataset):
            match = _DATE_FOLDER.fullmatch(name)
            if match and Date.fromisoformat(validate.iso_date(match.group(1), "partition date")) < cutoff:
                found.append(base / dataset / name)
    return found


def apply_retention(
    settings: Settings | None = None, today: Date | None = None, root: ObjectStoragePath | None = None
) -> RetentionReport:
    """Remove the partitions past each layer's retention; record and return what was removed."""
    settings = settings or load_settings()
    root = root if root is not None else lake.lake_root(settings)
    today = today or datetime.now(UTC).date()
    report = RetentionReport(today.isoformat(), dict(settings.retention_days))
    base = str(root.path).rstrip("/") + "/"
    for layer, days in sorted(settings.retention_days.items()):
        for partition in expired_partitions(root, layer, days, today):
            files = lake.list_files(partition, suffix="")
            partition.fs.rm(partition.path, recursive=True)
            relative = str(partition.path)[len(base) :]
            report.removed.append(RemovedPartition(relative, len(files)))
            log.info("retention %s: removed %s (%d file(s), older than %d days)", layer, relative, len(files), days)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    lake.write_json(report.as_dict(), root / AUDIT_FOLDER / f"{stamp}.json")
    log.info(
        "retention applied (%s): %d partition(s), %d file(s) removed",
        ", ".join(f"{k}={v or 'forever'}" for k, v in sorted(report.retention_days.items())),
        len(report.removed),
        report.files,
    )
    return report
