"""The environment every local Airflow process gets (`metrify run`, the tests, `make up`).

Airflow reads connections from `AIRFLOW_CONN_<ID>` variables, so the embedded broker's address
and the local lake reach tasks through the same connection ids production uses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from metrify.config import DUCKDB_POOL, Settings, load_settings
from metrify.telemetry import TELEMETRY_OFF
from metrify_dev import REPO_ROOT, kafka_mock
from metrify_dev.fakes import read_fakes
from metrify_dev.postgres import registry_connection, start_registry_db

BIN = Path(sys.executable).parent


def connections(settings: Settings) -> dict[str, dict[str, Any]]:
    """Airflow connections for the embedded stand-ins, keyed by connection id."""
    conns: dict[str, dict[str, Any]] = {}
    if kafka_mock.read_broker(settings):
        conns[settings.kafka_conn_id] = {"conn_type": "kafka", "extra": kafka_mock.embedded_connection_extra(settings)}
    running_fakes = read_fakes(settings.home)  # the fake grid/weather APIs of `python -m metrify_dev.fakes serve`
    if running_fakes:
        conns.update(running_fakes["connections"])
    conns.update(duckdb_connection(settings))
    if (settings.home / "postgres" / "postmaster.pid").exists():  # the embedded meter registry
        conns[settings.registry_conn_id] = registry_connection(start_registry_db(settings))
    return conns


# SQLite's own default is to give up on a locked database after 5 s; on a loaded machine a
# scheduler's transaction can hold the lock longer than that while `airflow backfill create` or
# `dags unpause` writes beside it (`database is locked`). Only such one-off commands wait longer
# (`patient_command_environment`): given to the long-running API server too, a request waiting
# for the lock stalled it and every task talking to it (seen in the browser tests).
SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": 60}


def patient_command_environment(env: dict[str, str]) -> dict[str, str]:
    """`env` for a one-off Airflow command that writes the SQLite metadata database while a
    scheduler runs: it waits up to `SQLITE_CONNECT_ARGS["timeout"]` s for the lock."""
    return {**env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": f"{__name__}.SQLITE_CONNECT_ARGS"}


def duckdb_connection(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """The connection Cosmos's DuckDB profile mapping reads: the local warehouse file."""
    settings = settings or load_settings()
    return {settings.duckdb_conn_id: {"conn_type": "duckdb", "host": str(settings.warehouse_path)}}


def environment(
    settings: Settings | None = None, extra_connections: dict[str, dict[str, Any]] | None = None
) -> dict[str, str]:
    settings = settings or load_settings()
    home = settings.airflow_home
    env = {
        # no usage telemetry from Cosmos, dbt, Great Expectations or anything honouring the
        # common opt-outs, unless the developer's environment asks for it
        **TELEMETRY_OFF,
        "DO_NOT_TRACK": "1",
        "SCARF_NO_ANALYTICS": "true",
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "60",
        "METRIFY_HOME": str(settings.home),
        "METRIFY_LAKE_URL": settings.lake_url,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for conn_id, conn in {**connections(settings), **(extra_connections or {})}.items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    return env


def airflow_command(*args: str) -> list[str]:
    return [str(BIN / "airflow"), *args]


def with_dag_file(args: tuple[str, ...]) -> tuple[str, ...]:
    """`airflow dags test <dag_id>` parses only the DAG's own file (`dags/<dag_id>.py`, when it
    exists and no file was given): without `-f` it parses and writes every DAG of the folder
    first, about a second per file, on every run."""
    if args[:2] != ("dags", "test") or len(args) < 3 or {"-f", "--dagfile-path"} & set(args):
        return args
    dag_file = REPO_ROOT / "dags" / f"{args[2]}.py"
    return (*args, "-f", str(dag_file)) if dag_file.exists() else args


def command_environment(
    args: tuple[str, ...], settings: Settings | None = None, extra_connections: dict[str, dict[str, Any]] | None = None
) -> dict[str, str]:
    """The environment for one `airflow` command.

    `airflow dags test` fails on DAGs with deadlines in Airflow 3.3.2 (`DagRun.update_state`
    looks the alerts up by id but `dags test` hands it their definitions), so its runs leave the
    DeadlineAlerts out (`metrify.oncall.defaults.deadline`); the scheduler keeps them.
    """
    env = environment(settings, extra_connections)
    if args[:2] == ("dags", "test"):
        env["METRIFY_DEADLINE_ALERTS"] = "off"
    return env


def airflow(
    *args: str,
    settings: Settings | None = None,
    check: bool = True,
    extra_connections: dict[str, dict[str, Any]] | None = None,
    capture: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the `airflow` CLI of this virtualenv with the local environment."""
    return subprocess.run(
        airflow_command(*with_dag_file(args)),
        env=command_environment(args, settings, extra_connections),
        check=check,
        text=True,
        capture_output=capture,
    )


# A migrated metadata database (with the DuckDB pool) to copy instead of migrating again: the
# tests set it once per session, so each test's fresh Airflow home costs a file copy, not an
# `airflow db migrate` (the first test of the session still migrates, and writes the copy).
DB_TEMPLATE_ENV = "METRIFY_AIRFLOW_DB_TEMPLATE"


def ensure_db(settings: Settings | None = None) -> None:
    """Create or upgrade the local metadata database (a no-op when it is current); with
    `METRIFY_AIRFLOW_DB_TEMPLATE` set, a new database is copied from that file (written by the
    first migration when it does not exist yet)."""
    settings = settings or load_settings()
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    marker = settings.airflow_home / ".migrated-v2"
    if marker.exists():
        return
    database = settings.airflow_home / "airflow.db"
    template = Path(os.environ[DB_TEMPLATE_ENV]) if os.environ.get(DB_TEMPLATE_ENV) else None
    if template is not None and template.exists() and not database.exists():
        shutil.copyfile(template, database)
        marker.touch()
        return
    airflow("db", "migrate", settings=settings, capture=True)
    airflow(
        "pools",
        "set",
        DUCKDB_POOL,
        "1",
        "DuckDB allows one writer: warehouse tasks queue here",
        settings=settings,
        capture=True,
    )
    if template is not None and not template.exists():
        template.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(database, template.with_suffix(".partial"))
        template.with_suffix(".partial").replace(template)
    marker.touch()


def dags_test(
    dag_id: str,
    log_path: Path,
    settings: Settings | None = None,
    extra_connections: dict[str, dict[str, Any]] | None = None,
    extra_args: tuple[str, ...] = (),
) -> bool:
    """Run one DAG with `airflow dags test`, its output in `log_path`; True if the run succeeded.

    `dags test` can exit 0 for a failed run, so the verdict is the scheduler's own
    "Marking run <DagRun ...> successful|failed" line.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log_file:
        args = ("dags", "test", dag_id, *extra_args)
        env = command_environment(args, settings, extra_connections)
        code = subprocess.run(
            airflow_command(*with_dag_file(args)), env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True
        ).returncode
    verdicts = re.findall(
        rf"Marking run <DagRun {re.escape(dag_id)} .*?> (successful|failed)", log_path.read_text(errors="replace")
    )
    return code == 0 and verdicts[-1:] == ["successful"]
