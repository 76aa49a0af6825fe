"""The raw-consume contender stops with a clear error instead of waiting forever."""

from __future__ import annotations

import io
from typing import Any

import confluent_kafka
import pytest
from confluent_kafka import KafkaError

from metrify_dev.bench import contenders


class _Message:
    def __init__(self, offset: int | None, error: KafkaError | None = None) -> None:
        self._offset, self._error = offset, error

    def offset(self) -> int | None:
        return self._offset

    def error(self) -> KafkaError | None:
        return self._error

    def value(self) -> bytes:
        return b"{}"


class _Consumer:
    """Watermarks 0..5; hands out `batches` one per consume call, then nothing."""

    batches: list[list[_Message]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.pending = list(self.batches)

    def get_watermark_offsets(self, partition: Any, timeout: float, cached: bool) -> tuple[int, int]:
        return 0, 5

    def assign(self, partitions: list[Any]) -> None:
        pass

    def consume(self, num_messages: int, timeout: float) -> list[_Message]:
        return self.pending.pop(0) if self.pending else []

    def close(self) -> None:
        pass


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> type[_Consumer]:
    monkeypatch.setattr(confluent_kafka, "Consumer", _Consumer)
    monkeypatch.setattr("sys.stdin", io.StringIO(contenders.GO + "\n"))
    return _Consumer


SPEC = {"config": {}, "assignments": [["bench", 3]], "idle_timeout": 0.2}


def test_reads_to_the_high_watermark_past_a_partition_end_event(consumer: type[_Consumer]) -> None:
    end = _Message(None, KafkaError(KafkaError._PARTITION_EOF))
    consumer.batches = [[_Message(0), _Message(1), end], [_Message(2), _Message(3), _Message(4)]]
    assert contenders.raw_consume(SPEC)["messages"] == 5


def test_a_partition_that_stops_short_of_its_high_watermark_is_an_error(consumer: type[_Consumer]) -> None:
    consumer.batches = [[_Message(0), _Message(1)]]
    with pytest.raises(
        RuntimeError, match=r"bench\[3\]: no message for 0.2 s at offset 2, before the high watermark 5"
    ):
        contenders.raw_consume(SPEC)


def test_an_error_event_stops_it_naming_the_partition(consumer: type[_Consumer]) -> None:
    consumer.batches = [[_Message(0), _Message(None, KafkaError(KafkaError._AUTO_OFFSET_RESET, "offset out of range"))]]
    with pytest.raises(RuntimeError, match=r"bench\[3\]: offset out of range"):
        contenders.raw_consume(SPEC)
