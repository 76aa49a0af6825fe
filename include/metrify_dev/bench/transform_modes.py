"""Benchmark: Cosmos execution modes for the warehouse DAGs, as real Airflow runs.

The same DAG (default `transform`) runs with `airflow dags test` under each mode of
`METRIFY_DBT_EXECUTION_MODE` (`local`: ExecutionMode.LOCAL + DBT_RUNNER, one dbt invocation per
task; `watcher`: ExecutionMode.WATCHER, one `dbt build` in a producer task and a sensor per model
and per model's tests), alternating the modes, on the same simulated lake (the warehouse tests'
sample) and starting every run from the same empty DuckDB warehouse. Each run must succeed and
reconcile with the lake, and every mode must leave the same row counts.

Measured per run: the DAG run's duration in the metadata DB (start to end of the run; what a
user waits for), the dbt tasks' summed durations, and the `airflow` process's wall time (adds
~18 s of process start here, the same for both modes).

`--scheduler` measures the other way Airflow runs DAGs: a one-day command-line backfill of
`warehouse_daily` executed by a real scheduler with the LocalExecutor (`metrify_dev.backfill`: API
server, scheduler, DAG processor, plus a triggerer for WATCHER), where every task is its own
process and waits for the one-slot DuckDB pool. Measured: the run's span (first task start to
last task end) and the whole backfill's wall time including the components' start.

    python -m metrify_dev.bench.transform_modes [--meters 20] [--days 2] [--repeats 2]
        [--dag transform] [--scheduler] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from metrify.config import environ_overrides, load_settings
from metrify.warehouse.dbt_runner import build_manifest
from metrify.warehouse.duckdb_loader import summary as warehouse_summary
from metrify.warehouse.reconcile import reconcile
from metrify_dev import REPO_ROOT, airflow_env, backfill
from metrify_dev.postgres import seed_registry, stop_registry_db

MODES = ("local", "watcher")
RUN_TIMEOUT_SECONDS = 900


def _sample_lake(meters: int, days: int) -> Any:
    """The warehouse tests' simulated lake (readings with duplicates, grid, weather, anomalies)."""
    from metrify import lake
    from metrify_dev.sample_lake import build_lake

    return build_lake(lake.lake_root(), meters=meters, days=days)


def _embedded_connections(registry: Any) -> dict[str, Any]:
    """The warehouse DAGs' connections: the DuckDB file, and the registry in the embedded PostgreSQL."""
    return {**airflow_env.duckdb_connection(), load_settings().registry_conn_id: seed_registry(registry)}


def _last_run(airflow_db: Path, dag_id: str) -> dict[str, Any]:
    """The DAG's latest run in the metadata DB: state, duration, per-task durations and tries."""
    with sqlite3.connect(airflow_db) as db:
        run_id, state, start, end = db.execute(
            "SELECT run_id, state, start_date, end_date FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
            (dag_id,),
        ).fetchone()
        tasks = db.execute(
            "SELECT task_id, state, start_date, end_date, try_number FROM task_instance "
            "WHERE dag_id = ? AND run_id = ?",
            (dag_id, run_id),
        ).fetchall()

    def seconds(a: str | None, b: str | None) -> float | None:
        if not a or not b:
            return None
        return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()

    per_task = {t[0]: {"state": t[1], "seconds": seconds(t[2], t[3]), "tries": t[4]} for t in tasks}
    dbt_seconds = sum(v["seconds"] or 0.0 for k, v in per_task.items() if k.startswith("dbt."))
    return {
        "run_id": run_id,
        "state": state,
        "run_seconds": round(seconds(start, end) or -1.0, 1),
        "dbt_task_seconds_sum": round(dbt_seconds, 1),
        "tasks": per_task,
    }


