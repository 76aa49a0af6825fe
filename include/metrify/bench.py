"""`make bench`: ingestion throughput and memory, measured against a ceiling in the same run.

On one embedded broker it produces N simulated readings, then in separate processes
1. the raw consume rate: assign + consume every message to the high watermark, touching each
   value, no decoding, no writing (the ceiling for any consumer on this machine);
2. the drain rate: `drain_partition` over every partition into a fresh local lake (decode,
   validate, zstd Parquet, offset commits) with its peak RSS.
Results go to `bench-results/ingest.json` (and stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from metrify import kafka
from metrify.settings import PROJECT_ROOT, load_settings

RAW_CONSUME = """
import json, sys, time
from confluent_kafka import Consumer, TopicPartition
config, topic, parts = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
consumer = Consumer(config)
started, count, size = time.perf_counter(), 0, 0
for p in parts:
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
    consumer.assign([TopicPartition(topic, p, low)])
    last = low - 1
    while last < high - 1:
        for m in consumer.consume(10000, timeout=1.0):
            size += len(m.value()); last = m.offset(); count += 1
print(json.dumps({"messages": count, "bytes": size, "seconds": time.perf_counter() - started}))
"""

DRAIN = """
import json, sys, time
from metrify import drain, lake
from metrify.settings import load_settings
config, topic, parts, batch = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
root = lake.lake_root(load_settings())
started = time.perf_counter()
reports = [drain.drain_partition(config, topic, p, root, batch_size=batch) for p in parts]
print(json.dumps({"seconds": time.perf_counter() - started,
                  "messages": sum(r.messages for r in reports), "valid_rows": sum(r.valid_rows for r in reports),
                  "quarantined": sum(r.quarantined for r in reports), "files": sum(r.files for r in reports)}))
"""


def _child(code: str, *args: str, env: dict[str, str]) -> dict[str, Any]:
    """Run `code` in a fresh interpreter; its JSON result (last stdout line) plus its peak RSS."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, "-c", code, *args], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"benchmark step failed:\n{err.read()[-3000:]}")
        result = json.loads(out.read().strip().splitlines()[-1])
    result["peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)  # Linux reports KiB
    return result


def run(messages: int, batch_size: int, poison_rate: float) -> dict[str, Any]:
    from metrify.simulator import SimulationOptions, produce, simulate

    with tempfile.TemporaryDirectory(prefix="metrify-bench-") as tmp:
        env = {**os.environ, "METRIFY_HOME": tmp}
        os.environ["METRIFY_HOME"] = tmp
        settings = load_settings()
        info = kafka.up(settings)
        try:
            meters = max(1, messages // 96)
            t0 = time.perf_counter()
            sim = simulate(SimulationOptions(meters=meters, start=datetime(2026, 11, 20, tzinfo=timezone.utc),
                                             seed=1, poison_rate=poison_rate))
            t1 = time.perf_counter()
            topic = "bench-meter-readings"
            extra = {"bootstrap.servers": info["bootstrap"]}
            produce(sim.keys, sim.values, topic, kafka.producer_config(extra))
            t2 = time.perf_counter()
            total = len(sim.values)
            avg_bytes = sum(map(len, sim.values[:10000])) / min(total, 10000)
            del sim
            print(f"produced {total:,} messages ({avg_bytes:.0f} B each) in {t2 - t1:.1f} s "
                  f"(simulated in {t1 - t0:.1f} s)", flush=True)

            parts = json.dumps(kafka.partitions(kafka.consumer_config(extra, "bench-meta"), topic))
            raw = _child(RAW_CONSUME, json.dumps(kafka.consumer_config(extra, "bench-raw")), topic, parts, env=env)
            raw["rate"] = raw["messages"] / raw["seconds"]
            print(f"raw consume: {raw['messages']:,} in {raw['seconds']:.2f} s = {raw['rate']:,.0f} msg/s", flush=True)
            drained = _child(DRAIN, json.dumps(kafka.consumer_config(extra, "bench-drain")), topic, parts,
                             str(batch_size), env=env)
            drained["rate"] = drained["messages"] / drained["seconds"]
            print(f"drain to Parquet: {drained['messages']:,} in {drained['seconds']:.2f} s = "
                  f"{drained['rate']:,.0f} msg/s, peak RSS {drained['peak_rss_mib']} MiB", flush=True)
        finally:
            kafka.down(settings)
    if drained["messages"] != total or drained["valid_rows"] + drained["quarantined"] != total:
        raise RuntimeError(f"benchmark lost messages: produced {total}, drained {drained}")
    return {
        "benchmark": "ingest_meter_readings drain",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "messages": total,
        "avg_message_bytes": round(avg_bytes),
        "batch_size": batch_size,
        "poison_rate": poison_rate,
        "raw_consume": raw,
        "drain": drained,
        "drain_to_raw_ratio": round(drained["rate"] / raw["rate"], 3),
        "targets": {"drain_to_raw_ratio": ">= 0.5", "peak_rss_mib": "< 1024 for 5M messages"},
        "targets_met": drained["rate"] >= 0.5 * raw["rate"] and (drained["peak_rss_mib"] or 0) < 1024,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5_000_000)
    parser.add_argument("--batch-size", type=int, default=load_settings().batch_size)
    parser.add_argument("--poison-rate", type=float, default=0.0001)
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "bench-results" / "ingest.json")
    args = parser.parse_args(argv)
    result = run(args.messages, args.batch_size, args.poison_rate)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"drain/raw = {result['drain_to_raw_ratio']:.2f} (target >= 0.5); "
          f"peak RSS {result['drain']['peak_rss_mib']} MiB (target < 1024); written to {args.output}")


if __name__ == "__main__":
    main()
