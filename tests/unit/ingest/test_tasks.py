"""The ingestion DAG's reconciliation, on the reports real drains emit and the files they wrote."""

from __future__ import annotations

import uuid

import pyarrow.parquet as pq
import pytest

from metrify import lake
from metrify.ingest import drain, kafka
from metrify.ingest.tasks import reconcile
from tests.unit.ingest.test_drain import DAY, _produce


@pytest.fixture
def drained(broker, metrify_home) -> list[dict]:
    topic = f"meters-{uuid.uuid4().hex[:8]}"
    config = kafka.consumer_config({"bootstrap.servers": broker["bootstrap"]}, group_id=f"g-{uuid.uuid4().hex[:8]}")
    _produce(broker, topic, meters=20, seed=5, poison_rate=0.01, start=DAY)
    root = lake.lake_root()
    return [
        drain.drain_partition(config, topic, p, root, batch_size=500).as_dict() for p in kafka.partitions(config, topic)
    ]


def test_reconcile_counts_the_published_files_against_the_offsets_read(drained) -> None:
    summary = reconcile(drained)
    assert summary["consumed"] == sum(r["end_offset"] - r["start_offset"] for r in drained) > 0
    assert summary["valid_rows"] + summary["quarantined"] == summary["consumed"] and summary["quarantined"] > 0
    assert summary["offsets"] == {r["partition"]: [r["start_offset"], r["end_offset"]] for r in drained}


def test_reconcile_fails_when_a_published_file_lost_a_row(drained) -> None:
    victim = next(f for r in drained for f in r["files"] if "/raw/" in f)
    path = victim.removeprefix("file://")
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)  # a file that lost its first row after the drain wrote it
    partition = next(r for r in drained if victim in r["files"])
    pattern = rf"reconciliation failed: .*\[{partition['partition']}\] offsets .*messages read but \d+ rows in the"
    with pytest.raises(RuntimeError, match=pattern):
        reconcile(drained)


def test_reconcile_fails_when_offsets_were_read_but_not_counted(drained) -> None:
    broken = [dict(r) for r in drained]
    broken[0]["consumed"] -= 1  # a reader that dropped a message without saying so
    with pytest.raises(RuntimeError, match=r"offsets but \d+ messages read \+ 0 gaps"):
        reconcile(broken)
