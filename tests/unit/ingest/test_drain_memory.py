"""Memory follows the batch's bytes: draining a partition of ~800 KB messages from a real Kafka
broker stays within a bound set by the byte budget, however long the backlog."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid

from confluent_kafka import Producer

from metrify.ingest import kafka

MESSAGE_BYTES = 800_000
BUDGET = 16 * 2**20
# The stated bound, independent of the backlog: a fixed ~64 MiB (threads, consumer, Parquet
# writers) plus up to 40 x the byte budget: one batch being read and one being published, each
# held as Kafka messages, their values joined into lines and Arrow's parse buffers (~4 x the
# input for such wide lines), plus what the allocators keep after freeing; the peak is the rare
# moment those overlap. Measured with 16 MiB batches: +143 to +279 MiB on an idle machine; on a
# loaded one +259 MiB for a 229 MiB backlog, +454 to +571 MiB for 839 MiB, +496 MiB for 1.5 GiB,
# so growth levels off instead of following the backlog. A drain that held the backlog would
# hold every message value (the whole backlog, above the bound) before parsing it: it fails.
BOUND = 64 * 2**20 + 40 * BUDGET
MESSAGES = 1500  # ~1.1 GiB of backlog: well above the bound

DRAIN = """
import json, sys
from metrify import lake
from metrify.ingest import drain

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

config, topic, budget = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
root = lake.lake_root()
before = rss("VmRSS:")
report = drain.drain_partition(config, topic, 0, root, batch_size=100_000, batch_bytes=budget, idle_timeout=5)
print(json.dumps({"before": before, "peak": rss("VmHWM:"), "consumed": report.consumed, "batches": report.batches,
                  "valid_rows": report.valid_rows}))
"""


def _padded_reading(i: int) -> bytes:
    reading = {
        "meter_id": f"DE{i % 7:031d}",
        "reading_ts": f"2026-11-20T{(i // 4) % 24:02d}:{(i % 4) * 15:02d}:00Z",
        "consumption_kwh": 0.1,
        "export_kwh": 0.0,
        "voltage": 230.0,
        "current": 1.0,
        "power_factor": 0.95,
        "frequency": 50.0,
        "note": random.Random(i).randbytes(MESSAGE_BYTES // 2).hex(),  # a head-end's blob: ignored by the contract
    }
    return json.dumps(reading).encode()


def _produce(extra: dict, topic: str, first: int, count: int) -> None:
    producer = Producer({**extra, "linger.ms": 5})
    for i in range(first, first + count):
        producer.produce(topic, key=f"m{i % 7}", value=_padded_reading(i))
        producer.poll(0)
    assert producer.flush(60) == 0


def _drain(config: dict, topic: str) -> dict:
    command = [sys.executable, "-c", DRAIN, json.dumps(config), topic, str(BUDGET)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["grown"] = result["peak"] - result["before"]
    return result


def test_memory_is_bounded_by_the_byte_budget_not_the_backlog(real_broker, metrify_home) -> None:
    extra = real_broker.connection_extra()
    topic = f"big-{uuid.uuid4().hex[:8]}"
    real_broker.create_topic(topic, partitions=1)
    config = kafka.consumer_config(extra, group_id=f"mem-{uuid.uuid4().hex[:6]}", batch_bytes=BUDGET)
    _produce(extra, topic, 0, MESSAGES)
    result = _drain(config, topic)
    assert result["consumed"] == result["valid_rows"] == MESSAGES
    assert result["batches"] >= MESSAGES * MESSAGE_BYTES // BUDGET  # batches closed on bytes, not on count
    backlog = MESSAGES * MESSAGE_BYTES
    print(
        f"\ngrowth {result['grown'] / 2**20:.0f} MiB while draining {backlog / 2**20:.0f} MiB; budget "
        f"{BUDGET / 2**20:.0f} MiB, bound {BOUND / 2**20:.0f} MiB"
    )
    assert result["grown"] < BOUND < backlog
