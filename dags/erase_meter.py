"""
### Erase one meter's data (GDPR Art. 17), on request only

Trigger with the meter id in the conf: `{"meter_id": "DE0000011011500000000000000000001"}`
(UI: *Trigger DAG w/ config*; CLI: `airflow dags trigger erase_meter --conf '{"meter_id": "..."}'`).
A value that is not a meter id (letters and digits, then `.`, `_`, `-`; at most 64 characters)
is refused before anything is touched.

`erase` removes every row of the meter from the lake (raw, validated, quarantine, anomalies,
quality scores: each affected Parquet file rewritten atomically without them), the warehouse
(every table with a `meter_id` column) and the operational registry, and writes the audit
record to `_audit/erasures/` in the lake: the meter by its pseudonym only, who triggered the
run, the run id, when, and the rows removed per file, layer, table and registry. Running it
again for the same meter removes nothing and records that. README, section *Personal data*;
RUNBOOK.md, section *Erasure and retention*.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from metrify.oncall.defaults import deadline, default_args
from metrify.privacy.tasks import warehouse_pool


@dag(
    dag_id="erase_meter",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(execution_timeout=timedelta(minutes=60), pool=warehouse_pool()),
    deadline=deadline(timedelta(minutes=120), "erase_meter"),
    params={
        "meter_id": Param(
            "",
            type="string",
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
            description="the meter id to erase everywhere",
        ),
        "registry": Param(True, type="boolean", description="also delete the meter from the operational registry"),
    },
    tags=["metrify", "privacy", "operator-action"],
    doc_md=__doc__,
)
def erase_meter() -> None:
    @task
    def erase(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from metrify.privacy.tasks import erase, meter_id_from_conf

        context = get_current_context()
        dag_run = context.get("dag_run")
        meter_id = meter_id_from_conf(params, getattr(dag_run, "conf", None))
        requested_by = getattr(dag_run, "triggering_user_name", None) or "unknown operator"
        return erase(
            meter_id, requested_by, getattr(dag_run, "run_id", None), bool((params or {}).get("registry", True))
        )

    erase()


erase_meter()