def run_once(dag_id: str, mode: str, connections: dict[str, Any], log_dir: Path) -> dict[str, Any]:
    """One `airflow dags test <dag_id>` under `mode` from an empty warehouse."""
    settings = load_settings()
    for suffix in ("", ".wal"):
        Path(f"{settings.warehouse_path}{suffix}").unlink(missing_ok=True)
    args = ("dags", "test", dag_id)
    env = airflow_env.command_environment(args, settings, connections)
    env["METRIFY_DBT_EXECUTION_MODE"] = mode
    log_path = log_dir / f"{dag_id}-{mode}-{time.strftime('%H%M%S')}.log"
    started = time.perf_counter()
    try:
        with open(log_path, "w") as log:
            code = subprocess.run(
                airflow_env.airflow_command(*args),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=RUN_TIMEOUT_SECONDS,
            ).returncode
    except subprocess.TimeoutExpired:
        code = None
    wall = time.perf_counter() - started
    result = {
        "mode": mode,
        "exit_code": code,
        "process_seconds": round(wall, 1),
        "log": str(log_path),
        **_last_run(settings.airflow_home / "airflow.db", dag_id),
    }
    result["succeeded"] = code == 0 and result["state"] == "success"
    if result["succeeded"]:
        result["mismatched_hours"] = len(reconcile(settings))
        result["row_counts"] = warehouse_summary(settings)
    else:
        text = log_path.read_text(errors="replace")
        errors = [line for line in text.splitlines() if "Error" in line or "Exception" in line]
        result["errors"] = errors[-15:]
    return result


def _run_span(airflow_db: Path, run_id: str) -> dict[str, Any]:
    with sqlite3.connect(airflow_db) as db:
        rows = db.execute(
            "SELECT task_id, state, start_date, end_date FROM task_instance WHERE run_id = ? "
            "AND dag_id = 'warehouse_daily' AND state IS NOT NULL",
            (run_id,),
        ).fetchall()
    starts = [datetime.fromisoformat(r[2]) for r in rows if r[2]]
    ends = [datetime.fromisoformat(r[3]) for r in rows if r[3]]
    return {
        "tasks": len(rows),
        "task_states": sorted({r[1] for r in rows if r[1]}),
        "run_seconds": round((max(ends) - min(starts)).total_seconds(), 1) if starts and ends else None,
    }


def measure_scheduler(meters: int, days: int, repeats: int, modes: tuple[str, ...] = MODES) -> dict[str, Any]:
    """One-day backfills of warehouse_daily under a real scheduler, alternating the modes."""
    build_manifest()
    data = _sample_lake(meters, days)
    connections = _embedded_connections(data.registry)
    base = load_settings()
    # every run gets a fresh Airflow home (a run of a date that already ran is a cleared run: its
    # tasks' try number is 2, and Cosmos then skips the WATCHER producer and lets every consumer
    # run its own model), the same lake and the same (emptied) DuckDB warehouse
    os.environ["METRIFY_LAKE_URL"] = base.lake_url
    os.environ["METRIFY_WAREHOUSE_PATH"] = str(base.warehouse_path)
    runs: list[dict[str, Any]] = []
    try:
        for repeat in range(repeats):
            for mode in modes:
                os.environ["METRIFY_HOME"] = str(base.home / f"run-{repeat}-{mode}")
                settings = load_settings()
                for suffix in ("", ".wal"):
                    Path(f"{settings.warehouse_path}{suffix}").unlink(missing_ok=True)
                result = backfill.backfill(
                    "warehouse_daily",
                    "2026-03-29",
                    "2026-03-29T12:00:00+00:00",
                    extra_connections=connections,
                    extra_env={"METRIFY_DBT_EXECUTION_MODE": mode},
                    settings=settings,
                )
                run = {
                    "mode": mode,
                    "succeeded": result.succeeded,
                    "backfill_seconds": result.seconds,
                    "runs": result.runs,
                }
                if result.runs:
                    run.update(_run_span(settings.airflow_home / "airflow.db", result.runs[0]["run_id"]))
                if result.succeeded:
                    run["row_counts"] = warehouse_summary(settings)
                print(
                    json.dumps(
                        {k: run.get(k) for k in ("mode", "succeeded", "run_seconds", "backfill_seconds", "tasks")}
                    ),
                    flush=True,
                )
                runs.append(run)
    finally:
        os.environ["METRIFY_HOME"] = str(base.home)
        stop_registry_db()
    summary = {
        mode: {
            "succeeded": sum(r["succeeded"] for r in runs if r["mode"] == mode),
            "run_seconds": [r.get("run_seconds") for r in runs if r["mode"] == mode and r["succeeded"]],
            "backfill_seconds": [r["backfill_seconds"] for r in runs if r["mode"] == mode and r["succeeded"]],
        }
        for mode in modes
    }
    for entry in summary.values():
        entry["median_run_seconds"] = statistics.median(entry["run_seconds"]) if entry["run_seconds"] else None
    counts = {json.dumps(r.get("row_counts"), sort_keys=True) for r in runs if r["succeeded"]}
    return {
        "dag_id": "warehouse_daily",
        "how": "one-day command-line backfill (the run of 2026-03-29, business day 2026-03-28), real "
        "scheduler + LocalExecutor, fresh Airflow home and empty warehouse per run",
        "meters": meters,
        "days": days,
        "repeats": repeats,
        "same_row_counts_in_every_run": len(counts) <= 1,
        "summary": summary,
        "runs": runs,
    }


