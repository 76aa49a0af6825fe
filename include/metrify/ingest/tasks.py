"""Task bodies of `ingest_meter_readings`: plain functions the DAG wires together."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from metrify import lake, redaction
from metrify.config import Settings, load_settings
from metrify.contracts import readings
from metrify.ingest import drain, kafka

log = logging.getLogger(__name__)


def kafka_consumer_config(settings: Settings) -> dict[str, Any]:
    """Consumer configuration from the Airflow connection (`kafka_default`)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(settings.kafka_conn_id)
    extra = conn.extra_dejson
    redaction.register_connection_values(conn.password, extra)  # sasl.password & co. reach no log or alert
    return kafka.consumer_config(extra, group_id=settings.consumer_group, batch_bytes=settings.batch_bytes)


def list_partitions() -> list[int]:
    settings = load_settings()
    return kafka.partitions(kafka_consumer_config(settings), settings.meter_topic)


def drain_one(partition: int) -> dict[str, Any]:
    settings = load_settings()
    report = drain.drain_partition(
        kafka_consumer_config(settings),
        settings.meter_topic,
        partition,
        lake.lake_root(settings),
        batch_size=settings.batch_size,
        batch_bytes=settings.batch_bytes,
        home=str(settings.home),
        late_lookback=settings.late_lookback,
    )
    log.info(
        "drained %s[%d]: offsets %d..%d, %d messages read -> %d rows + %d quarantined (%d too late) in %d "
        "batch(es), %.1f s",
        report.topic,
        partition,
        report.start_offset,
        report.end_offset - 1,
        report.consumed,
        report.valid_rows,
        report.quarantined,
        report.too_late,
        report.batches,
        report.seconds,
    )
    return report.as_dict()


def rows_in_files(files: list[str], settings: Settings) -> int:
    """Rows of the given lake files, counted from their Parquet footers (not from the drain)."""
    import pyarrow.parquet as pq
    from airflow.sdk import ObjectStoragePath

    total = 0
    for url in files:
        path = (
            ObjectStoragePath(url) if url.startswith("file:") else ObjectStoragePath(url, conn_id=settings.lake_conn_id)
        )
        with path.open("rb") as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


def reconcile(
    reports: list[dict[str, Any]], context: Mapping[str, Any] | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Each partition's Kafka offset range = messages read + gaps Kafka reported (compaction,
    transaction markers), and messages read = rows in the files the drain published (raw +
    quarantine), counted from the files themselves. Fails loudly, naming partition and offsets.

    Readings quarantined as too late (in any partition) page on-call once per run, with the
    task's `context` (Airflow's) naming the run.
    """
    settings = settings or load_settings()
    problems = []
    for r in reports:
        where = f"{r['topic']}[{r['partition']}] offsets {r['start_offset']}..{r['end_offset'] - 1}"
        span = r["end_offset"] - r["start_offset"]
        if span != r["consumed"] + r["gaps"]:
            problems.append(f"{where}: {span} offsets but {r['consumed']} messages read + {r['gaps']} gaps")
        in_lake = rows_in_files(r["files"], settings)
        if in_lake != r["consumed"]:
            problems.append(f"{where}: {r['consumed']} messages read but {in_lake} rows in the published files")
    if problems:
        raise RuntimeError("reconciliation failed: " + "; ".join(problems) + ". See RUNBOOK.md#reconciliation-failed")
    totals = {key: sum(r[key] for r in reports) for key in ("consumed", "gaps", "valid_rows", "quarantined")}
    totals["too_late"] = sum(r.get("too_late", 0) for r in reports)
    partitions = {r["partition"]: [r["start_offset"], r["end_offset"]] for r in reports}
    log.info(
        "micro-batch reconciled: %d messages read (+%d gaps) = %d raw rows + %d quarantined, counted in the "
        "published files; offsets %s",
        totals["consumed"],
        totals["gaps"],
        totals["valid_rows"],
        totals["quarantined"],
        partitions,
    )
    if totals["quarantined"]:
        log.warning(
            "%d message(s) quarantined under quarantine/meter_readings/: each row says why", totals["quarantined"]
        )
    if totals["too_late"]:
        alert_too_late(reports, context or {}, settings)
    return {**totals, "offsets": partitions, "files": sum(len(r["files"]) for r in reports)}


def alert_too_late(reports: list[dict[str, Any]], context: Mapping[str, Any], settings: Settings) -> None:
    """One on-call alert for all the readings of a run quarantined as too late."""
    from metrify.oncall import alerts

    late = [r for r in reports if r.get("too_late")]
    alert = alerts.build_alert("too-late readings quarantined", dict(context))
    alert["error"] = (
        f"{sum(r['too_late'] for r in late)} reading(s) older than the {settings.late_lookback_days}-day "
        f"lookback (METRIFY_LATE_LOOKBACK_DAYS) were quarantined with reason '{readings.TOO_LATE} ...' under "
        f"quarantine/{readings.DATASET}/: "
        + ", ".join(f"{r['topic']}[{r['partition']}]: {r['too_late']}" for r in late)
    )
    alerts.send(alert)  # redacted, delivered and logged there
