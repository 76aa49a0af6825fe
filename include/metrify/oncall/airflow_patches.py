"""A fix for an Airflow 3.3 defect on the on-call path, applied in every Airflow component by
`plugins/metrify_airflow_patches.py`.

Every Metrify DAG has a deadline anchored on the run's queued-at time. In Airflow 3.3.0-3.3.2,
clearing a task of a run whose deadline has not passed yet (the usual case: the failure alert
arrives, on-call fixes the cause and clears the task) fails with HTTP 500, `TypeError:
unsupported type for timedelta seconds component: dict`: since 3.3.0 the alert's interval is
stored as serialized JSON and the clear path passes it to `timedelta` undecoded
(apache/airflow#70368, fix proposed in apache/airflow#70370). `patch_clearing_with_deadlines`
replaces that one function with one that decodes the interval the way Airflow's run creation
does, and leaves any other Airflow version alone.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

AFFECTED_VERSIONS = ("3.3.0", "3.3.1", "3.3.2")


def deadline_interval(stored: Any) -> timedelta:
    """The interval of a stored deadline alert: seconds (before 3.3) or serialized JSON (3.3+),
    a timedelta or an interval read from a Variable."""
    from airflow.sdk.definitions.deadline import VariableInterval
    from airflow.sdk.serde import deserialize
    from airflow.serialization.definitions.deadline import SerializedVariableInterval

    if isinstance(stored, int | float):
        return timedelta(seconds=stored)
    value = deserialize(stored)
    if isinstance(value, VariableInterval):
        value = SerializedVariableInterval(key=value.key)
    if isinstance(value, SerializedVariableInterval):
        value = value.resolve()
    if not isinstance(value, timedelta):
        raise TypeError(f"deadline alert interval {stored!r} is not a duration")
    return value


def recalculate_queued_at_deadlines(dagrun: Any, new_queued_at: datetime, session: Any) -> None:
    """Move the unmissed queued-at deadlines of `dagrun` to `new_queued_at` + their interval
    (what Airflow does when a run is cleared), decoding each interval first."""
    from airflow.models.deadline import Deadline, ReferenceModels
    from airflow.models.deadline_alert import DeadlineAlert as DeadlineAlertModel
    from sqlalchemy import false, select

    rows = session.execute(
        select(Deadline, DeadlineAlertModel)
        .join(DeadlineAlertModel, Deadline.deadline_alert_id == DeadlineAlertModel.id)
        .where(
            Deadline.dagrun_id == dagrun.id,
            Deadline.missed == false(),
            DeadlineAlertModel.reference[ReferenceModels.REFERENCE_TYPE_FIELD].as_string()
            == ReferenceModels.DagRunQueuedAtDeadline.__name__,
        )
    ).all()
    for deadline, alert in rows:
        deadline.deadline_time = new_queued_at + deadline_interval(alert.interval)


def patch_clearing_with_deadlines() -> bool:
    """Install the fix if this Airflow has the defect; returns whether it did."""
    import airflow
    from airflow.models import taskinstance

    if airflow.__version__ not in AFFECTED_VERSIONS or not hasattr(
        taskinstance, "_recalculate_dagrun_queued_at_deadlines"
    ):
        return False
    taskinstance._recalculate_dagrun_queued_at_deadlines = recalculate_queued_at_deadlines
    log.debug("clearing runs with queued-at deadlines: Airflow %s fixed (apache/airflow#70368)", airflow.__version__)
    return True
