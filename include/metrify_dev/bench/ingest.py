"""`make bench`: ingestion throughput and memory, measured against a ceiling in the same run.

On one embedded broker it produces N simulated readings, then in separate processes
1. the raw consume rate: assign + consume every message to the high watermark, touching each
   value, no decoding, no writing (the ceiling for any consumer on this machine);
2. the drain rate: `drain_partition` over every partition into a fresh local lake (decode,
   validate, zstd Parquet, offset commits) with its peak RSS.
Both run `--repeats` times, interleaved, each with a fresh consumer group (and lake); the best
rate of each side counts, so a busy moment on the machine does not decide the ratio. Results go
to `bench-results/ingest.json` (and stdout), with every run's rate.

librdkafka's mock broker keeps only about 5 MB (at most 100,000 messages) per partition and
auto-creates topics with 4 partitions, so the backlog is spread over as many topics as needed
(`TOPIC_MESSAGES` each) and the bench checks that nothing was dropped before it reads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from metrify.config import load_settings
from metrify.ingest import kafka
from metrify_dev import REPO_ROOT, kafka_mock

PEAK_RSS = """
import resource
def peak_rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
"""

RAW_CONSUME = (
    PEAK_RSS
    + """
import json, sys, time
from confluent_kafka import Consumer, TopicPartition
config, assignments = json.loads(sys.argv[1]), json.loads(sys.argv[2])
consumer = Consumer(config)
started, cpu_started, count, size = time.perf_counter(), cpu_seconds(), 0, 0
for topic, p in assignments:
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
    consumer.assign([TopicPartition(topic, p, low)])
    last = low - 1
    while last < high - 1:
        for m in consumer.consume(min(10000, high - 1 - last), timeout=1.0):
            size += len(m.value()); last = m.offset(); count += 1
print(json.dumps({"messages": count, "bytes": size, "seconds": time.perf_counter() - started,
                  "cpu_seconds": round(cpu_seconds() - cpu_started, 2), "peak_rss_mib": peak_rss_mib()}))
"""
)

DRAIN = (
    PEAK_RSS
    + """
import json, sys, time
from metrify import lake
from metrify.config import load_settings
from metrify.ingest import drain
config, assignments, batch = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
root = lake.lake_root(load_settings())
started, cpu_started = time.perf_counter(), cpu_seconds()
reports = [drain.drain_partition(config, topic, p, root, batch_size=batch) for topic, p in assignments]
print(json.dumps({"seconds": time.perf_counter() - started, "cpu_seconds": round(cpu_seconds() - cpu_started, 2),
                  "threads": drain.DRAIN_THREADS + 1, "messages": sum(r.messages for r in reports),
                  "valid_rows": sum(r.valid_rows for r in reports),
                  "quarantined": sum(r.quarantined for r in reports), "files": sum(r.files for r in reports),
                  "peak_rss_mib": peak_rss_mib()}))
