"""The partition reader's chunking, on messages built in memory (no broker): the byte budget."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Message

from metrify.ingest import drain


class _Consumer:
    """Hands out prepared messages as `Consumer.consume` would, `num_messages` at a time."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        out, self.messages = self.messages[:num_messages], self.messages[num_messages:]
        return out


def _messages(sizes: list[int | None]) -> list[Message]:
    return [
        Message(topic="t", partition=0, offset=offset, value=None if size is None else b"x" * size, timestamp=(1, 1000))
        for offset, size in enumerate(sizes)
    ]


def _read(sizes: list[int | None], max_bytes: int, **reader: Any) -> tuple[list[list[int]], list[int]]:
    """Offsets of each chunk of one batch with the byte budget, and of what was carried over."""
    consumer = _Consumer(_messages(sizes))
    partition_reader = drain.PartitionReader(consumer, "t", 0, 0.01, 0.05)  # type: ignore[arg-type]
    chunks = [[m.offset() for m in c.messages] for c in partition_reader.chunks(0, len(sizes) - 1, max_bytes)]
    return chunks, [m.offset() for m in partition_reader.carry]


def test_a_batch_ends_with_the_message_that_reaches_the_byte_budget() -> None:
    # 10 + 20 + 30 = 60 reaches a 60-byte budget: message 2 is the batch's last, 3.. carry over
    assert _read([10, 20, 30, 40, 50], 60) == ([[0, 1, 2]], [3, 4])
    # one byte more and the budget is reached only by message 3
    assert _read([10, 20, 30, 40, 50], 61) == ([[0, 1, 2, 3]], [4])


def test_messages_without_a_value_weigh_nothing_and_a_large_first_message_is_read_alone() -> None:
    assert _read([None, 10, None, 10, 5], 20) == ([[0, 1, 2, 3]], [4])
    assert _read([100, 1, 1], 10) == ([[0]], [1, 2])


def test_the_budget_spans_chunks(monkeypatch) -> None:
    monkeypatch.setattr(drain, "CHUNK_MESSAGES", 2)
    # chunks of two: 10+10, then 10 + 10 reaches 35 with the budget's remainder of 15 at message 3
    assert _read([10, 10, 10, 10, 10, 10], 35) == ([[0, 1], [2, 3]], [])
    assert _read([10] * 6, 1_000) == ([[0, 1], [2, 3], [4, 5]], [])
