"""What every Metrify DAG shares: owner, retries, timeouts, failure alerts and deadlines.

Read at DAG parse time, so no I/O here: only settings from the environment.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from metrify.config import load_settings

OWNER = "metrify-data-eng"


def default_args(execution_timeout: timedelta = timedelta(minutes=30), **overrides: Any) -> dict[str, Any]:
    """Retries with exponential backoff, a timeout and an on-call alert for every task.

    `METRIFY_TASK_RETRIES` (default 3) lets a local drill or a browser test see a failure at once.
    """
    from metrify.oncall.alerts import FailureNotifier

    return {
        "owner": OWNER,
        "retries": load_settings().task_retries,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=15),
        "execution_timeout": execution_timeout,
        "on_failure_callback": [FailureNotifier()],
        **overrides,
    }


def deadline(within: timedelta, dag_id: str) -> Any:
    """A DeadlineAlert: alert when a run has not finished `within` after it was queued.

    `METRIFY_DEADLINE_ALERTS=off` leaves it out: `metrify_dev.airflow_env` sets it for
    `airflow dags test`, which fails on DAGs with deadlines in Airflow 3.3.2.
    """
    # exported lazily by airflow.sdk, which its type stubs do not show
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference  # type: ignore[attr-defined]

    if not load_settings().deadline_alerts:
        return None

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=within,
        callback=AsyncCallback(
            "metrify.oncall.alerts.deadline_missed",
            kwargs={"dag_id": dag_id, "message": f"{dag_id} did not finish within {within} of being queued"},
        ),
    )
