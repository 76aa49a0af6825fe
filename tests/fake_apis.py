"""Shared helpers for the grid and weather tests: a fixed day, fast client settings, fixtures files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: A fixed day in the past: every API has data for it, and results do not depend on today.
DAY = datetime(2026, 11, 22, tzinfo=UTC)
NOW = DAY + timedelta(days=1, hours=6)
FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 2, "connect_timeout": 1, "attempts": 3}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def endpoint(stack: Any, conn_id: str) -> Any:
    from metrify.sources.http import Endpoint

    return Endpoint.from_dict(conn_id, stack.connections[conn_id])
