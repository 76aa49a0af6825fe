"""WATCHER mode after a clear: one `dbt build` again, not one dbt run per model.

Cosmos counts every try after the first as a retry: its producer skips (no second `dbt build`)
and each model's sensor then runs `dbt run`/`dbt test --select <its model>` itself. Airflow's
try number also grows when a task is cleared, so a backfill that reprocesses a completed day, or
an operator clearing the whole `dbt` group, rebuilt the project model by model (measured on the
production-shaped run: a one-day backfill 4 min against 81 s for the scheduled run).

Here the attempt is counted from the task's last clear, as Airflow itself counts a sensor's
reschedules (`max_tries - retries` tries were used before the clear):

* the producer's first attempt after a clear builds again, and records the DAG run's clear
  number (`BUILD_CLEAR_XCOM_KEY`);
* a model's sensor on its first attempt after a clear watches that build when the producer
  recorded the run's current clear number (both were cleared together); otherwise (the sensor
  was cleared alone, to rerun its model after a fix) Cosmos's fallback runs its model, as before.

Genuine retries (second attempt since the clear) keep Cosmos's behaviour, and so does a
producer cleared while it was running (Airflow restarts it without a new try budget). The DAG
run's clear number grows on every clear that resets the run (the UI's, a backfill's, the REST
API's default); a sensor cleared alone through the REST API with `reset_dag_runs: false` would
watch the producer's earlier build instead of rerunning its model.
"""

from __future__ import annotations

from typing import Any

#: XCom of the producer: the DAG run's clear number its build belongs to
BUILD_CLEAR_XCOM_KEY = "metrify_build_clear_number"


def attempt_since_clear(ti: Any, retries: int | None) -> int:
    """1 for the first attempt since the task instance was created or last cleared (below 1 when
    the task's retries changed since the clear: then no attempt counts as the first)."""
    try_number = int(getattr(ti, "try_number", 1) or 1)
    max_tries = getattr(ti, "max_tries", None)
    if not isinstance(max_tries, int):
        return try_number
    return try_number - max(max_tries - (retries or 0), 0)


def clear_number(context: Any) -> int | None:
    """How often the context's DAG run has been cleared (None when unknown)."""
    value = getattr(context.get("dag_run"), "clear_number", None)
    return value if isinstance(value, int) else None


class _FirstAttempt:
    """The task instance as Cosmos should see it on its first attempt after a clear: try 1;
    everything else, reads and writes, is the real task instance's."""

    try_number = 1

    def __init__(self, ti: Any) -> None:
        object.__setattr__(self, "_ti", ti)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ti, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._ti, name, value)


def _as_first_attempt(context: Any) -> Any:
    first = _FirstAttempt(context["ti"])
    return {**context, "ti": first, "task_instance": first}


def _run(context: Any, **kwargs: Any) -> Any:
    """Cosmos's own `execute` on the operator the task runner runs: its rendered copy
    (`context["task"]`), never the DAG file's original."""
    operator = context["task"]
    return type(operator).execute(operator, context, **kwargs)


def _build_again(context: Any, **kwargs: Any) -> Any:
    ti = context["ti"]
    if attempt_since_clear(ti, context["task"].retries) == 1:
        ti.xcom_push(key=BUILD_CLEAR_XCOM_KEY, value=clear_number(context))
        if ti.try_number > 1:
            context = _as_first_attempt(context)
    return _run(context, **kwargs)


def _watch_the_same_clear(context: Any, **kwargs: Any) -> Any:
    ti, sensor = context["ti"], context["task"]
    if ti.try_number > 1 and attempt_since_clear(ti, sensor.retries) == 1:
        current = clear_number(context)
        built_in = ti.xcom_pull(task_ids=sensor.producer_task_id, key=BUILD_CLEAR_XCOM_KEY)
        if current is not None and built_in == current:
            context = _as_first_attempt(context)
    return _run(context, **kwargs)


def build_again_after_a_clear(producer: Any) -> None:
    """The producer builds on its first attempt after a clear and records the run's clear number."""
    producer.execute = _build_again


def watch_the_build_of_the_same_clear(sensor: Any) -> None:
    """A model's sensor cleared together with the producer watches the producer's new build."""
    sensor.execute = _watch_the_same_clear