"""
)
TOPIC_MESSAGES = 300_000


def _child(code: str, *args: str, env: dict[str, str]) -> dict[str, Any]:
    """Run `code` in a fresh interpreter; its JSON result is the last line it prints."""
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check_retained(config: dict[str, Any], pairs: list[tuple[str, int]], produced: int) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(config)
    try:
        marks = [consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10, cached=False) for t, p in pairs]
    finally:
        consumer.close()
    retained = sum(high - low for low, high in marks)
    if retained != produced or any(low for low, _ in marks):
        raise RuntimeError(
            f"the embedded broker dropped {produced - retained:,} of {produced:,} messages by "
            f"retention; lower TOPIC_MESSAGES"
        )


def run(messages: int, batch_size: int, poison_rate: float, repeats: int = 3) -> dict[str, Any]:
    from metrify_dev.simulator import SimulationOptions, produce, simulate

    with tempfile.TemporaryDirectory(prefix="metrify-bench-") as tmp:
        env = {**os.environ, "METRIFY_HOME": tmp}
        os.environ["METRIFY_HOME"] = tmp
        settings = load_settings()
        info = kafka_mock.up(settings)
        try:
            meters = max(1, messages // 96)
            t0 = time.perf_counter()
            sim = simulate(
                SimulationOptions(
                    meters=meters, start=datetime(2026, 11, 20, tzinfo=UTC), seed=1, poison_rate=poison_rate
                )
            )
            t1 = time.perf_counter()
            extra = {"bootstrap.servers": info["bootstrap"]}
            total = len(sim.values)
            avg_bytes = sum(map(len, sim.values[:10000])) / min(total, 10000)
            topics = [f"bench-meter-readings-{n:02d}" for n in range((total + TOPIC_MESSAGES - 1) // TOPIC_MESSAGES)]
            for n, topic in enumerate(topics):
                chunk = slice(n * TOPIC_MESSAGES, (n + 1) * TOPIC_MESSAGES)
                produce(sim.keys[chunk], sim.values[chunk], topic, kafka.producer_config(extra))
            t2 = time.perf_counter()
            del sim
            meta = kafka.consumer_config(extra, "bench-meta")
            pairs = [(topic, p) for topic in topics for p in kafka.partitions(meta, topic)]
            _check_retained(meta, pairs, total)
            print(
                f"produced {total:,} messages ({avg_bytes:.0f} B each) into {len(topics)} topics x "
                f"{kafka_mock.MOCK_PARTITIONS} partitions in {t2 - t1:.1f} s (simulated in {t1 - t0:.1f} s)",
                flush=True,
            )
            parts = json.dumps(pairs)
            raws, drains = [], []
            for attempt in range(1, repeats + 1):  # interleaved, so a busy moment hits both sides alike
                raw = _child(
                    RAW_CONSUME, json.dumps(kafka.consumer_config(extra, f"bench-raw-{attempt}")), parts, env=env
                )
                raw["rate"] = raw["messages"] / raw["seconds"]
                raws.append(raw)
                print(
                    f"[{attempt}/{repeats}] raw consume: {raw['messages']:,} in {raw['seconds']:.2f} s = "
                    f"{raw['rate']:,.0f} msg/s",
                    flush=True,
                )
                lake_url = (Path(tmp) / f"lake-{attempt}").as_uri()
                drained = _child(
                    DRAIN,
                    json.dumps(kafka.consumer_config(extra, f"bench-drain-{attempt}")),
                    parts,
                    str(batch_size),
                    env={**env, "METRIFY_LAKE_URL": lake_url},
                )
                drained["rate"] = drained["messages"] / drained["seconds"]
                drains.append(drained)
                print(
                    f"[{attempt}/{repeats}] drain to Parquet: {drained['messages']:,} in {drained['seconds']:.2f} s "
                    f"= {drained['rate']:,.0f} msg/s, peak RSS {drained['peak_rss_mib']} MiB",
                    flush=True,
                )
                if drained["messages"] != total or drained["valid_rows"] + drained["quarantined"] != total:
                    raise RuntimeError(f"benchmark lost messages: produced {total}, drained {drained}")
                shutil.rmtree(Path(tmp) / f"lake-{attempt}", ignore_errors=True)
        finally:
            kafka_mock.down(settings)
    raw, drained = max(raws, key=lambda r: r["rate"]), max(drains, key=lambda r: r["rate"])
    return {
        "benchmark": "ingest_meter_readings drain",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "messages": total,
        "avg_message_bytes": round(avg_bytes),
        "batch_size": batch_size,
        "poison_rate": poison_rate,
        "repeats": repeats,
        "raw_consume": raw,  # the best of the repeats, for each side
        "drain": drained,
        "drain_to_raw_ratio": round(drained["rate"] / raw["rate"], 3),
        "all_rates": {"raw_consume": [round(r["rate"]) for r in raws], "drain": [round(d["rate"]) for d in drains]},
        "peak_rss_mib_max": max(d["peak_rss_mib"] or 0 for d in drains),
        "targets": {"drain_to_raw_ratio": ">= 0.5", "peak_rss_mib": "< 1024 for 5M messages"},
        "targets_met": drained["rate"] >= 0.5 * raw["rate"] and max(d["peak_rss_mib"] or 0 for d in drains) < 1024,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5_000_000)
    parser.add_argument("--batch-size", type=int, default=load_settings().batch_size)
    parser.add_argument("--poison-rate", type=float, default=0.0001)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved raw/drain runs; the best of each counts")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench-results" / "ingest.json")
    args = parser.parse_args(argv)
    result = run(args.messages, args.batch_size, args.poison_rate, args.repeats)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"best of {result['repeats']}: drain/raw = {result['drain_to_raw_ratio']:.2f} (target >= 0.5); "
        f"peak RSS {result['peak_rss_mib_max']} MiB (target < 1024); written to {args.output}"
    )


if __name__ == "__main__":
    main()
