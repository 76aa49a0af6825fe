"""
### Release a blocked interval (an explicit operator action)

The quality gate blocks an interval when a critical expectation fails: nothing of it reaches
the warehouse, and the `quality_gate_intervals` mart shows it as *blocked* with the failed
expectations. When an operator has checked the data and decided it is usable anyway (a known
sensor change, a fleet event that looks like a fault), trigger this DAG with the interval and
a reason:

* **dataset** – `meter_readings` (judged per hour: give the hour), `grid_status` or `weather`
  (judged per UTC day: leave the hour empty);
* **date** – the UTC date of the interval; **hour** – 0..23 for meter readings;
* **reason** – what was checked and why the data is usable (kept with the release).

`record_release` writes the release (who, when, why, and the raw files it covers) to
`_quality_releases/<dataset>/`, then `judge_again` triggers the dataset's quality DAG for that
interval: the gate publishes the usable rows (the row-level quarantine still applies) with status
*released*, and the warehouse loads them on its next run. If the interval's raw files change
afterwards (late data), the release no longer applies and the interval is judged afresh.
RUNBOOK.md, section *Quality gate failed*.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, get_current_context, task

from metrify.oncall.defaults import deadline, default_args


@dag(
    dag_id="release_quality_interval",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args=default_args(execution_timeout=timedelta(minutes=10)),
    deadline=deadline(timedelta(minutes=30), "release_quality_interval"),
    params={
        "dataset": Param("meter_readings", type="string", enum=["meter_readings", "grid_status", "weather"]),
        "date": Param("", type="string", format="date", description="UTC date of the interval (YYYY-MM-DD)"),
        "hour": Param(None, type=["null", "integer"], minimum=0, maximum=23, description="meter_readings only"),
        "reason": Param("", type="string", minLength=10, description="what was checked; why the data is usable"),
    },
    render_template_as_native_obj=True,
    tags=["metrify", "quality", "operator-action"],
    doc_md=__doc__,
)
def release_quality_interval() -> None:
    @task
    def record_release(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from metrify.quality.tasks import record_release

        params = params or {}
        dag_run = get_current_context().get("dag_run")
        released_by = getattr(dag_run, "triggering_user_name", None) or "unknown operator"
        return record_release(params["dataset"], params["date"], params.get("hour"), params["reason"], released_by)

    release = record_release()
    judge_again = TriggerDagRunOperator(
        task_id="judge_again",
        trigger_dag_id="{{ ti.xcom_pull(task_ids='record_release')['dag_id'] }}",
        conf="{{ ti.xcom_pull(task_ids='record_release')['conf'] }}",
    )
    release >> judge_again


release_quality_interval()
