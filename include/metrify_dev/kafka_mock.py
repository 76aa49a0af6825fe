"""The embedded Kafka broker of `make run`: librdkafka's mock cluster in a background process.

A real Kafka-protocol broker on a loopback port, living inside a small long-lived process
(`metrify kafka up`). It publishes its bootstrap address in `<METRIFY_HOME>/kafka/broker.json`,
from which the local stack builds the Airflow connection `kafka_default` for every Airflow
process it starts. About 5 MB per partition, 4 partitions per topic, no CreateTopics, data gone
when the process stops: the zero-dependency default, not proof of production behaviour.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from metrify.config import Settings, load_settings
from metrify_dev.processes import read_published, spawn_until_published, terminate

BROKER_FILE = "broker.json"
# librdkafka's mock cluster auto-creates topics with this many partitions; CreateTopics is not
# served by it, so the embedded topic layout is fixed.
MOCK_PARTITIONS = 4


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
        [sys.executable, "-m", "metrify_dev.kafka_mock", "serve"],
        settings.kafka_dir / "broker.log",
        lambda: read_broker(settings),
        "embedded Kafka broker",
        timeout,
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


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        sys.exit("usage: python -m metrify_dev.kafka_mock serve")
