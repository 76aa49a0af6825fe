"""Drain the Kafka meter topic into partitioned Parquet every 15 minutes, exactly once."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task

from metrify.assets import RAW_METER_READINGS
from metrify.oncall.defaults import deadline, default_args

DOC = """
### Meter readings: Kafka → `raw/meter_readings/` (Parquet)

One mapped `drain` task per topic partition reads from the committed offset up to the high
watermark seen when it starts, in bounded batches, and writes
`raw/meter_readings/date=YYYY-MM-DD/hour=HH/<topic>+<partition>+<first>-<last>.parquet`.
Offsets are committed only after the files are durable, so a retry overwrites instead of
duplicating. Bad messages go to `quarantine/meter_readings/` with their reason.
`reconcile` checks, per partition, offsets = messages read + gaps Kafka reported, and messages
read = rows counted in the published files' Parquet footers, then updates the asset. Readings older
than `METRIFY_LATE_LOOKBACK_DAYS` (35) are quarantined as `too late: ...`; `reconcile` then sends
one on-call alert for the run.

On failure: see `RUNBOOK.md` (sections *Broker down*, *Reconciliation failed*, *Too late readings*).
"""


@dag(
    schedule="*/15 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # one drain per partition at a time
    tags=["metrify", "ingestion", "kafka", "meter_readings"],
    doc_md=DOC,
    default_args=default_args(execution_timeout=timedelta(minutes=30)),
    deadline=deadline(timedelta(minutes=30), "ingest_meter_readings"),
)
def ingest_meter_readings():
    @task
    def list_partitions() -> list[int]:
        from metrify.ingest.tasks import list_partitions

        return list_partitions()

    @task(max_active_tis_per_dagrun=8)
    def drain(partition: int) -> dict:
        from metrify.ingest.tasks import drain_one

        return drain_one(partition)

    @task(outlets=[RAW_METER_READINGS])
    def reconcile(reports: list[dict]) -> dict:
        from metrify.ingest.tasks import reconcile

        return reconcile(list(reports), get_current_context())

    reconcile(drain.expand(partition=list_partitions()))


ingest_meter_readings()
