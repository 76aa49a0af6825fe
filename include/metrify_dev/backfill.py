"""Backfill a DAG over a date range from the command line, as Airflow 3 does it.

`airflow backfill create --dag-id … --from-date … --to-date …` only records a Backfill and its
DAG runs in the metadata DB; the scheduler executes them (LocalExecutor workers report to the
API server's execution API). `make up` runs those components for good; `backfill()` below brings
up a short-lived API server, scheduler and DAG processor for one backfill, waits for it to
finish and stops them again. Their scheduler does not create scheduled runs
(`[scheduler] use_job_schedule = False`), so only the backfill's runs execute.

    python -m metrify.backfill warehouse_daily 2026-11-01 2026-11-07
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metrify.config import Settings, load_settings
from metrify_dev.ports import free_port
from metrify_dev.processes import alive, spawn, terminate

COMPONENTS = ("api-server", "scheduler", "dag-processor")


def components(env: dict[str, str]) -> tuple[str, ...]:
    """WATCHER consumers may defer (a test sensor whose aggregate the build never reports
    resolves in the triggerer), so that mode brings a triggerer along."""
    watcher = load_settings(env).dbt_execution_mode == "watcher"
    return (*COMPONENTS, "triggerer") if watcher else COMPONENTS


@dataclass
class BackfillResult:
    dag_id: str
    backfill_id: int | None
    runs: list[dict[str, Any]] = field(default_factory=list)  # run_id, logical_date, state, run_type
    seconds: float = 0.0
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return bool(self.runs) and all(r["state"] == "success" for r in self.runs)


def scheduler_environment(
    settings: Settings, extra_connections: dict[str, dict[str, Any]] | None = None, port: int | None = None
) -> dict[str, str]:
    """The local Airflow environment for a short-lived API server + scheduler + DAG processor."""
    from metrify_dev.airflow_env import environment
    from metrify_dev.stack import stack_environment

    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = stack_environment(settings)
    env.update(
        {
            key: value
            for key, value in environment(settings, extra_connections).items()
            if key.startswith("AIRFLOW_CONN_")
        }
    )
    env.update(
        {
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only the backfill's runs
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "300",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        }
    )
    return env


@contextmanager
def running_scheduler(settings: Settings, env: dict[str, str]) -> Iterator[dict[str, Path]]:
    """API server, scheduler and DAG processor in the background for the block's duration."""
    from metrify_dev.airflow_env import airflow_command

    folder = settings.home / "backfill"
    pids: list[int] = []
    logs: dict[str, Path] = {}
    try:
        for component in components(env):
            logs[component] = folder / f"{component}.log"
            pids.append(spawn(airflow_command(component), logs[component], env).pid)
        yield logs
    finally:
        # together: each Airflow component takes seconds to shut down gracefully
        live = [pid for pid in reversed(pids) if alive(pid)]
        if live:
            with ThreadPoolExecutor(len(live)) as pool:
                list(pool.map(lambda pid: terminate(pid, 20.0, group=True), live))


@contextmanager
def _metadata(settings: Settings) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(settings.airflow_home / "airflow.db", timeout=30)) as db:
        yield db


def wait_for_dag(
    settings: Settings, dag_id: str, ready: Callable[[str], bool] | None = None, timeout: float = 180.0
) -> None:
    """Until the DAG processor has written the DAG to the metadata DB (and its newest serialized
    form, as JSON text, satisfies `ready`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _metadata(settings) as db:
            row = db.execute(
                "SELECT data, data_compressed FROM serialized_dag WHERE dag_id = ? ORDER BY last_updated DESC LIMIT 1",
                (dag_id,),
            ).fetchone()
        if row and (ready is None or ready(row[0] if row[0] is not None else zlib.decompress(row[1]).decode())):
            return
        time.sleep(1)
    raise TimeoutError(f"{dag_id} was not serialized (as expected) within {timeout:.0f} s")


def _backfill_runs(settings: Settings, dag_id: str) -> tuple[int | None, bool, list[dict[str, Any]]]:
    with _metadata(settings) as db:
        row = db.execute(
            "SELECT id, completed_at FROM backfill WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        if row is None:
            return None, False, []
        runs = db.execute(
            "SELECT run_id, logical_date, state, run_type, start_date, end_date FROM dag_run "
            "WHERE backfill_id = ? ORDER BY logical_date",
            (row[0],),
        ).fetchall()
    keys = ("run_id", "logical_date", "state", "run_type", "start_date", "end_date")
    return row[0], row[1] is not None, [dict(zip(keys, r, strict=True)) for r in runs]


def backfill(
    dag_id: str,
    from_date: str,
    to_date: str,
    settings: Settings | None = None,
    extra_connections: dict[str, dict[str, Any]] | None = None,
    timeout: float = 900.0,
    max_active_runs: int = 1,
    reprocess: str = "none",
    extra_env: dict[str, str] | None = None,
    ready: Callable[[str], bool] | None = None,
) -> BackfillResult:
    """`airflow backfill create` over [from_date, to_date] (the runs' logical dates, i.e. their
    interval starts), executed by a short-lived scheduler. `max_active_runs=1`: one day at a time
    (a Backfill's own limit, default 10, not the DAG's; DuckDB has one writer anyway).
    `reprocess`: `none` skips dates that already have a run, `completed`/`failed` re-run them."""
    from metrify_dev.airflow_env import airflow_command, ensure_db, patient_command_environment

    settings = settings or load_settings()
    ensure_db(settings)
    env = {**scheduler_environment(settings, extra_connections), **(extra_env or {})}
    started = time.monotonic()
    with running_scheduler(settings, env) as logs:
        wait_for_dag(settings, dag_id, ready)
        with _metadata(settings) as db:
            paused = db.execute("SELECT is_paused FROM dag WHERE dag_id = ?", (dag_id,)).fetchone()[0]
        if paused:  # a paused DAG's backfill runs would never start (new DAGs start unpaused here)
            subprocess.run(
                airflow_command("dags", "unpause", dag_id),
                env=patient_command_environment(env),
                check=True,
                capture_output=True,
            )
        created = subprocess.run(
            airflow_command(
                "backfill",
                "create",
                "--dag-id",
                dag_id,
                "--from-date",
                from_date,
                "--to-date",
                to_date,
                "--max-active-runs",
                str(max_active_runs),
                "--reprocess-behavior",
                reprocess,
            ),
            env=patient_command_environment(env),
            capture_output=True,
            text=True,
        )
        if created.returncode != 0:
            raise RuntimeError(f"airflow backfill create failed: {created.stdout[-2000:]}{created.stderr[-3000:]}")
        deadline = time.monotonic() + timeout
        backfill_id: int | None = None
        complete = False
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            backfill_id, complete, runs = _backfill_runs(settings, dag_id)
            # the runs exist from `backfill create` on; the scheduler marks the Backfill complete
            # up to ~30 s after its last run ended
            if complete or (runs and all(r["state"] in ("success", "failed") for r in runs)):
                break
            time.sleep(1)
    return BackfillResult(
        dag_id, backfill_id, runs, round(time.monotonic() - started, 1), {k: str(v) for k, v in logs.items()}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dag_id")
    parser.add_argument("from_date")
    parser.add_argument("to_date")
    args = parser.parse_args(argv)
    from metrify_dev.airflow_env import connections

    result = backfill(args.dag_id, args.from_date, args.to_date, extra_connections=connections(load_settings()))
    print(json.dumps({"backfill_id": result.backfill_id, "runs": result.runs, "seconds": result.seconds}, indent=2))
    return 0 if result.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
