"""A retry of one WATCHER model task of the real `transform` DAG rebuilds that model alone; a
model task cleared together with the producer watches the producer's new build instead.

In WATCHER mode one producer task runs `dbt build` and each model's `run` task only watches it;
on a retry (try 2 and later, the producer finished) Cosmos's sensor runs `dbt run --select
<its model>` itself. The oracle is the warehouse: both sibling marts are dropped, the retried
task's table comes back with the rows it had, and its sibling stays missing (no second build).
After a clear (a backfill reprocessing a day) the try number grows too: there the sensor must
not rebuild its model when the producer built again in the same clear
(`metrify.warehouse.watcher_clears`), and must when it was cleared alone.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from metrify import lake
from metrify.config import load_settings
from metrify.quality.verdicts import read_verdicts
from metrify.warehouse import dbt_runner, duckdb_loader
from metrify_dev import airflow_env
from metrify_dev import sample_lake as wd
from tests import REPO_ROOT

pytestmark = pytest.mark.airflow

# two marts of the same layer, neither upstream of the other
MODEL = "marts.fct_grid_status"
SIBLING = "marts.fct_weather_hourly"
RUN_ID = "manual__watcher-retry"


@pytest.fixture(scope="module")
def warehouse(warehouse_home, tmp_path_factory):
    """The warehouse built from the sample lake as an hourly `transform` run's producer builds it."""
    root = lake.lake_root()
    data = wd.build_lake(root, meters=5, days=1)
    duckdb_loader.sync()
    duckdb_loader.load_registry_duckdb(data.registry)
    duckdb_loader.load_verdicts_duckdb(read_verdicts(root).to_pandas())
    build = dbt_runner.run_dbt(
        ["build", "--exclude", "path:models/metrics"], target_path=tmp_path_factory.mktemp("dbt-target")
    )
    assert build.success, build.failures
    return warehouse_home


@pytest.fixture(scope="module")
def transform(warehouse):
    """The `transform` DAG as the DAG processor parses it (from the dbt manifest)."""
    if not load_settings().dbt_manifest.exists():
        dbt_runner.build_manifest()
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "transform.py"))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags["transform"]


def rows(relation: str) -> list[tuple] | None:
    """The relation's rows (keys, dates and counts: no floating-point aggregates, whose last digits
    follow DuckDB's summation order, nor load times) in a stable order, or None when it is missing."""
    schema, name = relation.split(".")
    with duckdb_loader.connect_duckdb() as conn:
        columns = [
            column
            for column, kind in conn.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = ? and table_name = ? order by ordinal_position",
                [schema, name],
            ).fetchall()
            if not column.startswith("_") and kind not in ("DOUBLE", "FLOAT")
        ]
        if not columns:
            return None
        return conn.execute(f"select {', '.join(columns)} from {relation} order by all").fetchall()


def _drop(*relations: str) -> None:
    with duckdb_loader.connect_duckdb() as conn:
        for relation in relations:
            conn.execute(f"drop table {relation}")


class RetriedTaskInstance:
    """The task instance the task runner hands a task: the run, the try number, and the XComs of
    the run (what the producer published before its `dbt build`)."""

    def __init__(
        self, task: Any, try_number: int, xcoms: dict[tuple[str, str], Any], max_tries: int | None = None
    ) -> None:
        self.task = task
        self.task_id = task.task_id
        self.dag_id = task.dag_id
        self.run_id = RUN_ID
        self.map_index = -1
        self.try_number = try_number
        self.max_tries = task.retries if max_tries is None else max_tries
        self.xcoms = xcoms

    def xcom_pull(self, task_ids: Any = None, key: str = "return_value", **_: Any) -> Any:
        return self.xcoms.get((task_ids, key))

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[(self.task_id, key)] = value


class Supervisor:
    """The task runner's channel to the API server, answering only what the sensor may ask: the
    state of the producer in this run. Any other request fails the test."""

    def __init__(self, dag_id: str, states: dict[str, str]) -> None:
        self.dag_id = dag_id
        self.states = states
        self.requests: list[Any] = []

    def send(self, msg: Any) -> Any:
        from airflow.sdk.execution_time.comms import GetTaskStates, TaskStatesResult

        self.requests.append(msg)
        assert isinstance(msg, GetTaskStates) and msg.dag_id == self.dag_id and msg.run_ids == [RUN_ID], msg
        return TaskStatesResult(task_states={RUN_ID: {t: self.states[t] for t in msg.task_ids or []}})


class ClearedRun:
    """What the task runner knows of the DAG run: how often it was cleared."""

    def __init__(self, clear_number: int) -> None:
        self.clear_number = clear_number


