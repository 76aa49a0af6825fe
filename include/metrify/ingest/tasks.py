"""Task bodies of `ingest_meter_readings`: plain functions the DAG wires together."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from metrify import lake
from metrify.config import Settings, load_settings
from metrify.contracts import readings
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
        late_lookback=settings.late_lookback,
    )
    log.info(
        "drained %s[%d]: offsets %d..%d, %d messages -> %d rows + %d quarantined (%d too late) in %d batch(es), %.1f s",
        report.topic,
        partition,
        report.start_offset,
        report.end_offset - 1,
        report.messages,
        report.valid_rows,
        report.quarantined,
        report.too_late,
        report.batches,
        report.seconds,
    )
    return report.as_dict()


def reconcile(reports: list[dict[str, Any]], context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every message read became a raw row or a quarantined row; fail loudly otherwise.

    Readings quarantined as too late (in any partition) page on-call once per run, with the
    task's `context` (Airflow's) naming the run.
    """
    totals = {key: sum(r[key] for r in reports) for key in ("messages", "valid_rows", "quarantined")}
    totals["too_late"] = sum(r.get("too_late", 0) for r in reports)
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
    if totals["too_late"]:
        alert_too_late(reports, context or {})
    return {**totals, "offsets": partitions, "files": sum(r["files"] for r in reports)}


def alert_too_late(reports: list[dict[str, Any]], context: Mapping[str, Any]) -> None:
    """One on-call alert for all the readings of a run quarantined as too late."""
    from metrify.oncall import alerts

    late = [r for r in reports if r.get("too_late")]
    alert = alerts.build_alert("too-late readings quarantined", dict(context))
    alert["error"] = (
        f"{sum(r['too_late'] for r in late)} reading(s) older than the {load_settings().late_lookback_days}-day "
        f"lookback (METRIFY_LATE_LOOKBACK_DAYS) were quarantined with reason '{readings.TOO_LATE} ...' under "
        f"quarantine/{readings.DATASET}/: "
        + ", ".join(f"{r['topic']}[{r['partition']}]: {r['too_late']}" for r in late)
    )
    channels = alerts.send(alert)
    log.warning("alert sent (%s): %s", ", ".join(channels) or "no channel", alerts.alert_text(alert))
