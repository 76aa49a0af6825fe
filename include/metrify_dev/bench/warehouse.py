"""Benchmark: one hourly transform cycle (load the new hour, build staging and marts) with one
day and with fourteen days of history behind it. The issue's target: the second stays within
1.5 times the first, because loads and the incremental facts touch only what changed.

    python -m metrify_dev.bench.warehouse [--meters 500]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from metrify import lake
from metrify.config import environ_overrides
from metrify.contracts import readings
from metrify.warehouse.cosmos_config import operator_args
from metrify.warehouse.dbt_runner import run_dbt
from metrify.warehouse.duckdb_loader import connect_duckdb, load_registry_duckdb, scalar, sync
from metrify.warehouse.reconcile import reconcile
from metrify_dev.simulator import SimulationOptions, simulate

START = datetime(2026, 11, 1, tzinfo=UTC)


def _write_hours(root, day_frame: pd.DataFrame, offset: timedelta, ingested_at: datetime, name: str = "bench") -> None:
    frame = day_frame.copy()
    frame["reading_ts"] = frame["reading_ts"] + offset
    frame["topic"], frame["partition"], frame["kafka_ts"] = "meter-readings", 0, frame["reading_ts"]
    frame["offset"] = np.arange(len(frame), dtype=np.int64)
    frame["ingested_at"] = pd.Timestamp(ingested_at)
    ts = frame["reading_ts"]
    for (day, hour), part in frame.groupby([ts.dt.strftime("%Y-%m-%d"), ts.dt.hour]):
        path = lake.partition_path(root, "raw", "meter_readings", date=day, hour=f"{hour:02d}") / f"{name}.parquet"
        table = pa.Table.from_pandas(
            part[[f.name for f in readings.RAW_SCHEMA]], schema=readings.RAW_SCHEMA, preserve_index=False
        )
        lake.write_parquet(table, path)


def cycle(history_days: int, meters: int, base: Path) -> dict[str, Any]:
    """Build `history_days` of history, then time one hourly cycle (new hour -> load -> dbt build)."""
    home = base / f"history-{history_days}"
    os.environ["METRIFY_HOME"] = str(home)
    os.environ.pop("METRIFY_LAKE_URL", None)
    sim = simulate(SimulationOptions(meters=meters, start=START, end=START + timedelta(days=1), seed=3))
    day = sim.readings.copy()
    day["reading_ts"] = pd.to_datetime(day["reading_ts"], utc=True)
    root = lake.lake_root()
    for d in range(history_days):
        _write_hours(root, day, timedelta(days=d), START + timedelta(days=d + 1))
    sync()
    load_registry_duckdb(sim.registry)
    target = home / "dbt-target"
    hourly = ["build", "--exclude", "path:models/metrics"]
    first = run_dbt(hourly, target_path=target)
    if not first.success:
        raise RuntimeError(f"initial build failed: {first.failures}")
    # the next hour arrives
    next_hour = day[day["reading_ts"] <= START + timedelta(hours=1)]
    new_at = START + timedelta(days=history_days, hours=1)
    started = time.perf_counter()
    _write_hours(root, next_hour, timedelta(days=history_days), new_at, name="bench-next-hour")
    loaded = sync()
    load_seconds = time.perf_counter() - started
    build = run_dbt(hourly, target_path=target, vars=operator_args(hourly=True)["vars"])
    if not build.success:
        raise RuntimeError(f"hourly build failed: {build.failures}")
    with connect_duckdb() as conn:
        raw_rows = scalar(conn, "select count(*) from raw.meter_readings")
    return {
        "history_days": history_days,
        "meters": meters,
        "raw_rows": raw_rows,
        "intervals_loaded": len(loaded.loaded),
        "load_seconds": round(load_seconds, 2),
        "dbt_seconds": round(build.seconds, 2),
        "cycle_seconds": round(load_seconds + build.seconds, 2),
        "mismatches": len(reconcile()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=500)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="metrify-bench-wh-") as tmp,
        environ_overrides({"METRIFY_HOME": None, "METRIFY_LAKE_URL": None}),
    ):
        one = cycle(1, args.meters, Path(tmp))
        fourteen = cycle(14, args.meters, Path(tmp))
    result = {
        "one_day": one,
        "fourteen_days": fourteen,
        "ratio": round(fourteen["cycle_seconds"] / one["cycle_seconds"], 2),
        "target_ratio": 1.5,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