def measure(dag_id: str, meters: int, days: int, repeats: int, modes: tuple[str, ...] = MODES) -> dict[str, Any]:
    build_manifest()
    data = _sample_lake(meters, days)
    connections = _embedded_connections(data.registry)
    log_dir = Path(os.environ["METRIFY_HOME"]) / "bench-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    try:
        airflow_env.ensure_db()
        for _ in range(repeats):
            for mode in modes:
                run = run_once(dag_id, mode, connections, log_dir)
                print(
                    json.dumps(
                        {
                            k: run[k]
                            for k in ("mode", "succeeded", "run_seconds", "dbt_task_seconds_sum", "process_seconds")
                        }
                    ),
                    flush=True,
                )
                runs.append(run)
    finally:
        stop_registry_db()
    summary: dict[str, Any] = {}
    for mode in modes:
        ok = [r for r in runs if r["mode"] == mode and r["succeeded"]]
        summary[mode] = {
            "runs": sum(r["mode"] == mode for r in runs),
            "succeeded": len(ok),
            "run_seconds": [r["run_seconds"] for r in ok],
            "median_run_seconds": statistics.median([r["run_seconds"] for r in ok]) if ok else None,
            "median_process_seconds": statistics.median([r["process_seconds"] for r in ok]) if ok else None,
            "dbt_task_seconds_sum": [r["dbt_task_seconds_sum"] for r in ok],
        }
    counts = {json.dumps(r.get("row_counts"), sort_keys=True) for r in runs if r["succeeded"]}
    return {
        "dag_id": dag_id,
        "meters": meters,
        "days": days,
        "repeats": repeats,
        "same_row_counts_in_every_run": len(counts) <= 1,
        "summary": summary,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=20)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dag", default="transform")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--scheduler",
        action="store_true",
        help="one-day backfills of warehouse_daily under a real scheduler instead of dags test",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default bench-results/transform_modes.json (--scheduler: transform_modes_scheduler.json)",
    )
    args = parser.parse_args(argv)
    args.out = args.out or REPO_ROOT / "bench-results" / (
        "transform_modes_scheduler.json" if args.scheduler else "transform_modes.json"
    )
    with (
        tempfile.TemporaryDirectory(prefix="metrify-bench-modes-") as tmp,
        environ_overrides({"METRIFY_HOME": tmp, "METRIFY_LAKE_URL": None, "METRIFY_WAREHOUSE_PATH": None}),
    ):
        modes = tuple(args.modes.split(","))
        result = (
            measure_scheduler(args.meters, args.days, args.repeats, modes)
            if args.scheduler
            else measure(args.dag, args.meters, args.days, args.repeats, modes)
        )
    result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result["summary"], indent=2))
    return result


if __name__ == "__main__":
    main()
