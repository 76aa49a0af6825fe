"""Shared helpers for the grid and weather tests: fake API servers and a private lake."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

# Keep Airflow (imported by the lake code) away from ~/airflow when run without the main conftest.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="metrify-test-airflow-"))

import pytest  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: A fixed day in the past: every API has data for it, and results do not depend on today.
DAY = datetime(2026, 11, 22, tzinfo=timezone.utc)
NOW = DAY + timedelta(days=1, hours=6)
FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 2, "connect_timeout": 1, "attempts": 3}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture(scope="module")
def fakes() -> Iterator:
    from metrify.fakes import start_fakes

    stack = start_fakes(seed=42, anchor=DAY, client_extra=FAST, now=lambda: NOW)
    yield stack
    stack.stop()


@pytest.fixture
def clean_fakes(fakes):
    for server in fakes.servers.values():
        server.clear()
    yield fakes
    for server in fakes.servers.values():
        server.clear()


@pytest.fixture
def lake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from metrify import lake
    from metrify.settings import load_settings

    monkeypatch.setenv("METRIFY_HOME", str(tmp_path / "metrify"))
    monkeypatch.setenv("METRIFY_LAKE_URL", (tmp_path / "lake").as_uri())
    return lake.lake_root(load_settings())


def endpoint(stack, conn_id: str):
    from metrify.http import Endpoint

    return Endpoint.from_dict(conn_id, stack.connections[conn_id])
