"""The embedded PostgreSQL (the `pgserver` wheel) that holds the meter registry locally.

Production reads the operational registry through `postgres_default`; locally the simulator's
fleet is written into this server and the same connection id points at it. It listens on a
Unix socket only and keeps running after the process that started it exits (`make down`
stops it).
"""

from __future__ import annotations

import io
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

from metrify.config import Settings, load_settings
from metrify.warehouse.catalog import REGISTRY_COLUMNS, REGISTRY_TABLE

if TYPE_CHECKING:
    import pandas as pd


def start_registry_db(settings: Settings | None = None) -> str:
    """Start (or reuse) the embedded PostgreSQL in `.metrify/postgres`; returns its URI.

    The server keeps running after this process exits (stop it with `stop_registry_db`).
    It listens on a Unix socket only; the URI carries the socket directory as `host`.
    """
    import pgserver

    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it logs every pg_ctl call at INFO
    settings = settings or load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(settings.home / "postgres", cleanup_mode=None)
    return server.get_uri()


def stop_registry_db(settings: Settings | None = None, timeout: float = 30.0) -> None:
    """Stop the embedded PostgreSQL started by `start_registry_db` (a no-op when it is down).

    Sends the postmaster SIGINT (PostgreSQL's "fast" shutdown) and waits for it to exit.
    """
    settings = settings or load_settings()
    pid_file = settings.home / "postgres" / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise TimeoutError(f"PostgreSQL (pid {pid}, {pid_file.parent}) did not stop within {timeout:.0f}s")


def registry_connection(uri: str) -> dict[str, Any]:
    """The Airflow connection (`postgres_default`) for a pgserver URI."""
    parsed = urlparse(uri)
    host = parse_qs(parsed.query).get("host", [parsed.hostname or "localhost"])[0]
    return {
        "conn_type": "postgres",
        "host": host,
        "login": parsed.username or "postgres",
        "password": parsed.password or "",
        "schema": parsed.path.lstrip("/") or "postgres",
        **({"port": parsed.port} if parsed.port else {}),
    }


def write_registry(frame: pd.DataFrame, dsn: str) -> int:
    """Replace the operational `meter_registry` table in PostgreSQL with `frame`."""
    import psycopg2

    names = [n for n, _ in REGISTRY_COLUMNS]
    pg_types = {"text": "TEXT", "float": "DOUBLE PRECISION", "date": "DATE"}
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"""CREATE TABLE IF NOT EXISTS {REGISTRY_TABLE} (
            {
            ", ".join(f"{n} {pg_types[k]}" + (" PRIMARY KEY" if n == "meter_id" else "") for n, k in REGISTRY_COLUMNS)
        },
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now())""")
        cur.execute(f"TRUNCATE {REGISTRY_TABLE}")
        buffer = io.StringIO()
        frame[names].to_csv(buffer, index=False, header=False)
        buffer.seek(0)
        cur.copy_expert(f"COPY {REGISTRY_TABLE} ({', '.join(names)}) FROM STDIN WITH (FORMAT csv)", buffer)
    return len(frame)


def seed_registry(registry: pd.DataFrame, settings: Settings | None = None) -> dict[str, Any]:
    """Start the embedded PostgreSQL, write the simulator's registry into it, and return the
    Airflow connection (`postgres_default`) that reaches it."""
    uri = start_registry_db(settings)
    write_registry(registry, uri)
    return registry_connection(uri)
