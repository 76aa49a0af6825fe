"""`make up` / `make down`: the local stack as background processes.

Airflow's API server (the UI), scheduler, DAG processor and triggerer, plus the embedded
stand-ins: the Kafka broker, the fake grid and weather APIs, and a simulator feeding the meter
topic continuously. Each process
gets a pid file and a log under `<METRIFY_HOME>/stack/`. The UI requires a login
(SimpleAuthManager, never all-admins): users `admin` (admin), `operator` (op), `user` (user) and
`viewer` (viewer), passwords generated into `<AIRFLOW_HOME>/simple_auth_manager_passwords.json.generated`.
The UI listens on 127.0.0.1 (`METRIFY_UI_HOST` to change); the JWT secret and the passwords file
are mode 0600, and `metrify up` prints the file's path, never a password.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from metrify.config import Settings, load_settings
from metrify.ingest import kafka
from metrify_dev import fakes, kafka_mock
from metrify_dev.processes import alive, spawn, terminate

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Airflow's SimpleAuthManager roles, each including the one below: viewer reads DAGs, runs and
# logs (no connections, no variables); user also triggers, clears, backfills and pauses DAGs; op
# also manages connections, variables and pools; admin everything.
USERS = "admin:admin,operator:op,user:user,viewer:viewer"
FLEET_SEED = 42  # the live feed's meters are the same fleet in every window


def stack_dir(settings: Settings) -> Path:
    return settings.home / "stack"


def ui_port() -> int:
    return int(os.environ.get("METRIFY_UI_PORT", "8080"))


def ui_host() -> str:
    """Where the API server listens: loopback, unless `METRIFY_UI_HOST` says otherwise."""
    return os.environ.get("METRIFY_UI_HOST") or "127.0.0.1"


def ui_url() -> str:
    return f"http://127.0.0.1:{ui_port()}"


def private_file(path: Path, content: str | None = None) -> Path:
    """`path` with mode 0600 (created with `content`, or empty, if missing; an existing file keeps
    its content and is made private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)
        return path
    with os.fdopen(fd, "w") as handle:
        handle.write(content or "")
    return path


def passwords_file(settings: Settings) -> Path:
    """Where Airflow's SimpleAuthManager keeps the generated passwords (made 0600 before it writes)."""
    return settings.airflow_home / "simple_auth_manager_passwords.json.generated"


