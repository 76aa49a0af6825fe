"""Benchmark: one hourly transform cycle (load the new hour, build staging and marts) with one
day and with fourteen days of history behind it. The issue's target: the second stays within
1.5 times the first, because loads and the incremental facts touch only what changed.

    python -m metrify.bench_warehouse [--meters 500]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from metrify import lake, readings, transform, warehouse
from metrify.simulator import SimulationOptions, simulate

START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _write_hours(root, day_frame: pd.DataFrame, offset: timedelta, ingested_at: datetime,
                 name: str = "bench") -> None:
    frame = day_frame.copy()
    frame["reading_ts"] = frame["reading_ts"] + offset
    frame["topic"], frame["partition"], frame["kafka_ts"] = "meter-readings", 0, frame["reading_ts"]
    frame["offset"] = np.arange(len(frame), dtype=np.int64)
    frame["ingested_at"] = pd.Timestamp(ingested_at)
    ts = frame["reading_ts"]
    for (day, hour), part in frame.groupby([ts.dt.strftime("%Y-%m-%d"), ts.dt.hour]):
        path = lake.partition_path(root, "raw", "meter_readings", date=day, hour=f"{hour:02d}") / f"{name}.parquet"
        table = pa.Table.from_pandas(part[[f.name for f in readings.RAW_SCHEMA]], schema=readings.RAW_SCHEMA,
                                     preserve_index=False)
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
    warehouse.sync()
    warehouse.load_registry_duckdb(sim.registry)
    target = home / "dbt-target"
    hourly = ["build", "--exclude", "path:models/metrics"]
    first = warehouse.run_dbt(hourly, target_path=target)
    if not first.success:
        raise RuntimeError(f"initial build failed: {first.failures}")
    # the next hour arrives
    next_hour = day[day["reading_ts"] <= START + timedelta(hours=1)]
    new_at = START + timedelta(days=history_days, hours=1)
    started = time.perf_counter()
    _write_hours(root, next_hour, timedelta(days=history_days), new_at, name="bench-next-hour")
    loaded = warehouse.sync()
    load_seconds = time.perf_counter() - started
    build = warehouse.run_dbt(hourly, target_path=target, vars=transform.operator_args(hourly=True)["vars"])
    if not build.success:
        raise RuntimeError(f"hourly build failed: {build.failures}")
    with warehouse.connect_duckdb() as conn:
        raw_rows = conn.execute("select count(*) from raw.meter_readings").fetchone()[0]
    return {"history_days": history_days, "meters": meters, "raw_rows": raw_rows,
            "intervals_loaded": len(loaded.loaded), "load_seconds": round(load_seconds, 2),
            "dbt_seconds": round(build.seconds, 2), "cycle_seconds": round(load_seconds + build.seconds, 2),
            "mismatches": len(warehouse.reconcile())}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=500)
    args = parser.parse_args(argv)
    saved = os.environ.get("METRIFY_HOME")
    with tempfile.TemporaryDirectory(prefix="metrify-bench-wh-") as tmp:
        try:
            one = cycle(1, args.meters, Path(tmp))
            fourteen = cycle(14, args.meters, Path(tmp))
        finally:
            if saved is None:
                os.environ.pop("METRIFY_HOME", None)
            else:
                os.environ["METRIFY_HOME"] = saved
    result = {"one_day": one, "fourteen_days": fourteen,
              "ratio": round(fourteen["cycle_seconds"] / one["cycle_seconds"], 2), "target_ratio": 1.5}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
