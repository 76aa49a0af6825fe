"""Cosmos configuration for the warehouse DAGs (kept light: DAG files import this at parse time).

* Render: from the dbt manifest (`LoadMode.DBT_MANIFEST`), written by
  `metrify.warehouse.dbt_runner.build_manifest()`
  (`dbt parse`, run by `metrify`/the Makefile before Airflow starts, never at DAG parse time).
* Execute: `ExecutionMode.LOCAL` with `InvocationMode.DBT_RUNNER` (dbt in the task process).
* Profile: from Airflow connections. `METRIFY_WAREHOUSE_TARGET=duckdb` (default) maps the
  connection `metrify_duckdb` (host = path of the DuckDB file); `snowflake` maps
  `snowflake_default` with Cosmos's key-pair mapping (private key content in the connection's
  extra, `private_key_content`; Snowflake refuses password-only logins for service users).
* The project path is `METRIFY_DBT_DIR` (default `<repo>/dbt`), so moving the DAG folder
  breaks nothing.
* Cosmos's usage telemetry is off unless asked for (`metrify.telemetry`).
"""

from __future__ import annotations

from typing import Any

from metrify.config import load_settings
from metrify.telemetry import telemetry_off


def project_config() -> Any:
    from cosmos import ProjectConfig

    settings = load_settings()
    manifest = settings.dbt_manifest
    if not manifest.exists():
        raise FileNotFoundError(
            f"dbt manifest {manifest} is missing: run `python -c 'from metrify.warehouse.dbt_runner import "
            "build_manifest; build_manifest()'` (dbt parse; `make` does it) before starting Airflow"
        )
    return ProjectConfig(
        dbt_project_path=settings.dbt_dir, manifest_path=manifest, project_name="metrify", install_dbt_deps=False
    )  # the project has no packages


def profile_config() -> Any:
    from cosmos import ProfileConfig

    settings = load_settings()
    if settings.warehouse_target == "snowflake":
        from cosmos.profiles import SnowflakePrivateKeyPemProfileMapping

        mapping = SnowflakePrivateKeyPemProfileMapping(conn_id=settings.snowflake_conn_id)
        return ProfileConfig(profile_name="metrify", target_name="snowflake", profile_mapping=mapping)
    from cosmos.profiles import DuckDBUserPasswordProfileMapping

    mapping = DuckDBUserPasswordProfileMapping(conn_id=settings.duckdb_conn_id, profile_args={"threads": 1})
    return ProfileConfig(profile_name="metrify", target_name="duckdb", profile_mapping=mapping)


def execution_config() -> Any:
    from cosmos import ExecutionConfig
    from cosmos.constants import ExecutionMode, InvocationMode, TestIndirectSelection

    # WATCHER: one `dbt build` in a producer task, one sensor per model and its tests; LOCAL: one
    # dbt invocation per task (`METRIFY_DBT_EXECUTION_MODE`)
    mode = ExecutionMode.WATCHER if load_settings().dbt_execution_mode == "watcher" else ExecutionMode.LOCAL
    # BUILDABLE: a model's test task runs the tests whose other parents are its ancestors, so a
    # relationship test runs with the child model (after its parent exists), not with the parent.
    return ExecutionConfig(
        execution_mode=mode,
        invocation_mode=InvocationMode.DBT_RUNNER,
        test_indirect_selection=TestIndirectSelection.BUILDABLE,
    )


