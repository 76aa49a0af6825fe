"""Task bodies of `ingest_meter_readings`: plain functions the DAG wires together."""

from __future__ import annotations

import logging
from typing import Any

from metrify import lake
from metrify.config import Settings, load_settings
from metrify.ingest import drain, kafka

log = logging.getLogger(__name__)


def kafka_consumer_config(settings: Settings) -> dict[str, Any]:
    """Consumer configuration from the Airflow connection (`kafka_default`)."""
    from airflow.sdk import BaseHook

    extra = BaseHook.get_connection(settings.kafka_conn_id).extra_dejson
    return kafka.consumer_config(extra, group_id=settings.consumer_group)


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
    )
    log.info(
        "drained %s[%d]: offsets %d..%d, %d messages -> %d rows + %d quarantined in %d batch(es), %.1f s",
        report.topic,
        partition,
        report.start_offset,
        report.end_offset - 1,
        report.messages,
        report.valid_rows,
        report.quarantined,
        report.batches,
        report.seconds,
    )
    return report.as_dict()


def reconcile(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Every message read became a raw row or a quarantined row; fail loudly otherwise."""
    totals = {key: sum(r[key] for r in reports) for key in ("messages", "valid_rows", "quarantined")}
    broken = [r for r in reports if r["messages"] != r["valid_rows"] + r["quarantined"]]
    if broken:
        raise RuntimeError(
            "reconciliation failed: messages != raw rows + quarantined rows for "
            + ", ".join(
                f"{r['topic']}[{r['partition']}] offsets {r['start_offset']}..{r['end_offset'] - 1}" for r in broken
            )
            + ". See RUNBOOK.md#reconciliation-failed"
        )
    partitions = {r["partition"]: [r["start_offset"], r["end_offset"]] for r in reports}
    log.info(
        "micro-batch reconciled: %d messages = %d raw rows + %d quarantined; offsets %s",
        totals["messages"],
        totals["valid_rows"],
        totals["quarantined"],
        partitions,
    )
    if totals["quarantined"]:
        log.warning(
            "%d message(s) quarantined under quarantine/meter_readings/: each row says why", totals["quarantined"]
        )
    return {**totals, "offsets": partitions, "files": sum(r["files"] for r in reports)}
