"""The drain off the happy path: lost or impossible offsets, re-drains, two drains at once."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from metrify import lake
from metrify.contracts.readings import DATASET
from metrify.ingest import drain, kafka
from metrify.ingest.ledger import Ledger
from tests.unit.ingest.test_drain import _drain_all, _lake_state, _produce

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def topic(broker: dict) -> str:
    return f"meters-{uuid.uuid4().hex[:8]}"


def _config(broker: dict, group: str | None = None) -> dict:
    group = group or f"group-{uuid.uuid4().hex[:8]}"
    return kafka.consumer_config({"bootstrap.servers": broker["bootstrap"]}, group_id=group)


def _commit(config: dict, topic: str, partition: int, offset: int) -> None:
    consumer = Consumer(config)
    try:
        consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    finally:
        consumer.close()


def _exactly_once(root, produced: int) -> None:
    raw_rows, quarantined, keys = _lake_state(root)
    assert len(keys) == len(set(keys)), "a Kafka message landed twice"
    assert raw_rows + quarantined == produced, "a Kafka message was lost"


def test_lost_committed_offsets_resume_from_the_ledger_not_the_log_start(broker, topic, metrify_home) -> None:
    """Kafka expires a group's offsets after `offsets.retention.minutes` of an idle partition: the
    drain resumes from its own ledger instead of re-ingesting the partition from its start."""
    first = _produce(broker, topic, meters=20, seed=1)
    root = lake.lake_root()
    before = _drain_all(_config(broker), topic, root)
    more = _produce(broker, topic, meters=20, seed=2)
    after = _drain_all(_config(broker), topic, root)  # a group with no committed offsets at all
    assert [r.start_offset for r in after] == [r.end_offset for r in before]
    assert sum(r.consumed for r in after) == more.counts["messages"]
    _exactly_once(root, first.counts["messages"] + more.counts["messages"])


def test_a_committed_offset_above_the_high_watermark_fails_naming_both(broker, topic, metrify_home) -> None:
    _produce(broker, topic, meters=5, seed=1)
    config = _config(broker)
    _commit(config, topic, 0, 10_000_000)  # as if the topic was recreated under the same name
    with pytest.raises(drain.OffsetError, match=rf"{topic}\[0\]: .*10000000, is above the high watermark \d+"):
        drain.drain_partition(config, topic, 0, lake.lake_root())


def test_offsets_outside_the_log_and_inside_a_batch_are_resolved_or_refused() -> None:
    ledger = Ledger(root=None, topic="t", partition=3, committed=500, batches=[[0, 199], [200, 499]])
    assert drain.resolve_start("t", 3, 500, 0, 900, ledger) == 500
    assert drain.resolve_start("t", 3, None, 0, 900, ledger) == 500  # Kafka lost it: the ledger knows
    assert drain.resolve_start("t", 3, 250, 0, 900, ledger) == 200  # inside a batch: the whole batch again
    with pytest.raises(drain.OffsetError, match=r"t\[3\]: .* 100, is below the log start 150: messages 100\.\.149"):
        drain.resolve_start("t", 3, 100, 150, 900, ledger)
    with pytest.raises(drain.OffsetError, match=r"re-read part of the published batch 0\.\.199, whose start is no"):
        drain.resolve_start("t", 3, 180, 20, 900, ledger)
    with pytest.raises(drain.OffsetError, match="above the high watermark 400"):
        drain.resolve_start("t", 3, 500, 0, 400, ledger)
    assert drain.resolve_start("t", 3, None, 42, 900, Ledger(root=None, topic="t", partition=3)) == 42


class _OutOfRange:
    def error(self) -> KafkaError:
        return KafkaError(KafkaError._AUTO_OFFSET_RESET, "fetch offset out of range")


def test_an_out_of_range_fetch_is_an_error_never_a_silent_jump() -> None:
    assert kafka.CONSUMER_OVERRIDES["auto.offset.reset"] == "error"
    reader = drain.PartitionReader(consumer=None, topic="t", partition=2, poll_timeout=1, idle_timeout=1)
    with pytest.raises(drain.OffsetError, match=r"t\[2\]: Kafka refused the offset being read as out of range"):
        reader._is_partition_eof(_OutOfRange())


def _runbook_commands(section: str) -> list[str]:
    """The shell commands of a RUNBOOK.md section's first bash block, as an operator reads them."""
    body = (REPO / "RUNBOOK.md").read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    block = body.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def _run_as_operator(command: str, env: dict[str, str], **placeholders: int) -> subprocess.CompletedProcess:
    for name, value in placeholders.items():
        command = command.replace(f"<{name}>", str(value))
    argv = shlex.split(command)
    assert argv[0] == "python", command
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, text=True, timeout=120)