def producer_first(group: Any) -> None:
    """WATCHER mode: make the producer (the one `dbt build`) upstream of the group's first consumers.

    Cosmos orders the producer first only in a DbtDag; in a DbtTaskGroup the first sensors start
    beside it. Under `airflow dags test` (what `metrify run` and the tests use) a sensor that
    starts before the producer defers and its trigger runs inline, blocking the only loop, so the
    producer never ran (seen here: "Deferring model 'seed.metrify.cities' ... running trigger in
    line", then "XCom not found" every 10 s). On DuckDB nothing is lost: the producer holds the
    one warehouse pool slot for the whole build anyway. The first consumers run when the producer
    succeeded or was skipped (Cosmos skips a producer retry; each consumer then falls back to
    `dbt run`/`dbt test --select <its model>`), and fail upstream when it failed or never ran
    (clearing them re-runs their model alone). After a clear of the producer and its sensors
    together (a backfill reprocessing a day, the whole group cleared) the producer builds again
    and the sensors watch that build (`metrify.warehouse.watcher_clears`). No-op in LOCAL mode.
    """
    from cosmos.constants import PRODUCER_WATCHER_DONE_TASK_ID, PRODUCER_WATCHER_TASK_ID

    from metrify.warehouse.watcher_clears import build_again_after_a_clear, watch_the_build_of_the_same_clear

    prefix = f"{group.group_id}."
    producer_id = prefix + PRODUCER_WATCHER_TASK_ID
    dag = group.dag
    if producer_id not in dag.task_dict:
        return
    producer = dag.task_dict[producer_id]
    build_again_after_a_clear(producer)
    for task_id, task in dag.task_dict.items():
        if not task_id.startswith(prefix) or task_id in (producer_id, prefix + PRODUCER_WATCHER_DONE_TASK_ID):
            continue
        if getattr(task, "producer_task_id", None) == producer_id:
            watch_the_build_of_the_same_clear(task)
        if not any(upstream.startswith(prefix) for upstream in task.upstream_task_ids):
            producer >> task
            # after the producer whatever its end, except when it never ran (loads failed): a
            # producer retry is skipped by Cosmos, and the consumers then run their own model
            task.trigger_rule = "none_failed"


def render_config(select: list[str] | None = None, exclude: list[str] | None = None) -> Any:
    from cosmos import RenderConfig
    from cosmos.constants import LoadMode, TestBehavior

    return RenderConfig(
        load_method=LoadMode.DBT_MANIFEST,
        test_behavior=TestBehavior.AFTER_EACH,  # each model: run, then its tests, as tasks
        select=select or [],
        exclude=exclude or [],
        emit_datasets=False,  # the DAG emits one metrify:// asset when the warehouse is built
        enable_mock_profile=True,
    )


HOURLY_TEST_WINDOW_HOURS = 48


def operator_args(hourly: bool = False) -> dict[str, Any]:
    """Arguments for every Cosmos task.

    Hourly runs test the rows loaded in the last `HOURLY_TEST_WINDOW_HOURS` hours (dbt var
    `test_window_hours`), so their cost follows the new data; daily runs test everything.
    """
    args: dict[str, Any] = {"retries": 2}
    if hourly:
        args["vars"] = {"test_window_hours": HOURLY_TEST_WINDOW_HOURS}
    return args


def max_active_tasks() -> int:
    """DuckDB allows one writing process at a time; Snowflake runs models in parallel."""
    settings = load_settings()
    return 1 if settings.warehouse_target == "duckdb" else settings.warehouse_parallelism


def pool() -> str:
    """Every warehouse task of every DAG queues in this pool (one slot for DuckDB)."""
    return load_settings().warehouse_pool


def dbt_task_group(hourly: bool) -> Any:
    """The dbt project as a Cosmos task group `dbt` (one task group per model: run, then its
    tests). Hourly runs leave the daily metrics out and test only recent rows."""
    telemetry_off()  # before Cosmos reads its settings, and again for a Cosmos already loaded
    from cosmos import DbtTaskGroup

    telemetry_off()
    group = DbtTaskGroup(
        group_id="dbt",
        project_config=project_config(),
        profile_config=profile_config(),
        execution_config=execution_config(),
        render_config=render_config(exclude=["path:models/metrics"] if hourly else None),
        operator_args=operator_args(hourly=hourly),
    )
    producer_first(group)  # WATCHER mode only
    return group


#: dbt selector of the forecast models (`stg_load_forecast`, `fct_load_forecast`,
#: `forecast_accuracy_daily`, tagged `forecast` in their SQL)
FORECAST_SELECTOR = "tag:forecast"


def forecast_task_group() -> Any:
    """The forecast models only, as a Cosmos task group `dbt_forecast` (run, then tests, per
    model); every task queues in the warehouse pool. Their other parents (the readings and
    the registry) were built by `warehouse_daily` and are read as they are."""
    telemetry_off()
    from cosmos import DbtTaskGroup

    telemetry_off()
    group = DbtTaskGroup(
        group_id="dbt_forecast",
        project_config=project_config(),
        profile_config=profile_config(),
        execution_config=execution_config(),
        render_config=render_config(select=[FORECAST_SELECTOR]),
        operator_args={**operator_args(hourly=False), "pool": pool()},
    )
    producer_first(group)  # WATCHER mode only
    return group
