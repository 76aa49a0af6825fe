"""
### Lake retention, daily

Removes the `date=` partitions older than each layer's retention
(`METRIFY_RETENTION_DAYS_RAW`, `_QUARANTINE`, `_VALIDATED`, `_SUBSTITUTED`, `_ANOMALIES`,
`_QUALITY`, `_FORECAST`; 0 keeps a layer forever) from every dataset of the layer, and records
what it removed in `_audit/retention/`. State and audit folders (`_state/`, `_quality/`, `_audit/`) are never
touched. README, section *Personal data*; RUNBOOK.md, section *Erasure and retention*.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from metrify.oncall.defaults import deadline, default_args


@dag(
    dag_id="apply_retention",
    schedule="15 4 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(execution_timeout=timedelta(minutes=60)),
    deadline=deadline(timedelta(minutes=120), "apply_retention"),
    tags=["metrify", "privacy", "retention"],
    doc_md=__doc__,
)
def apply_retention() -> None:
    @task
    def remove_expired_partitions() -> dict:
        from metrify.privacy.tasks import retention

        return retention()

    remove_expired_partitions()


apply_retention()
