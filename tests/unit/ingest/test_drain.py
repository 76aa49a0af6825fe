"""Draining a real Kafka-protocol broker into the lake: exactly once, nothing lost."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
import pytest

from metrify import lake
from metrify.contracts.readings import DATASET
from metrify.ingest import drain, kafka
from metrify_dev import kafka_mock
from metrify_dev.simulator import SimulationOptions, produce, simulate

DAY = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture
def topic(broker: dict) -> str:
    return f"meters-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def config(broker: dict) -> dict:
    extra = {"bootstrap.servers": broker["bootstrap"]}
    return kafka.consumer_config(extra, group_id=f"group-{uuid.uuid4().hex[:8]}")


def _produce(broker: dict, topic: str, **options: object):
    options.setdefault("start", DAY)
    sim = simulate(SimulationOptions(**options))
    produce(sim.keys, sim.values, topic, kafka.producer_config({"bootstrap.servers": broker["bootstrap"]}))
    return sim


def _drain_all(config: dict, topic: str, root, batch_size: int = 1000) -> list[drain.DrainReport]:
    return [
        drain.drain_partition(config, topic, p, root, batch_size=batch_size) for p in kafka.partitions(config, topic)
    ]


def _lake_state(root) -> tuple[int, int, list[tuple[int, int]]]:
    raw = lake.read_table(root / "raw" / DATASET, columns=["partition", "offset"])
    quarantined = lake.count_rows(root / "quarantine" / DATASET)
    keys = sorted(zip(raw["partition"].to_pylist(), raw["offset"].to_pylist(), strict=True))
    return raw.num_rows, quarantined, keys


def test_drain_reconciles_partitions_by_event_hour_and_is_idempotent(broker, topic, config, metrify_home) -> None:
    sim = _produce(broker, topic, meters=60, seed=11, poison_rate=0.005, late_rate=0.02, duplicate_rate=0.01)
    root = lake.lake_root()
    reports = _drain_all(config, topic, root)
    assert len(reports) == kafka_mock.MOCK_PARTITIONS
    assert sum(r.consumed for r in reports) == sim.counts["messages"]
    raw_rows, quarantined, keys = _lake_state(root)
    assert raw_rows + quarantined == sim.counts["messages"]
    assert quarantined == sim.counts["poison_messages"]
    assert len(keys) == len(set(keys)), "a Kafka message landed twice"
    assert all(r.batches >= 2 for r in reports)  # bounded batches, not one big read

    # every file sits in the partition of its rows' event hour and is named by its offsets
    for path in lake.list_files(root / "raw" / DATASET):
        date_part, hour_part, name = Path(path).parts[-3:]
        table = lake.read_table(lake.lake_root() / "raw" / DATASET / date_part / hour_part)
        hours = set(pc.strftime(table["reading_ts"], "date=%Y-%m-%d/hour=%H").to_pylist())
        assert hours == {f"{date_part}/{hour_part}"}
        assert name.startswith(f"{topic}+") and name.endswith(".parquet")

    again = _drain_all(config, topic, root)
    assert sum(r.consumed for r in again) == 0
    assert _lake_state(root) == (raw_rows, quarantined, keys)


def test_drain_stops_at_the_high_watermark_seen_at_start(broker, topic, config, metrify_home) -> None:
    _produce(broker, topic, meters=10, seed=3)
    root = lake.lake_root()
    first = _drain_all(config, topic, root)
    more = _produce(broker, topic, meters=10, seed=4, start=datetime(2026, 11, 21, tzinfo=UTC))
    second = _drain_all(config, topic, root)
    assert sum(r.consumed for r in second) == more.counts["messages"]
    assert all(s.start_offset == f.end_offset for f, s in zip(first, second, strict=True))


CRASH = textwrap.dedent(
    """
    import json, os, sys
    from metrify import lake
    from metrify.ingest import drain
    config, topic, partition = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])

    def crash(result):
        os._exit(17)  # die after the files are durable, before the offset commit

    drain.drain_partition(config, topic, partition, lake.lake_root(), batch_size=700, on_batch_written=crash)
    """
)


def test_crash_between_write_and_commit_loses_nothing_and_duplicates_nothing(
    broker, topic, config, metrify_home
) -> None:
    sim = _produce(broker, topic, meters=40, seed=21, poison_rate=0.005)
    root = lake.lake_root()
    for partition in kafka.partitions(config, topic):
        done = subprocess.run(
            [sys.executable, "-c", CRASH, json.dumps(config), topic, str(partition)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 17, done.stderr[-2000:]
    files_after_crash = lake.list_files(root / "raw" / DATASET)
    assert files_after_crash, "the crashed drain should have written its first batch"

    reports = _drain_all(config, topic, root, batch_size=700)
    raw_rows, quarantined, keys = _lake_state(root)
    assert raw_rows + quarantined == sim.counts["messages"]
    assert len(keys) == len(set(keys)), "the retry duplicated rows"
    assert all(r.start_offset == 0 for r in reports)  # nothing was committed by the crashed runs
    assert set(files_after_crash) <= set(lake.list_files(root / "raw" / DATASET))  # overwritten, same names
    assert lake.list_files(root, suffix=".tmp") == []  # the killed drain's unfinished files were cleared


def test_unknown_topic_fails_with_a_clear_error(broker, config) -> None:
    bad = dict(config, **{"allow.auto.create.topics": False})
    with pytest.raises(Exception, match="not available"):
        kafka.partitions(bad, "no-such-topic-" + uuid.uuid4().hex[:6], timeout=3)


def test_unreachable_broker_fails_fast_naming_the_address_and_the_runbook() -> None:
    config = kafka.consumer_config({"bootstrap.servers": "127.0.0.1:9"}, group_id="nobody")
    with pytest.raises(Exception, match=r"Kafka broker unreachable at 127\.0\.0\.1:9.*RUNBOOK.md#broker-down"):
        kafka.partitions(config, "meter-readings", timeout=2)


def test_retention_loss_on_the_embedded_broker_is_detected(broker, topic) -> None:
    """librdkafka's mock broker keeps ~5 MB per partition: a too-large simulation must say so."""
    extra = {"bootstrap.servers": broker["bootstrap"]}
    meta = kafka.consumer_config(extra, group_id="meta")
    produce([b"k"], [b"{}"], topic, kafka.producer_config(extra))
    before = kafka.watermarks(meta, topic)
    assert kafka.dropped_by_retention(before, kafka.watermarks(meta, topic)) == 0
    payload = b"x" * 4000
    producer = kafka.producer_config(extra) | {"compression.type": "none"}
    produce([b"k"] * 3000, [payload] * 3000, topic, producer)  # ~12 MB into one key's partition
    assert kafka.dropped_by_retention(before, kafka.watermarks(meta, topic)) > 0