def _printed_json(stdout: str) -> dict:
    """The JSON document the command printed last (Airflow's own warnings may come before it)."""
    return json.loads(stdout[stdout.rindex("\n{") + 1 :] if not stdout.startswith("{") else stdout)


def test_the_runbook_re_drain_steps_as_written_rewrite_the_same_files(broker, topic, metrify_home) -> None:
    """RUNBOOK.md#re-drain-a-range, its commands run as written: reset the group's offset inside a
    published batch whose raw file was damaged, drain again: the batch is rewritten whole under
    its recorded names and nothing doubles, even with more messages in the partition by then."""
    group = f"group-{uuid.uuid4().hex[:8]}"
    config = _config(broker, group)
    first = _produce(broker, topic, meters=30, seed=3)
    root = lake.lake_root()
    _drain_all(config, topic, root, batch_size=300)
    files_before = set(lake.list_files(root / "raw" / DATASET)) | set(lake.list_files(root / "quarantine" / DATASET))
    batches = Ledger.read(root, topic, 0).batches
    assert len(batches) >= 3
    damaged = next(f for f in lake.list_files(root / "raw" / DATASET) if f"+0+{batches[1][0]:012d}-" in f)
    (root / "raw" / DATASET / damaged).unlink()
    more = _produce(broker, topic, meters=30, seed=4)

    connection = {"conn_type": "kafka", "extra": {"bootstrap.servers": broker["bootstrap"]}}
    env = {
        **os.environ,
        "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps(connection),
        "METRIFY_METER_TOPIC": topic,
        "METRIFY_CONSUMER_GROUP": group,
    }
    show, reset = _runbook_commands("Re-drain a range")
    shown = _run_as_operator(show, env, p=0)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert _printed_json(shown.stdout)["ledger_committed"] == batches[-1][1] + 1
    done = _run_as_operator(reset, env, p=0, a=batches[1][0] + 7)  # inside the damaged batch
    assert done.returncode == 0, done.stderr[-2000:]
    assert _printed_json(done.stdout)["next_drain_starts_at"] == batches[1][0]
    refused = _run_as_operator(reset, env, p=0, a=10**9)
    assert refused.returncode == 2 and "outside the log" in refused.stderr, refused.stderr[-2000:]

    reports = _drain_all(config, topic, root, batch_size=300)  # the next ingest run
    assert reports[0].start_offset == batches[1][0]
    files_after = set(lake.list_files(root / "raw" / DATASET)) | set(lake.list_files(root / "quarantine" / DATASET))
    assert files_before <= files_after  # the damaged file is back, the replayed batches kept their names
    _exactly_once(root, first.counts["messages"] + more.counts["messages"])


SLOW_DRAIN = textwrap.dedent(
    """
    import json, sys, time
    from metrify import lake
    from metrify.ingest import drain
    config, topic = json.loads(sys.argv[1]), sys.argv[2]

    def linger(result):
        print("published", result.first_offset, result.last_offset, flush=True)
        time.sleep(6)  # a zombie: a newer drain starts while this one holds a published batch

    try:
        drain.drain_partition(config, topic, 0, lake.lake_root(), batch_size=200, on_batch_written=linger)
    except Exception as exc:
        print(type(exc).__name__, exc, flush=True)
        sys.exit(3)
    """
)


def test_a_newer_drain_fences_out_a_stale_one(broker, topic, metrify_home) -> None:
    sim = _produce(broker, topic, meters=20, seed=6)
    config = _config(broker)
    root = lake.lake_root()
    zombie = subprocess.Popen(
        [sys.executable, "-c", SLOW_DRAIN, json.dumps(config), topic], stdout=subprocess.PIPE, text=True
    )
    assert zombie.stdout is not None
    while not (line := zombie.stdout.readline()).startswith("published"):  # log lines come first
        assert line, "the first drain ended before publishing a batch"
    fresh = drain.drain_partition(config, topic, 0, root, batch_size=200)  # takes over the partition
    out, _ = zombie.communicate(timeout=60)
    assert zombie.returncode == 3 and "FencedError" in out and "a newer drain" in out, out
    assert fresh.generation == Ledger.read(root, topic, 0).generation
    for partition in kafka.partitions(config, topic)[1:]:
        drain.drain_partition(config, topic, partition, root, batch_size=200)
    _exactly_once(root, sim.counts["messages"])
