"""The operator's view of a partition's offsets, and the one safe way to move them.

    python -m metrify.ingest.offsets show  --partition 0
    python -m metrify.ingest.offsets reset --partition 0 --to-offset 1200

Runs wherever the Airflow workers run (it reads the `kafka_default` connection and the METRIFY_*
settings the DAGs use). `reset` commits the offset for the ingestion's consumer group; the next
`ingest_meter_readings` run drains from there. A target inside a published batch is widened to
the batch's first offset by the drain, so every re-drain rewrites whole files under their
recorded names and nothing doubles. RUNBOOK.md#re-drain-a-range.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from metrify import lake
from metrify.config import Settings, load_settings
from metrify.ingest.ledger import Ledger


class ResetRefused(RuntimeError):
    """The requested offset cannot be drained from safely."""


def _consumer(settings: Settings) -> Any:
    from confluent_kafka import Consumer

    from metrify.ingest.tasks import kafka_consumer_config

    return Consumer(kafka_consumer_config(settings))


def show(partition: int, settings: Settings | None = None) -> dict[str, Any]:
    """Kafka's committed offset and log bounds beside what the drain's ledger recorded."""
    from confluent_kafka import TopicPartition

    settings = settings or load_settings()
    topic = settings.meter_topic
    consumer = _consumer(settings)
    try:
        tp = TopicPartition(topic, partition)
        low, high = consumer.get_watermark_offsets(tp, timeout=10.0, cached=False)
        found = consumer.committed([tp], timeout=10.0)[0]
    finally:
        consumer.close()
    ledger = Ledger.read(lake.lake_root(settings), topic, partition)
    return {
        "topic": topic,
        "partition": partition,
        "group": settings.consumer_group,
        "committed": found.offset if found.offset >= 0 else None,
        "log_start": low,
        "high_watermark": high,
        "ledger_committed": ledger.committed,
        "pending_batch": ledger.pending[:2] if ledger.pending else None,
        "published_batches": len(ledger.batches),
        "first_batch": ledger.batches[0][:2] if ledger.batches else None,
        "last_batch": ledger.batches[-1][:2] if ledger.batches else None,
    }


def reset(partition: int, to_offset: int, settings: Settings | None = None) -> dict[str, Any]:
    """Commit `to_offset` for the ingestion's group; refuse offsets the drain could not honour."""
    from confluent_kafka import TopicPartition

    settings = settings or load_settings()
    state = show(partition, settings)
    where = f"{state['topic']}[{partition}]"
    low, high, ingested = state["log_start"], state["high_watermark"], state["ledger_committed"]
    if not low <= to_offset <= high:
        raise ResetRefused(f"{where}: offset {to_offset} is outside the log ({low}..{high}); nothing was changed")
    if ingested is not None and high < ingested:
        raise ResetRefused(
            f"{where}: the log ends at {high} but the lake already holds offsets up to {ingested - 1}: the topic "
            "was recreated or truncated, and new messages would reuse the names of files already in the lake. "
            "Nothing was changed. See RUNBOOK.md#offset-out-of-range"
        )
    consumer = _consumer(settings)
    try:
        consumer.commit(offsets=[TopicPartition(state["topic"], partition, to_offset)], asynchronous=False)
    finally:
        consumer.close()
    ledger = Ledger.read(lake.lake_root(settings), state["topic"], partition)
    inside = ledger.batch_containing(to_offset)
    starts_at = inside[0] if inside is not None else to_offset
    return {**state, "committed": to_offset, "next_drain_starts_at": starts_at}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metrify.ingest.offsets", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show_command = commands.add_parser("show", help="committed offset, log bounds and the drain's ledger")
    show_command.add_argument("--partition", type=int, required=True)
    reset_command = commands.add_parser("reset", help="commit an offset for the ingestion's consumer group")
    reset_command.add_argument("--partition", type=int, required=True)
    reset_command.add_argument("--to-offset", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        result = show(args.partition) if args.command == "show" else reset(args.partition, args.to_offset)
    except ResetRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