def test_a_failure_while_decoding_publishes_nothing_and_commits_nothing(
    broker, topic, config, metrify_home, monkeypatch
) -> None:
    _produce(broker, topic, meters=20, seed=5)
    root = lake.lake_root()
    real_decode, calls = drain.decode_chunk, []

    def failing_decode(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("simulated failure in a drain worker")
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(drain, "decode_chunk", failing_decode)
    partition = kafka.partitions(config, topic)[0]
    with pytest.raises(MemoryError, match="simulated failure"):
        drain.drain_partition(config, topic, partition, root, batch_size=200)
    raw_rows, quarantined, keys = _lake_state(root)
    assert raw_rows + quarantined == 200  # the first batch, published before the failure
    assert {offset for _, offset in keys} == set(range(200))
    assert lake.list_files(root, suffix=".tmp") == []

    monkeypatch.setattr(drain, "decode_chunk", real_decode)
    report = drain.drain_partition(config, topic, partition, root, batch_size=200)
    assert report.start_offset == 200  # the first batch was committed, the failed one was not
    raw_rows, quarantined, keys = _lake_state(root)
    assert raw_rows + quarantined == report.end_offset == len(set(keys))


def test_poison_messages_drain_without_an_exception_each_offset_once(broker, topic, config, metrify_home) -> None:
    """Every hard case of the decoder, produced between valid readings into one partition, drains
    without an exception: each offset lands in raw or in quarantine exactly once, as the cases'
    table says, a quarantined message keeps its exact bytes and a reason naming its problem (the
    one it gets alone), and a second drain reads nothing."""
    from metrify.contracts.readings import MAX_REASON_CHARS
    from metrify.ingest.decode import decode
    from tests.unit.ingest.test_decode import HARD, POISON, encode, reading

    cases = [
        *HARD,
        *((v, e) for _, v, e in POISON if len(v) < 900_000),
        (b"{" + b" " * 800_000 + b"]", "not valid JSON"),
    ]
    values: list[bytes | None] = []
    expected: dict[int, str | None] = {}  # offset -> what its quarantine reason says (None: a raw row)
    for n, (case, reason) in enumerate(cases):
        for i in range(50):
            expected[len(values)] = None
            values.append(encode(reading(consumption_kwh=(n * 50 + i) / 1000)))
        expected[len(values)] = reason
        values.append(case)
    producer = kafka.producer_config({"bootstrap.servers": broker["bootstrap"]})
    produce([b"one-meter"] * len(values), values, topic, producer)  # type: ignore[arg-type]

    root = lake.lake_root()
    reports = _drain_all(config, topic, root, batch_size=700)
    assert sum(r.consumed for r in reports) == len(values)
    raw = lake.read_table(root / "raw" / DATASET, columns=["partition", "offset"])
    quarantine = lake.read_table(root / "quarantine" / DATASET)
    offsets = raw["offset"].to_pylist() + quarantine["offset"].to_pylist()
    assert sorted(offsets) == list(range(len(values))), "an offset is missing or landed twice"
    assert len(set(raw["partition"].to_pylist() + quarantine["partition"].to_pylist())) == 1

    assert sorted(quarantine["offset"].to_pylist()) == [o for o, reason in expected.items() if reason is not None]
    now = datetime.now(UTC)
    for row in quarantine.to_pylist():
        assert row["raw_value"] == values[row["offset"]], "the quarantine must keep the exact bytes"
        assert expected[row["offset"]] in row["reason"] and len(row["reason"]) <= MAX_REASON_CHARS, row["reason"]
        assert row["reason"] == dict(decode([values[row["offset"]]], now=now).rejected)[0]
    assert sum(r.consumed for r in _drain_all(config, topic, root)) == 0


def test_readings_older_than_the_lookback_are_quarantined_as_too_late(broker, topic, config, metrify_home) -> None:
    from datetime import timedelta

    from tests.unit.ingest.test_decode import encode, reading

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ages = [1, 2, 40, 3, 100, 34]  # days
    values = [encode(reading(reading_ts=f"{hour - timedelta(days=age):%Y-%m-%dT%H:%M:%SZ}")) for age in ages]
    produce(
        [b"one-meter"] * len(values), values, topic, kafka.producer_config({"bootstrap.servers": broker["bootstrap"]})
    )
    root = lake.lake_root()
    reports = [
        drain.drain_partition(config, topic, p, root, late_lookback=timedelta(days=35))
        for p in kafka.partitions(config, topic)
    ]
    assert sum(r.too_late for r in reports) == 2 and sum(r.quarantined for r in reports) == 2
    quarantine = lake.read_table(root / "quarantine" / DATASET).sort_by("offset")
    assert quarantine["offset"].to_pylist() == [2, 4]
    for reason, age in zip(quarantine["reason"].to_pylist(), (40, 100), strict=True):
        assert re.fullmatch(rf"too late: reading_ts \S+Z is {age}\.\d days old, beyond the 35-day lookback", reason)
    assert lake.count_rows(root / "raw" / DATASET) == 4


def test_a_replay_judges_lateness_as_the_attempt_it_replays(broker, topic, config, metrify_home, monkeypatch) -> None:
    """A reading that turns too late between a crashed attempt and its replay still lands once:
    the replay decodes with the attempt's clock and lookback and rewrites the same files."""
    from datetime import timedelta

    from tests.unit.ingest.test_decode import encode, reading

    lookback, now = timedelta(days=35), datetime.now(UTC)
    quarter = now.replace(minute=now.minute // 15 * 15, second=0, microsecond=0)
    # the first is 15 to 30 minutes inside the lookback now, and too late two hours later
    ages = [lookback - timedelta(minutes=30), timedelta(days=1), timedelta(days=2)]
    values = [encode(reading(reading_ts=f"{quarter - age:%Y-%m-%dT%H:%M:%SZ}")) for age in ages]
    produce(
        [b"one-meter"] * len(values), values, topic, kafka.producer_config({"bootstrap.servers": broker["bootstrap"]})
    )
    root = lake.lake_root()

    class Crash(Exception):
        pass

    def crash(result: drain.BatchResult) -> None:
        raise Crash  # after the files are published, before the offset is committed

    partitions = kafka.partitions(config, topic)
    for p in partitions:
        try:
            drain.drain_partition(config, topic, p, root, late_lookback=lookback, on_batch_written=crash)
        except Crash:
            pass
    assert lake.count_rows(root / "raw" / DATASET) == 3  # all in time at the attempt
    later = now + timedelta(hours=2)
    monkeypatch.setattr(drain, "_now", lambda: later)
    reports = [drain.drain_partition(config, topic, p, root, late_lookback=lookback) for p in partitions]
    assert sum(r.consumed for r in reports) == 3 and all(r.start_offset == 0 for r in reports)
    raw_rows, quarantined, keys = _lake_state(root)
    assert (raw_rows, quarantined) == (3, 0), "the replay must judge as the attempt it replays did"
    assert sorted(offset for _, offset in keys) == [0, 1, 2]
