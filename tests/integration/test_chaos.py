"""Chaos: drains of a real Kafka broker killed (SIGKILL) at random moments, again and again,
with poison and late messages in the stream. Afterwards every (topic, partition, offset) is in
raw/ or quarantine/ exactly once, and after the gate and the warehouse the facts equal the
validated rows, hour by hour, in count and kWh.

CI runs a reduced size; `make chaos` runs the full one (1 million messages, 20 kills):
`CHAOS_MESSAGES` and `CHAOS_KILLS` set the size.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from metrify import lake
from metrify.config import load_settings
from metrify.contracts.readings import DATASET
from metrify.ingest import kafka
from metrify.quality.verdicts import read_verdicts
from metrify.warehouse import dbt_runner, duckdb_loader, reconcile
from metrify_dev import sample_lake
from metrify_dev.simulator import SimulationOptions, produce, simulate
from tests.integration.oracles import validated_hourly

pytestmark = pytest.mark.airflow

MESSAGES = int(os.environ.get("CHAOS_MESSAGES", "40000"))
KILLS = int(os.environ.get("CHAOS_KILLS", "8"))
PARTITIONS = 4

DRAIN_ALL = """
import json, sys
from metrify import lake
from metrify.ingest import drain, kafka
config, topic, batch = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for partition in kafka.partitions(config, topic):
    drain.drain_partition(config, topic, partition, lake.lake_root(), batch_size=batch, idle_timeout=5)
print("drained", flush=True)
"""


def _lake_keys(root) -> list[tuple[int, int]]:
    keys = []
    for layer in ("raw", "quarantine"):
        table = lake.read_table(root / layer / DATASET, columns=["partition", "offset"])
        if table is not None:
            keys += list(zip(table["partition"].to_pylist(), table["offset"].to_pylist(), strict=True))
    return keys


@pytest.mark.timeout(3600)
def test_killed_drains_leave_every_offset_exactly_once_and_the_facts_equal_validated(real_broker, metrify_home) -> None:
    extra = real_broker.connection_extra()
    topic = f"chaos-{uuid.uuid4().hex[:8]}"
    real_broker.create_topic(topic, partitions=PARTITIONS)
    meters = max(8, MESSAGES // 96)
    sim = simulate(
        SimulationOptions(
            meters=meters,
            start=datetime(2026, 11, 18, tzinfo=UTC),
            seed=13,
            poison_rate=0.002,
            late_rate=0.02,
            out_of_order_rate=0.01,
            duplicate_rate=0.005,
        )
    )
    produce(sim.keys, sim.values, topic, kafka.producer_config(extra))
    produced = sim.counts["messages"]
    config = kafka.consumer_config(extra, group_id=f"chaos-{uuid.uuid4().hex[:6]}")
    batch = max(500, produced // (PARTITIONS * 12))  # a dozen batches per partition: kills land anywhere
    command = [sys.executable, "-c", DRAIN_ALL, json.dumps(config), topic, str(batch)]
    rng = random.Random(7)
    kills = 0
    started = time.monotonic()
    while kills < KILLS:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 6.0))  # interpreter start-up is ~1-2 s of it
        if process.poll() is not None:  # it finished before the kill: nothing left to break
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
    final = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert final.returncode == 0 and "drained" in final.stdout, final.stderr[-3000:]
    print(f"\n{produced:,} messages, {kills} kills, drained in {time.monotonic() - started:.0f} s")
    assert kills >= min(KILLS, 3), "the drains finished before they could be killed: raise CHAOS_MESSAGES"

    root = lake.lake_root(load_settings())
    keys = _lake_keys(root)
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} offsets landed twice"
    assert len(keys) == produced, f"{produced - len(keys)} offsets are missing"
    assert lake.list_files(root, suffix=".tmp") == []

    # the gate and the warehouse: facts = validated rows, per hour, in count and kWh
    verdicts = sample_lake.gate_lake(root)
    assert verdicts and "blocked" not in verdicts.values(), verdicts
    duckdb_loader.sync()
    duckdb_loader.load_registry_duckdb(sim.registry)
    duckdb_loader.load_verdicts_duckdb(read_verdicts(root).to_pandas())
    build = dbt_runner.run_dbt(["build", "--exclude", "path:models/metrics"])
    assert build.success, build.failures
    # per hour, the fact against the validated files read with pyarrow (not the loader's listing)
    expected = validated_hourly(Path(root.path))
    with duckdb_loader.connect_duckdb() as conn:
        fact = conn.execute(
            "select hour_start, sum(reading_count) as readings, sum(consumption_kwh) as consumption_kwh "
            "from marts.fct_meter_readings_hourly group by 1 order by 1"
        ).df()
    assert len(expected) > 0 and [pd.Timestamp(h) for h in fact["hour_start"]] == list(expected.index)
    assert fact["readings"].tolist() == expected["readings"].tolist()
    assert fact["consumption_kwh"].to_numpy() == pytest.approx(expected["consumption_kwh"].to_numpy(), abs=1e-6)
    assert reconcile.reconcile() == []  # and the platform's own reconciliation agrees
