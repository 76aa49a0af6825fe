"""The gate's verdict markers as one table (`metrify.contracts.verdicts`), for the warehouse."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from metrify import lake
from metrify.contracts import grid, readings, weather
from metrify.contracts.verdicts import VERDICT_SCHEMA

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

GATED_DATASETS = (readings.DATASET, grid.DATASET, weather.DATASET)


def status_of(marker: dict[str, Any]) -> str:
    """passed, blocked or released (markers written before statuses existed: from `passed`)."""
    return str(marker.get("status") or ("passed" if marker.get("passed") else "blocked"))


def verdict_row(dataset: str, marker: dict[str, Any]) -> dict[str, Any]:
    critical = [f for f in marker.get("failures", []) if f.get("severity") == "critical"]
    release = marker.get("release") or {}
    score = (marker.get("score") or {}).get("quality_score")
    return {
        "dataset": dataset,
        "interval_date": marker["date"],
        "interval_hour": marker.get("hour"),
        "status": status_of(marker),
        "judged_rows": marker.get("rows"),
        "validated_rows": marker.get("validated"),
        "quarantined_rows": marker.get("quarantined"),
        "quality_score": score,
        "failed_expectations": "; ".join(f"{f['expectation']}({f['column']})" for f in critical) or None,
        "judged_at": marker.get("judged_at"),
        "released_by": release.get("released_by"),
        "release_reason": release.get("reason"),
    }


def read_verdicts(root: ObjectStoragePath, datasets: tuple[str, ...] = GATED_DATASETS) -> pa.Table:
    """Every verdict marker under `_quality/<dataset>/` as rows of `VERDICT_SCHEMA`."""
    rows = []
    for dataset in datasets:
        for path in lake.list_files(root / "_quality" / dataset, suffix=".json"):
            with root.fs.open(path, "rb") as handle:
                rows.append(verdict_row(dataset, json.loads(handle.read())))
    table = pa.Table.from_pylist(
        [{**r, "interval_date": _date(r["interval_date"]), "judged_at": _timestamp(r["judged_at"])} for r in rows],
        schema=VERDICT_SCHEMA,
    )
    return table.sort_by([("dataset", "ascending"), ("interval_date", "ascending"), ("interval_hour", "ascending")])


def _date(text: str) -> date:
    return date.fromisoformat(text)


def _timestamp(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text)