def stack_environment(settings: Settings, paused: bool = False) -> dict[str, str]:
    """The local Airflow environment plus what the long-running services need; with `paused`,
    new DAGs start paused (nothing is scheduled until someone unpauses a DAG)."""
    from metrify_dev.airflow_env import environment

    secret_file = private_file(settings.airflow_home / "jwt_secret", secrets.token_urlsafe(32))
    return {
        **environment(settings),
        "AIRFLOW__API__HOST": ui_host(),
        "AIRFLOW__API__PORT": str(ui_port()),
        "AIRFLOW__API__BASE_URL": ui_url(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{ui_url()}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text().strip(),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
        # Airflow opens the file with "a+": made 0600 first, it stays private
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(private_file(passwords_file(settings))),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(paused),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
    }


def start(name: str, argv: list[str], env: dict[str, str], settings: Settings) -> int:
    """Start a background service unless it already runs; returns its pid."""
    folder = stack_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    pid_file = folder / f"{name}.pid"
    if pid_file.exists() and alive(int(pid_file.read_text())):
        return int(pid_file.read_text())
    process = spawn(argv, folder / f"{name}.log", env)
    pid_file.write_text(str(process.pid))
    return process.pid


def stop(name: str, settings: Settings, timeout: float = 20.0) -> bool:
    pid_file = stack_dir(settings) / f"{name}.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    pid_file.unlink()
    if not alive(pid):
        return False
    terminate(pid, timeout, group=True)
    return True


def seed_fleet_registry(settings: Settings, meters: int) -> None:
    """The live feed's meter registry in the embedded PostgreSQL (`postgres_default`)."""
    import numpy as np

    from metrify_dev.postgres import seed_registry
    from metrify_dev.simulator import build_registry

    seed_registry(build_registry(meters, np.random.default_rng(FLEET_SEED)), settings)


def wait_healthy(timeout: float = 180.0) -> dict[str, Any]:
    """Poll the API server's health endpoint until metadatabase and scheduler are healthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(f"{ui_url()}/api/v2/monitor/health", timeout=5).json()
            if all(last.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler")):
                return last
        except (requests.RequestException, ValueError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise RuntimeError(f"Airflow did not become healthy within {timeout:.0f} s: {last}")


def passwords(settings: Settings, timeout: float = 60.0) -> dict[str, str]:
    """The generated passwords (for tests and tools; `metrify up` prints only the file's path)."""
    path = passwords_file(settings)
    users = {u.split(":")[0] for u in USERS.split(",")}
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, str] = json.loads(path.read_text() or "{}") if path.exists() else {}
        if users <= found.keys() or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def up(settings: Settings | None = None, feed: bool = True, meters: int = 200, paused: bool = False) -> dict[str, Any]:
    """Start the stack; `paused` starts every DAG paused (tests of the API that need no pipeline)."""
    from metrify_dev.airflow_env import airflow_command, ensure_db

    settings = settings or load_settings()
    info = kafka_mock.up(settings)
    ensure_db(settings)
    fakes.up(settings.home)
    seed_fleet_registry(settings, meters)
    env = stack_environment(settings, paused=paused)
    if feed:
        start("feed", [sys.executable, "-m", "metrify_dev.stack", "feed", str(meters)], env, settings)
    for component in AIRFLOW_COMPONENTS:
        start(component, airflow_command(*component.split()), env, settings)
    health = wait_healthy()
    return {
        "url": ui_url(),
        "kafka": info["bootstrap"],
        "health": health,
        "passwords": passwords(settings),
        "passwords_file": str(passwords_file(settings)),
    }


def down(settings: Settings | None = None) -> list[str]:
    from concurrent.futures import ThreadPoolExecutor

    settings = settings or load_settings()
    names = ("feed", *AIRFLOW_COMPONENTS)
    # together: each Airflow component takes seconds to shut down gracefully
    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(lambda name: stop(name, settings), names))
    stopped = [name for name, was_running in zip(names, results, strict=True) if was_running]
    if fakes.down(settings.home):
        stopped.append("fakes")
    if kafka_mock.down(settings):
        stopped.append("kafka")
    from metrify_dev.postgres import stop_registry_db

    if (settings.home / "postgres" / "postmaster.pid").exists():
        stop_registry_db(settings)
        stopped.append("postgres")
    return stopped


def feed(meters: int, poll_seconds: float = 20.0, history: timedelta = timedelta(hours=2)) -> None:
    """Publish each quarter-hour's readings as soon as the quarter-hour has ended, forever."""
    from metrify_dev.simulator import SimulationOptions, produce, simulate

    settings = load_settings()
    config = kafka.producer_config(kafka_mock.embedded_connection_extra(settings))
    published = _floor(datetime.now(UTC)) - history
    while True:
        now = _floor(datetime.now(UTC))
        if now > published:
            # Seeded by the window so a restarted feed re-sends identical readings.
            sim = simulate(
                SimulationOptions(
                    meters=meters,
                    start=published,
                    end=now,
                    registry_seed=FLEET_SEED,
                    seed=int(published.timestamp()) // 900,
                )
            )
            produce(sim.keys, sim.values, settings.meter_topic, config)
            print(
                f"{datetime.now(UTC):%H:%M:%S} published {len(sim.values)} messages for "
                f"{published:%H:%M}..{now:%H:%M} UTC",
                flush=True,
            )
            published = now
        time.sleep(poll_seconds)


def _floor(moment: datetime) -> datetime:
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "feed":
        feed(int(sys.argv[2]))
    else:
        sys.exit("usage: python -m metrify_dev.stack feed METERS")