def run_like_the_task_runner(
    task: Any,
    try_number: int,
    monkeypatch: pytest.MonkeyPatch,
    max_tries: int | None = None,
    clear_number: int = 0,
    producer_xcoms: dict[str, Any] | None = None,
    ran: list[Any] | None = None,
) -> str:
    """Execute `task` as the task runner does on try `try_number` of run RUN_ID (cleared
    `clear_number` times, the last time with `max_tries` set), after the producer (the one `dbt
    build`) succeeded, having published `producer_xcoms`; "succeeded" or "deferred" (left to the
    database to judge: a deferred sensor waits for the producer and builds nothing). The copy of
    `task` that ran is appended to `ran`."""
    ran = [] if ran is None else ran
    from airflow.sdk.exceptions import TaskDeferred
    from airflow.sdk.execution_time import task_runner
    from cosmos.constants import _PRODUCER_CMD_FLAGS_XCOM_KEY

    producer = task.dag.get_task(task.producer_task_id)
    supervisor = Supervisor(task.dag_id, {producer.task_id: "success"})
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", supervisor, raising=False)
    for conn_id, conn in airflow_env.duckdb_connection().items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    xcoms = {(producer.task_id, _PRODUCER_CMD_FLAGS_XCOM_KEY): producer.add_cmd_flags()}
    xcoms |= {(producer.task_id, key): value for key, value in (producer_xcoms or {}).items()}
    ti = RetriedTaskInstance(task, try_number, xcoms, max_tries=max_tries)
    runnable = task.prepare_for_execution()  # the copy the task runner renders and runs
    context = {
        "ti": ti,
        "task_instance": ti,
        "task": runnable,
        "run_id": RUN_ID,
        "params": {},
        "dag_run": ClearedRun(clear_number),
    }
    try:
        task_runner._run_execute_callable(context, runnable.execute, runnable)
        outcome = "succeeded"
    except TaskDeferred:
        outcome = "deferred"
    # it asked for the producer's state, as a retry does before it runs its model
    assert [m.task_ids for m in supervisor.requests] == [[producer.task_id]], supervisor.requests
    ran.append(runnable)
    return outcome


def test_a_retried_model_task_rebuilds_its_model_and_nothing_else(transform, monkeypatch):
    from cosmos.operators.watcher import DbtRunWatcherOperator

    sensor = transform.get_task(f"dbt.{MODEL.split('.')[1]}.run")
    sibling = transform.get_task(f"dbt.{SIBLING.split('.')[1]}.run")
    for task in (sensor, sibling):
        assert isinstance(task, DbtRunWatcherOperator) and task.retries >= 1, task.task_id
    before = {relation: rows(relation) for relation in (MODEL, SIBLING)}
    assert all(before.values()), before  # built, not empty
    _drop(MODEL, SIBLING)
    assert rows(MODEL) is None and rows(SIBLING) is None

    retry = 2  # the first retry
    started = time.perf_counter()
    outcome = run_like_the_task_runner(sensor, try_number=retry, monkeypatch=monkeypatch)
    print(f"\nretry of {sensor.task_id}: {outcome} in {time.perf_counter() - started:.1f}s")

    after = rows(MODEL)
    assert after is not None, f"{sensor.task_id} on try {retry} ({outcome}) did not rebuild {MODEL}"
    assert len(after) == len(before[MODEL]), (len(after), len(before[MODEL]))
    assert after == before[MODEL]
    assert rows(SIBLING) is None, f"the retry of {sensor.task_id} rebuilt {SIBLING} too: a second build, not its model"


def test_a_model_task_cleared_with_the_producer_watches_its_new_build(transform, monkeypatch):
    """A backfill reprocessing a completed day clears every task: try 2 of each, the first since
    the clear. The producer built again (it recorded this clear, the run's first); the model's
    sensor takes the status that build published and runs no dbt of its own."""
    from cosmos.operators._watcher.state import get_compiled_sql_xcom_key, get_status_xcom_key

    from metrify.warehouse.watcher_clears import BUILD_CLEAR_XCOM_KEY

    sensor = transform.get_task(f"dbt.{MODEL.split('.')[1]}.run")
    before = rows(MODEL)
    assert before, "the module's build left the model empty"
    _drop(MODEL)  # had the sensor run dbt itself, the table would come back
    unique_id = f"model.metrify.{MODEL.split('.')[1]}"
    compiled = "select 'as the producer compiled it'"
    published = {
        BUILD_CLEAR_XCOM_KEY: 1,
        get_status_xcom_key(unique_id): {"status": "success", "outlet_uris": []},
        get_compiled_sql_xcom_key(unique_id): compiled,
    }
    ran: list[Any] = []
    try:
        outcome = run_like_the_task_runner(
            sensor,
            try_number=2,
            max_tries=1 + sensor.retries,  # cleared after its first try
            clear_number=1,
            producer_xcoms=published,
            monkeypatch=monkeypatch,
            ran=ran,
        )
        assert outcome == "succeeded"
        assert rows(MODEL) is None, f"{sensor.task_id}, cleared with the producer, ran its model itself"
        # Cosmos ran on the task runner's copy (what the Rendered Template tab shows), not the original
        assert ran[0].compiled_sql == compiled and sensor.compiled_sql != compiled
    finally:
        dbt_build = dbt_runner.run_dbt(["run", "--select", MODEL.split(".")[1]])
        assert dbt_build.success, dbt_build.failures


def test_a_model_task_cleared_alone_rebuilds_its_model(transform, monkeypatch):
    """An on-call engineer fixed a model and cleared its task only: the producer's last build
    belongs to an earlier clear, so the sensor runs its model itself (Cosmos's fallback)."""
    from cosmos.operators._watcher.state import get_status_xcom_key

    from metrify.warehouse.watcher_clears import BUILD_CLEAR_XCOM_KEY

    sensor = transform.get_task(f"dbt.{MODEL.split('.')[1]}.run")
    before = rows(MODEL)
    assert before
    _drop(MODEL)
    unique_id = f"model.metrify.{MODEL.split('.')[1]}"
    published = {BUILD_CLEAR_XCOM_KEY: 0, get_status_xcom_key(unique_id): {"status": "error", "outlet_uris": []}}
    outcome = run_like_the_task_runner(
        sensor,
        try_number=2,
        max_tries=1 + sensor.retries,
        clear_number=1,
        producer_xcoms=published,
        monkeypatch=monkeypatch,
    )
    assert outcome == "succeeded"
    assert rows(MODEL) == before, f"{sensor.task_id}, cleared alone, did not rebuild {MODEL}"
