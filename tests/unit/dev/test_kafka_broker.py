"""The local Kafka broker (metrify_dev.kafka_broker): a real single-node Kafka 4.x in KRaft mode.

One broker for the module, in a private home. Clients use exactly `connection_extra()`, i.e.
SASL_SSL with SCRAM-SHA-512 and the broker's own CA, as an Airflow connection's extra would.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from metrify_dev import kafka_broker
from metrify_dev.kafka_broker import KafkaBroker, KafkaBrokerError
from tests.skip_rule import require

# librdkafka's own errors while it retries: not the reason a client was refused.
_RETRY_NOISE = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT}


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    require(
        shutil.which("java") is not None and shutil.which("mvn") is not None,
        f"the Kafka broker needs java and mvn ({kafka_broker.INSTALL_HINT})",
    )
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-home"))
    broker.up()
    yield broker
    broker.stop()


def _topic() -> str:
    return f"readings-{uuid.uuid4().hex[:8]}"


def _produce(extra: dict[str, Any], topic: str, count: int) -> list[tuple[str, str]]:
    producer = Producer({**extra, "linger.ms": 5})
    sent = [(f"meter-{i % 40}", f"reading-{i}") for i in range(count)]
    failures: list[KafkaError] = []
    for key, value in sent:
        producer.produce(topic, key=key, value=value, on_delivery=lambda err, _msg: err and failures.append(err))
    assert producer.flush(30) == 0, "messages still unacknowledged after 30 s"
    assert not failures, failures
    return sent


def _consume(
    extra: dict[str, Any], topic: str, partitions: int, count: int, group: str | None = None
) -> list[tuple[str, str, int, int]]:
    """Read `count` messages from the start of every partition with assign() (no rebalance)."""
    consumer = Consumer(
        {
            **extra,
            "group.id": group or f"reader-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    got: list[tuple[str, str, int, int]] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append((msg.key().decode(), msg.value().decode(), msg.partition(), msg.offset()))
    finally:
        consumer.close()
    return got


def _refusal(extra: dict[str, Any], timeout: float = 20.0) -> list[KafkaError]:
    """The errors with which the broker refuses a client ([] if it answers metadata)."""
    errors: list[KafkaError] = []
    admin = AdminClient({**extra, "error_cb": errors.append, "log_level": 0})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=1)
            return []
        except KafkaException:
            admin.poll(0.1)
        reasons = [e for e in errors if e.code() not in _RETRY_NOISE]
        if reasons:
            return reasons
    raise AssertionError(f"no answer and no refusal within {timeout} s: {errors}")


def test_published_state_and_up_is_idempotent(kafka: KafkaBroker) -> None:
    state = kafka.read()
    assert state is not None
    published = json.loads(kafka.state_file.read_text())
    assert published["pid"] == state["pid"]
    assert published["bootstrap"] == kafka.connection_extra()["bootstrap.servers"]
    assert published["security_protocol"] == "SASL_SSL"
    assert published["sasl_mechanism"] == "SCRAM-SHA-512"
    assert published["started_at"] <= time.time()
    assert kafka.up()["pid"] == state["pid"], "up() started a second broker"
    status = kafka.status()
    assert status is not None and status["answers"]


def test_classpath_is_cached(kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no mvn: the cache must be enough
    began = time.monotonic()
    libs = kafka_broker.resolve_classpath(kafka.dist_home, kafka.version)
    assert time.monotonic() - began < 0.5
    assert (libs / f"kafka_2.13-{kafka.version}.jar").is_file()


def test_missing_maven_names_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(KafkaBrokerError, match="apt-get install openjdk-17-jre-headless maven"):
        kafka_broker.resolve_classpath(tmp_path / "kafka-dist")


def test_connection_extra_is_sasl_ssl(kafka: KafkaBroker) -> None:
    extra = kafka.connection_extra()
    assert set(extra) == {
        "bootstrap.servers",
        "security.protocol",
        "sasl.mechanisms",
        "sasl.username",
        "sasl.password",
        "ssl.ca.location",
    }
    assert extra["security.protocol"] == "SASL_SSL"
    assert extra["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert Path(extra["ssl.ca.location"]).read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_topic_has_12_partitions(kafka: KafkaBroker) -> None:
    topic = _topic()
    assert kafka.create_topic(topic) == 12
    metadata = AdminClient(kafka.connection_extra()).list_topics(topic=topic, timeout=10)
    assert sorted(metadata.topics[topic].partitions) == list(range(12))
    assert kafka.create_topic(topic, 12) == 12, "creating an existing topic again must be OK"


def test_conflicting_partition_count_fails_clearly(kafka: KafkaBroker) -> None:
    topic = _topic()
    kafka.create_topic(topic, 12)
    with pytest.raises(KafkaBrokerError, match=r"already exists with 12 partitions, not the 3"):
        kafka.create_topic(topic, 3)


def test_produce_and_consume_over_sasl_ssl(kafka: KafkaBroker) -> None:
    topic = _topic()
    kafka.create_topic(topic)
    extra = kafka.connection_extra()
    sent = _produce(extra, topic, 240)
    got = _consume(extra, topic, 12, len(sent))
    assert sorted((k, v) for k, v, _, _ in got) == sorted(sent)
    assert len({p for _, _, p, _ in got}) > 1, "keys should spread over the partitions"


def test_wrong_password_is_refused(kafka: KafkaBroker) -> None:
    errors = _refusal({**kafka.connection_extra(), "sasl.password": "not-the-password"})
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION, errors
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in errors[0].str()


def test_client_without_tls_or_ca_is_refused(kafka: KafkaBroker) -> None:
    extra = kafka.connection_extra()
    untrusted = {k: v for k, v in extra.items() if k != "ssl.ca.location"}
    errors = _refusal(untrusted)
    assert errors[0].code() == KafkaError._SSL and "certificate verify failed" in errors[0].str()
    # SASL without TLS gets no answer at all (the listener only speaks TLS).
    with pytest.raises(AssertionError, match="no answer and no refusal"):
        _refusal({**extra, "security.protocol": "SASL_PLAINTEXT"}, timeout=2)


def test_committed_offsets_and_messages_survive_restart(kafka: KafkaBroker) -> None:
    topic, group = _topic(), f"drain-{uuid.uuid4().hex[:6]}"
    kafka.create_topic(topic)
    extra = kafka.connection_extra()
    sent = _produce(extra, topic, 120)
    got = _consume(extra, topic, 12, len(sent))
    assert len(got) == len(sent)
    # Mid-drain: commit half of each partition for the group (assign(), no subscription).
    counts: dict[int, int] = {}
    for _, _, partition, offset in got:
        counts[partition] = max(counts.get(partition, 0), offset + 1)
    commit = [TopicPartition(topic, p, n // 2) for p, n in sorted(counts.items())]
    consumer = Consumer({**extra, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p) for p in counts])
        consumer.commit(offsets=commit, asynchronous=False)
    finally:
        consumer.close()

    before = kafka.read()
    assert before is not None
    after = kafka.restart()
    assert after["pid"] != before["pid"]
    assert after["bootstrap"] == before["bootstrap"], "a restarted broker keeps its address"
    assert after["cluster_id"] == before["cluster_id"]

    # restart() returns once the group coordinator is loaded: no NOT_COORDINATOR retry here.
    consumer = Consumer({**extra, "group.id": group, "enable.auto.commit": False})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in counts], timeout=30)
    finally:
        consumer.close()
    assert sorted((tp.partition, tp.offset) for tp in committed) == [(tp.partition, tp.offset) for tp in commit]
    again = _consume(extra, topic, 12, len(sent))
    assert sorted(again) == sorted(got), "messages changed across the restart"


def test_messages_survive_a_crash_and_restart(kafka: KafkaBroker) -> None:
    topic = _topic()
    kafka.create_topic(topic)
    extra = kafka.connection_extra()
    sent = _produce({**extra, "acks": "all"}, topic, 60)
    before = kafka.read()
    assert before is not None
    after = kafka.restart(kill=True)  # SIGKILL: no clean shutdown
    assert after["pid"] != before["pid"] and after["bootstrap"] == before["bootstrap"]
    got = _consume(extra, topic, 12, len(sent))
    assert sorted((k, v) for k, v, _, _ in got) == sorted(sent)
