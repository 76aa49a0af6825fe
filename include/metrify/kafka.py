"""Kafka plumbing: the embedded broker, client configuration and topic metadata.

The embedded broker is librdkafka's mock cluster: a real Kafka-protocol broker on a loopback
port, living inside a small long-lived process (`metrify kafka up`). It publishes its bootstrap
address in `<METRIFY_HOME>/kafka/broker.json`, from which `metrify` builds the Airflow connection
`kafka_default` for every Airflow process it starts. Production points the same connection at a
real cluster (SASL/SSL settings go in the connection's extra, which is librdkafka configuration).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer

from metrify.processes import read_published, spawn_until_published, terminate
from metrify.settings import Settings, load_settings

BROKER_FILE = "broker.json"
# librdkafka's mock cluster auto-creates topics with this many partitions; CreateTopics is not
# served by it, so the embedded topic layout is fixed.
MOCK_PARTITIONS = 4

# Settings the drain relies on for exactly-once: they override whatever the connection says.
CONSUMER_OVERRIDES: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "enable.partition.eof": False,
    "auto.offset.reset": "earliest",
}
# Bounded prefetch: librdkafka queues at most this much per consumer ahead of the drain, so
# memory follows the batch size, not the backlog.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "queued.max.messages.kbytes": 32 * 1024,
    "fetch.wait.max.ms": 10,
    # librdkafka repeats every failed connection attempt as an ERROR line; the drain raises one
    # clear error instead. Set "log_level": 7 in the connection's extra to debug the client.
    "log_level": 2,
}


def broker_file(settings: Settings | None = None) -> Path:
    return (settings or load_settings()).kafka_dir / BROKER_FILE


def read_broker(settings: Settings | None = None) -> dict[str, Any] | None:
    """The running embedded broker's {bootstrap, pid}, or None if none is running."""
    return read_published(broker_file(settings))


def serve(settings: Settings | None = None, brokers: int = 1) -> None:
    """Run the mock cluster in this process until SIGTERM/SIGINT (what `kafka up` starts)."""
    settings = settings or load_settings()
    holder = Producer({"test.mock.num.brokers": brokers, "log_level": 3})
    metadata = holder.list_topics(timeout=10)
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in metadata.brokers.values())
    settings.kafka_dir.mkdir(parents=True, exist_ok=True)
    path = broker_file(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"bootstrap": bootstrap, "pid": os.getpid(), "started_at": time.time()}))
    os.replace(tmp, path)

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        holder.poll(0.5)
    path.unlink(missing_ok=True)
    # The mock cluster holds nothing durable; skip librdkafka's slow teardown of client sockets.
    os._exit(0)


def up(settings: Settings | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Start the embedded broker in the background (idempotent) and return its address."""
    settings = settings or load_settings()
    running = read_broker(settings)
    if running:
        return running
    settings.kafka_dir.mkdir(parents=True, exist_ok=True)
    return spawn_until_published(
        [sys.executable, "-m", "metrify.kafka", "serve"], settings.kafka_dir / "broker.log",
        lambda: read_broker(settings), "embedded Kafka broker", timeout,
        env={**os.environ, "METRIFY_HOME": str(settings.home)},
    )


def down(settings: Settings | None = None, timeout: float = 10.0) -> bool:
    """Stop the embedded broker; False if none was running."""
    settings = settings or load_settings()
    info = read_broker(settings)
    if not info:
        return False
    terminate(info["pid"], timeout)
    broker_file(settings).unlink(missing_ok=True)
    return True


def embedded_connection_extra(settings: Settings | None = None) -> dict[str, Any]:
    """The `kafka_default` connection extra for the running embedded broker."""
    settings = settings or load_settings()
    info = read_broker(settings)
    if not info:
        raise RuntimeError("the embedded Kafka broker is not running: start it with `metrify kafka up`")
    return {"bootstrap.servers": info["bootstrap"], "group.id": settings.consumer_group}


def consumer_config(connection_extra: dict[str, Any], group_id: str | None = None) -> dict[str, Any]:
    """librdkafka consumer configuration from a connection extra, made safe for exactly-once."""
    config = {**CONSUMER_DEFAULTS, **connection_extra, **CONSUMER_OVERRIDES}
    if group_id:
        config["group.id"] = group_id
    if not config.get("bootstrap.servers"):
        raise ValueError("Kafka connection extra has no 'bootstrap.servers'")
    config.setdefault("group.id", load_settings().consumer_group)
    return config


def producer_config(connection_extra: dict[str, Any]) -> dict[str, Any]:
    keep = {k: v for k, v in connection_extra.items() if k not in {"group.id", "auto.offset.reset"}}
    return {
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        "partitioner": "murmur2_random",  # the Java client's partitioner: same key, same partition
        "enable.idempotence": True,
        **keep,
    }


def partitions(config: dict[str, Any], topic: str, timeout: float = 10.0) -> list[int]:
    """Partition ids of `topic`; a clear error if the topic does not exist."""
    consumer = Consumer(config)
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise KafkaException(
            f"Kafka broker unreachable at {config.get('bootstrap.servers')} (no metadata for topic "
            f"{topic!r} within {timeout:.0f} s: {exc.args[0]}). Check the broker and the connection's "
            "bootstrap.servers; see RUNBOOK.md#broker-down"
        ) from exc
    finally:
        consumer.close()
    info = metadata.topics.get(topic)
    if info is None or info.error is not None:
        raise KafkaException(
            f"topic {topic!r} is not available on {config.get('bootstrap.servers')}: "
            f"{info.error if info else 'unknown topic'}"
        )
    return sorted(info.partitions)


def watermarks(config: dict[str, Any], topic: str) -> dict[int, tuple[int, int]]:
    """{partition: (low, high)} of `topic`, read from the broker (not cached)."""
    from confluent_kafka import TopicPartition

    consumer = Consumer(config)
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
                for p in metadata.topics[topic].partitions}
    finally:
        consumer.close()


def dropped_by_retention(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> int:
    """How many messages produced between the two readings the broker already deleted."""
    return sum(max(0, min(low, high) - before.get(p, (0, 0))[1]) for p, (low, high) in after.items())


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        sys.exit("usage: python -m metrify.kafka serve")
