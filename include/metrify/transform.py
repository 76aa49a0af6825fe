"""Cosmos configuration for the warehouse DAGs (kept light: DAG files import this at parse time).

* Render: from the dbt manifest (`LoadMode.DBT_MANIFEST`), written by `metrify.warehouse.build_manifest()`
  (`dbt parse`, run by `metrify`/the Makefile before Airflow starts, never at DAG parse time).
* Execute: `ExecutionMode.LOCAL` with `InvocationMode.DBT_RUNNER` (dbt in the task process).
* Profile: from Airflow connections. `METRIFY_WAREHOUSE_TARGET=duckdb` (default) maps the
  connection `metrify_duckdb` (host = path of the DuckDB file); `snowflake` maps
  `snowflake_default` with Cosmos's key-pair mapping (private key content in the connection's
  extra, `private_key_content`; Snowflake refuses password-only logins for service users).
* The project path comes from the `metrify` package (`<repo>/dbt`) or `METRIFY_DBT_DIR`, so
  moving the DAG folder breaks nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from metrify.settings import PROJECT_ROOT

DUCKDB_CONN_ID = "metrify_duckdb"
SNOWFLAKE_CONN_ID = "snowflake_default"
REGISTRY_CONN_ID = "postgres_default"


def dbt_dir() -> Path:
    return Path(os.environ.get("METRIFY_DBT_DIR") or PROJECT_ROOT / "dbt")


def manifest_path() -> Path:
    return dbt_dir() / "target" / "manifest.json"


def target() -> str:
    value = os.environ.get("METRIFY_WAREHOUSE_TARGET", "duckdb").lower()
    if value not in ("duckdb", "snowflake"):
        raise ValueError(f"METRIFY_WAREHOUSE_TARGET must be 'duckdb' or 'snowflake', got {value!r}")
    return value


def project_config() -> Any:
    from cosmos import ProjectConfig

    manifest = manifest_path()
    if not manifest.exists():
        raise FileNotFoundError(
            f"dbt manifest {manifest} is missing: run `python -c 'import metrify.warehouse as w; "
            "w.build_manifest()'` (dbt parse; `metrify run` does it) before starting Airflow")
    return ProjectConfig(dbt_project_path=dbt_dir(), manifest_path=manifest, project_name="metrify",
                         install_dbt_deps=False)  # the project has no packages


def profile_config() -> Any:
    from cosmos import ProfileConfig

    if target() == "snowflake":
        from cosmos.profiles import SnowflakePrivateKeyPemProfileMapping

        mapping = SnowflakePrivateKeyPemProfileMapping(conn_id=SNOWFLAKE_CONN_ID)
        return ProfileConfig(profile_name="metrify", target_name="snowflake", profile_mapping=mapping)
    from cosmos.profiles import DuckDBUserPasswordProfileMapping

    mapping = DuckDBUserPasswordProfileMapping(conn_id=DUCKDB_CONN_ID, profile_args={"threads": 1})
    return ProfileConfig(profile_name="metrify", target_name="duckdb", profile_mapping=mapping)


EXECUTION_MODES = ("local", "watcher")
DEFAULT_EXECUTION_MODE = "watcher"


def execution_mode() -> str:
    """`METRIFY_DBT_EXECUTION_MODE`: `local` (default: one dbt invocation per task) or `watcher`
    (Cosmos's WATCHER: one `dbt build` in a producer task, one sensor per model and its tests).
    The default is the one `python -m metrify.bench_transform_modes` measured faster here."""
    value = os.environ.get("METRIFY_DBT_EXECUTION_MODE", DEFAULT_EXECUTION_MODE).lower()
    if value not in EXECUTION_MODES:
        raise ValueError(f"METRIFY_DBT_EXECUTION_MODE must be one of {EXECUTION_MODES}, got {value!r}")
    return value


def execution_config() -> Any:
    from cosmos import ExecutionConfig
    from cosmos.constants import ExecutionMode, InvocationMode, TestIndirectSelection

    mode = ExecutionMode.WATCHER if execution_mode() == "watcher" else ExecutionMode.LOCAL
    # BUILDABLE: a model's test task runs the tests whose other parents are its ancestors, so a
    # relationship test runs with the child model (after its parent exists), not with the parent.
    return ExecutionConfig(execution_mode=mode, invocation_mode=InvocationMode.DBT_RUNNER,
                           test_indirect_selection=TestIndirectSelection.BUILDABLE)


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
    (clearing them re-runs their model alone). No-op in LOCAL mode.
    """
    from cosmos.constants import PRODUCER_WATCHER_DONE_TASK_ID, PRODUCER_WATCHER_TASK_ID

    prefix = f"{group.group_id}."
    producer_id = prefix + PRODUCER_WATCHER_TASK_ID
    dag = group.dag
    if producer_id not in dag.task_dict:
        return
    producer = dag.task_dict[producer_id]
    for task_id, task in dag.task_dict.items():
        if not task_id.startswith(prefix) or task_id in (producer_id, prefix + PRODUCER_WATCHER_DONE_TASK_ID):
            continue
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


WAREHOUSE_POOL = "duckdb_warehouse"


def pool() -> str:
    """DuckDB allows one writing process: every warehouse task of every DAG queues in a one-slot
    pool (created by `metrify.airflow_env.ensure_db`, and in airflow_settings.yaml)."""
    return WAREHOUSE_POOL if target() == "duckdb" else "default_pool"


def max_active_tasks() -> int:
    """DuckDB allows one writing process at a time; Snowflake runs models in parallel."""
    return 1 if target() == "duckdb" else int(os.environ.get("METRIFY_WAREHOUSE_PARALLELISM", "8"))
