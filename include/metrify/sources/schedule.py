"""What the polling DAGs share at parse time (no I/O, no heavy imports)."""

from __future__ import annotations

from typing import Any


def window_params() -> dict[str, Any]:
    """DAG params that override a run's data interval (ISO 8601, UTC): one manual run can land a
    whole window with the same per-interval files scheduled runs write."""
    from airflow.sdk import Param

    return {
        "window_start": Param(None, type=["null", "string"], description="override: ISO start (UTC)"),
        "window_end": Param(None, type=["null", "string"], description="override: ISO end (UTC)"),
    }
