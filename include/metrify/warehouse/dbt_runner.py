"""Running dbt in-process (dbtRunner) and building the manifest Cosmos renders the DAGs from."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metrify.config import Settings, environ_overrides, load_settings
from metrify.file_lock import exclusive
from metrify.telemetry import telemetry_off


def dbt_env(
    target: str = "duckdb", settings: Settings | None = None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Environment variables profiles.yml reads."""
    settings = settings or load_settings()
    return {"METRIFY_WAREHOUSE_PATH": str(settings.warehouse_path), "DBT_TARGET": target, **(extra or {})}


@dataclass
class DbtResult:
    success: bool
    command: list[str]
    seconds: float
    statuses: dict[str, str]
    failures: list[str]


def run_dbt(
    args: Sequence[str],
    target: str = "duckdb",
    settings: Settings | None = None,
    env: dict[str, str] | None = None,
    vars: dict[str, Any] | None = None,
    target_path: Path | None = None,
) -> DbtResult:
    """Run a dbt command in-process (dbtRunner) against `target`; raises nothing, reports all.
    No anonymous usage stats unless asked for (`metrify.telemetry`). Without `target_path` dbt
    writes into a scratch folder removed afterwards: dbt/target holds only what
    `build_manifest` moved there, the manifest Cosmos renders the DAGs from."""
    if target_path is None:
        with tempfile.TemporaryDirectory(prefix="dbt-target-") as scratch:
            return run_dbt(args, target, settings, env, vars, Path(scratch))
    telemetry_off()
    from dbt.cli.main import dbtRunner

    settings = settings or load_settings()
    project = str(settings.dbt_dir)
    command = [
        *args,
        "--project-dir",
        project,
        "--profiles-dir",
        project,
        "--target",
        target,
        "--log-path",
        str(settings.home / "logs" / "dbt"),
    ]
    command += ["--target-path", str(target_path)]
    if vars:
        command += ["--vars", json.dumps(vars)]
    started = time.perf_counter()
    with environ_overrides(dbt_env(target, settings, env)):
        result = dbtRunner().invoke(command)
    statuses: dict[str, str] = {}
    failures: list[str] = []
    for item in getattr(result.result, "results", None) or []:
        name = getattr(item.node, "unique_id", str(item))
        status = str(getattr(item.status, "value", item.status))
        statuses[name] = status
        if status in ("error", "fail", "runtime error"):
            failures.append(f"{name}: {status}: {item.message}")
    if result.exception is not None:
        failures.append(f"dbt {' '.join(args)} raised {result.exception!r}")
    return DbtResult(bool(result.success), command, time.perf_counter() - started, statuses, failures)


def build_manifest(settings: Settings | None = None) -> Path:
    """`dbt parse` (no database connection) writing dbt/target/manifest.json for Cosmos to render.

    The manifest is parsed into a scratch folder and moved into place in one rename, one parse
    at a time: a process rendering the DAGs meanwhile reads the old manifest or the new one,
    never half of one (test sessions on two workers, `make` beside a running stack)."""
    settings = settings or load_settings()
    manifest = settings.dbt_manifest
    with exclusive(manifest.parent / ".manifest.lock"):
        scratch = Path(tempfile.mkdtemp(prefix=".parse-", dir=manifest.parent))
        try:
            result = run_dbt(["parse"], target="duckdb", settings=settings, target_path=scratch)
            parsed = scratch / manifest.name
            if not result.success or not parsed.exists():
                raise RuntimeError(f"dbt parse failed for {settings.dbt_dir}: {result.failures}")
            os.replace(parsed, manifest)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return manifest
