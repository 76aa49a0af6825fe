"""WATCHER mode after a clear: one `dbt build` again, not one dbt run per model.

Cosmos counts every try after the first as a retry: its producer skips (no second `dbt build`)
and each model's sensor then runs `dbt run`/`dbt test --select <its model>` itself. Airflow's
try number also grows when a task is cleared, so a backfill that reprocesses a completed day, or
an operator clearing the whole `dbt` group, rebuilt the project model by model (measured on the
production-shaped run: a one-day backfill 4 min against 1.5 min for the scheduled run).

Here the attempt is counted from the task's last clear, as Airflow itself counts a sensor's
reschedules (`max_tries - retries` tries were used before the clear):

* the producer's first attempt after a clear builds again, and records the DAG run's clear
  number (`BUILD_CLEAR_XCOM_KEY`);
* a model's sensor on its first attempt after a clear watches that build when the producer
  recorded the run's current clear number (both were cleared together); otherwise (the sensor
  was cleared alone, to rerun its model after a fix) Cosmos's fallback runs its model, as before.

Genuine retries (second attempt since the clear) keep Cosmos's behaviour.
"""

from __future__ import annotations

from typing import Any

#: XCom of the producer: the DAG run's clear number its build belongs to
BUILD_CLEAR_XCOM_KEY = "metrify_build_clear_number"


def attempt_since_clear(ti: Any, retries: int | None) -> int:
    """1 for the first attempt since the task instance was created or last cleared."""
    try_number = int(getattr(ti, "try_number", 1) or 1)
    max_tries = getattr(ti, "max_tries", None)
    if not isinstance(max_tries, int):
        return try_number
    used_before_clear = max(max_tries - (retries or 0), 0)
    return max(try_number - used_before_clear, 1)


def clear_number(context: Any) -> int | None:
    """How often the context's DAG run has been cleared (None when unknown)."""
    value = getattr(context.get("dag_run"), "clear_number", None)
    return value if isinstance(value, int) else None


class _FirstAttempt:
    """The task instance as Cosmos should see it on its first attempt after a clear."""

    try_number = 1

    def __init__(self, ti: Any) -> None:
        self._ti = ti

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ti, name)


def _as_first_attempt(context: Any) -> Any:
    first = _FirstAttempt(context["ti"])
    return {**context, "ti": first, "task_instance": first}


def build_again_after_a_clear(producer: Any) -> None:
    """The producer builds on its first attempt after a clear and records the run's clear number."""
    build = producer.execute

    def execute(context: Any, **kwargs: Any) -> Any:
        ti = context["ti"]
        if attempt_since_clear(ti, producer.retries) == 1:
            ti.xcom_push(key=BUILD_CLEAR_XCOM_KEY, value=clear_number(context))
            if ti.try_number > 1:
                context = _as_first_attempt(context)
        return build(context, **kwargs)

    producer.execute = execute


def watch_the_build_of_the_same_clear(sensor: Any, producer_task_id: str) -> None:
    """A model's sensor cleared together with the producer watches the producer's new build."""
    watch = sensor.execute

    def execute(context: Any, **kwargs: Any) -> Any:
        ti = context["ti"]
        if ti.try_number > 1 and attempt_since_clear(ti, sensor.retries) == 1:
            current = clear_number(context)
            built_in = ti.xcom_pull(task_ids=producer_task_id, key=BUILD_CLEAR_XCOM_KEY)
            if current is not None and built_in == current:
                context = _as_first_attempt(context)
        return watch(context, **kwargs)

    sensor.execute = execute
