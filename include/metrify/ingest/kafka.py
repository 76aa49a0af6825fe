"""Kafka client side: consumer and producer configuration from a connection extra, topic metadata.

A Kafka connection's extra is librdkafka configuration (`bootstrap.servers`, and in production
`security.protocol: SASL_SSL`, `sasl.*`); the drain's exactly-once settings override whatever
the connection says.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from metrify.config import load_settings

# Settings the drain relies on for exactly-once: they override whatever the connection says.
CONSUMER_OVERRIDES: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "enable.partition.eof": False,
    # never jump silently: an out-of-range offset is an error the drain reports (OffsetError)
    "auto.offset.reset": "error",
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


def consumer_config(
    connection_extra: dict[str, Any], group_id: str | None = None, batch_bytes: int | None = None
) -> dict[str, Any]:
    """librdkafka consumer configuration from a connection extra, made safe for exactly-once.

    With `batch_bytes`, librdkafka's prefetch queue and fetch responses are sized from the
    drain's byte budget (a quarter of it each, 1..32 MiB), so memory follows the batch's bytes,
    not the backlog or librdkafka's defaults (50 MiB fetches, 64 MiB queue).
    """
    config = {**CONSUMER_DEFAULTS, **connection_extra, **CONSUMER_OVERRIDES}
    if batch_bytes is not None:
        share = min(32 * 2**20, max(2**20, batch_bytes // 4))
        config["queued.max.messages.kbytes"] = share // 1024
        config["fetch.max.bytes"] = share
        config["receive.message.max.bytes"] = share + 2**20  # librdkafka: at least fetch.max.bytes + 512
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
    consumer = Consumer(config)
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            for p in metadata.topics[topic].partitions
        }
    finally:
        consumer.close()


def dropped_by_retention(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> int:
    """How many messages produced between the two readings the broker already deleted."""
    return sum(max(0, min(low, high) - before.get(p, (0, 0))[1]) for p, (low, high) in after.items())
