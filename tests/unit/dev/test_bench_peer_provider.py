"""The benchmark's peer: the Airflow Kafka provider's operator, set up as its documentation shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from metrify_dev.bench import peer_provider


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self._topic, self._partition, self._offset, self._value = topic, partition, offset, value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


def test_write_batch_writes_one_zstd_parquet_file_per_batch(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"meter_id": f"DE{n}", "reading_ts": "2026-11-24T00:15:00Z", "consumption_kwh": 0.1 * n} for n in range(5)
    ]
    messages: list[Any] = [FakeMessage("t", 3, 40 + n, json.dumps(row).encode()) for n, row in enumerate(rows)]

    peer_provider.write_batch(messages, str(tmp_path))

    written = tmp_path / "raw" / "meter_readings" / "t+3+000000000040.parquet"
    assert pq.read_table(written).to_pylist() == rows  # no schema: reading_ts stays a string
    assert pq.ParquetFile(written).metadata.row_group(0).column(0).compression == "ZSTD"
    assert peer_provider.written(str(tmp_path)) == (1, 5)


def test_connection_follows_the_provider_documentation() -> None:
    conn = peer_provider.connection({"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "SASL_SSL"}, "g1")

    assert conn["conn_type"] == "kafka"
    assert conn["extra"] == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "SASL_SSL",
        "group.id": "g1",
        "enable.auto.commit": False,  # the documentation asks for it whenever commit_cadence is set
        "auto.offset.reset": "earliest",
    }
    assert peer_provider.connection_variable("bench_provider_1") == "AIRFLOW_CONN_BENCH_PROVIDER_1"


def test_operator_reads_the_whole_backlog_in_batches_committing_after_each() -> None:
    operator = peer_provider.operator("bench_provider_1", ["meter-readings"], 25_000, "/lake")

    assert operator.max_messages == 25_000 and not operator.read_to_end
    assert operator.max_batch_size == peer_provider.MAX_BATCH_SIZE == 10_000
    assert operator.commit_cadence == "end_of_batch"
    assert operator.apply_function_batch == "metrify_dev.bench.peer_provider.write_batch"
    assert operator.apply_function_kwargs == {"lake_dir": "/lake"}
