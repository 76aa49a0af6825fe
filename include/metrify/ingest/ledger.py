"""The drain's own record of one partition, kept in the lake beside the data it describes.

`_state/meter_readings/<topic>/partition=<p>.json` holds:

* `generation` – incremented by every drain that starts on the partition. A drain publishes and
  commits only while the ledger still carries its generation, so a stale drain (a zombie task, a
  second deployment) stops before it can publish or commit anything once a newer one started.
* `committed` – the offset after the last batch whose files are published *and* whose offset was
  committed to Kafka; the drain resumes from here when Kafka has lost its committed offset
  (consumer-group offsets expire `offsets.retention.minutes` after the last commit).
* `pending` – the `[first, last, decoded_at, lookback_seconds]` of a batch being published,
  written before its files are: a drain that dies before committing leaves it, and the next drain
  replays exactly that range, judged with the same clock and late-reading lookback, under exactly
  those file names (the retry overwrites, it never duplicates).
* `batches` – every published batch, in the same form, still inside the topic's retention. File
  names depend only on the offsets, and a re-read batch is judged with its recorded clock, so
  re-reading any published batch (an operator resetting the offset to its first offset) rewrites
  the same files with the same rows.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from metrify import lake
from metrify.contracts.readings import DATASET

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

STATE_LAYER = "_state"


class FencedError(RuntimeError):
    """A newer drain took over the partition: this one must stop without publishing or committing."""


def ledger_path(root: ObjectStoragePath, topic: str, partition: int) -> ObjectStoragePath:
    return root / STATE_LAYER / DATASET / topic / f"partition={partition}.json"


@dataclass
class Ledger:
    """One partition's ledger (see the module docstring); `save()` writes it back."""

    root: Any
    topic: str
    partition: int
    generation: int = 0
    committed: int | None = None
    pending: list[Any] | None = None
    batches: list[list[Any]] = field(default_factory=list)
    _path: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def path(self) -> ObjectStoragePath:
        """The ledger's file (`ledger_path`), built once: a drain reads and writes it per batch."""
        if self._path is None:
            self._path = ledger_path(self.root, self.topic, self.partition)
        return self._path

    @classmethod
    def read(cls, root: ObjectStoragePath, topic: str, partition: int) -> Ledger:
        ledger = cls(root, topic, partition)
        found = lake.read_json(ledger.path) or {}
        ledger.generation = int(found.get("generation", 0))
        ledger.committed = found.get("committed")
        ledger.pending = found.get("pending")
        ledger.batches = [list(b) for b in found.get("batches", [])]
        return ledger

    @classmethod
    def claim(cls, root: ObjectStoragePath, topic: str, partition: int) -> Ledger:
        """Start a drain: take the next generation (fencing out any drain still running)."""
        ledger = cls.read(root, topic, partition)
        ledger.generation += 1
        ledger.save()
        return ledger

    def save(self) -> None:
        lake.write_json(
            {
                "topic": self.topic,
                "partition": self.partition,
                "generation": self.generation,
                "committed": self.committed,
                "pending": self.pending,
                "batches": self.batches,
                "written_at": datetime.now(UTC).isoformat(),
            },
            self.path,
        )

    def check_not_fenced(self) -> None:
        """Raise `FencedError` when a newer drain has claimed the partition since this one did."""
        current = int((lake.read_json(self.path) or {}).get("generation", 0))
        if current != self.generation:
            raise FencedError(
                f"{self.topic}[{self.partition}]: a newer drain (generation {current}) took over this partition from "
                f"this one (generation {self.generation}); stopping without publishing or committing. Two drains of "
                "one partition ran at once: see RUNBOOK.md#two-drains"
            )

    @staticmethod
    def clock_fields(now: datetime, lookback: timedelta | None) -> list[Any]:
        """How a batch was judged, to record beside its offsets."""
        return [now.isoformat(), None if lookback is None else lookback.total_seconds()]

    def clock_of(self, first: int) -> tuple[datetime, timedelta | None] | None:
        """The clock and lookback the recorded batch starting at `first` was judged with."""
        batch = self.batch_starting_at(first)
        if batch is None or len(batch) < 4:
            return None
        return datetime.fromisoformat(batch[2]), None if batch[3] is None else timedelta(seconds=batch[3])

    def batch_starting_at(self, offset: int) -> list[Any] | None:
        """The published (or pending) batch whose first offset is `offset`."""
        if self.pending and self.pending[0] == offset:
            return self.pending
        i = bisect.bisect_left(self.batches, [offset, -1])
        return self.batches[i] if i < len(self.batches) and self.batches[i][0] == offset else None

    def batch_containing(self, offset: int) -> list[Any] | None:
        i = bisect.bisect_right(self.batches, [offset, float("inf")]) - 1
        return self.batches[i] if i >= 0 and self.batches[i][0] <= offset <= self.batches[i][1] else None

    def next_batch_after(self, offset: int) -> list[Any] | None:
        """The first published batch that starts after `offset` (a new batch must end before it)."""
        i = bisect.bisect_right(self.batches, [offset, float("inf")])
        return self.batches[i] if i < len(self.batches) else None

    def published(self) -> None:
        """Record the pending batch as published and committed."""
        assert self.pending is not None, "no pending batch to record"
        batch = self.pending
        first, last = batch[0], batch[1]
        kept = [b for b in self.batches if not (first <= b[0] and b[1] <= last)]  # a re-read batch replaces
        self.batches = sorted([*kept, batch], key=lambda b: (b[0], b[1]))
        self.pending = None
        self.committed = last + 1

    def forget_before(self, low: int) -> None:
        """Drop batches Kafka no longer holds (they can never be re-read)."""
        self.batches = [b for b in self.batches if b[1] >= low]
