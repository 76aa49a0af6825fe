"""Drain one Kafka partition into the lake, exactly once.

For each bounded batch (at most `batch_size` messages and `batch_bytes` of message values):

1. read it in chunks; decode and validate each chunk as it arrives and write its valid rows as
   zstd Parquet row groups to spool files (never visible to readers), one per event hour;
2. record the batch's offsets `first..last` as pending in the partition's ledger
   (`metrify.ingest.ledger`, in `_state/` in the lake);
3. publish the files, every one named `<topic>+<partition>+<first>-<last>.parquet` after the
   offsets it holds, under `raw/meter_readings/date=YYYY-MM-DD/hour=HH/`, with bad messages under
   `quarantine/meter_readings/date=YYYY-MM-DD/`, and make them durable (a rename on a local lake,
   one complete PUT per file on an object store: nothing partial is ever published);
4. commit the offset after the batch to Kafka, then record the batch as published.

If the process dies between 3 and 4, the next drain finds the pending batch, re-reads exactly the
same offsets, judges them with the same clock and late-reading lookback (both in the ledger) and
rewrites the same file names: the retry overwrites, it never duplicates. The same holds for any
published batch read again (an operator resetting the offset to a batch's first offset). Where
Kafka lost the committed offset, the drain resumes from its ledger; an offset outside the log
fails loudly, naming topic, partition and offsets. A newer drain of the same partition fences
this one out (the ledger's generation). Memory follows the batch's bytes, never the backlog.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from metrify import lake, validate
from metrify.config import load_settings
from metrify.contracts import readings
from metrify.ingest.decode import decode
from metrify.ingest.ledger import STATE_LAYER, Ledger

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

# The reading thread plus three threads that decode and write chunks as they arrive: on two cores,
# consuming, decoding and writing overlap (measured by `make bench`).
DRAIN_THREADS = 3
# Rows buffered per raw file before a row group is written: smaller groups cost more CPU to
# write (measured: 5,000-row groups twice the cost of 50,000-row groups) and to read.
ROW_GROUP_ROWS = 32_768
CHUNK_MESSAGES = 10_000
POLL_TIMEOUT_SECONDS = 1.0  # one consume call's wait
IDLE_TIMEOUT_SECONDS = 30.0  # a batch ends early when no message arrives for this long
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


@dataclass
class BatchResult:
    first_offset: int
    last_offset: int
    consumed: int  # messages the reader received (counted as read, not from what was written)
    gaps: int  # offsets inside the range Kafka delivered no message for (compaction, transaction markers)
    valid_rows: int
    quarantined: int
    files: list[str]
    too_late: int = 0  # of the quarantined: readings older than the lookback


@dataclass
class DrainReport:
    topic: str
    partition: int
    start_offset: int  # first offset this drain read
    end_offset: int  # committed offset after the drain (next offset to read)
    high_watermark: int  # the partition's end when the drain started
    generation: int = 0  # the ledger generation this drain held
    consumed: int = 0
    gaps: int = 0
    valid_rows: int = 0
    quarantined: int = 0
    too_late: int = 0  # of the quarantined: readings older than the lookback ("too late: ...")
    batches: int = 0
    files: list[str] = field(default_factory=list)  # Parquet files published (raw and quarantine)
    seconds: float = 0.0

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        self.consumed += result.consumed
        self.gaps += result.gaps
        self.valid_rows += result.valid_rows
        self.quarantined += result.quarantined
        self.too_late += result.too_late
        self.files += result.files
        self.end_offset = result.last_offset + 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_stem(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}+{partition}+{first:012d}-{last:012d}"


def spool_dir(root: ObjectStoragePath, topic: str, partition: int, generation: int, home: str) -> str:
    """Where a drain writes a batch's files until they are published: inside the lake for a
    local lake (so publishing is a rename), under METRIFY_HOME for an object store."""
    name = f"partition={partition}.staging"
    if lake.is_local(root):
        return os.path.join((root / STATE_LAYER / readings.DATASET / topic).path, name, f"gen={generation}")
    return os.path.join(home, "spool", readings.DATASET, topic, name, f"gen={generation}")


def clear_older_spools(spool: str) -> None:
    """Remove what crashed or fenced-out drains of this partition left (older generations)."""
    parent = os.path.dirname(spool)
    if os.path.isdir(parent):
        for name in os.listdir(parent):
            if os.path.join(parent, name) != spool:
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


class OffsetError(RuntimeError):
    """The partition's committed offset cannot be trusted: the drain stops rather than guess."""


def resolve_start(topic: str, partition: int, committed: int | None, low: int, high: int, ledger: Ledger) -> int:
    """The offset to drain from, or a clear error naming topic, partition and offsets.

    Kafka's committed offset wins; where Kafka has none (never committed, or expired after
    `offsets.retention.minutes` of an idle partition) the ledger's record resumes exactly; only
    a partition never drained starts at the log start.
    """
    where = f"{topic}[{partition}]"
    if committed is None:
        if ledger.pending is not None:
            start = ledger.pending[0]
            log.warning(
                "%s: Kafka has no committed offset; resuming from the ledger's pending batch at %d", where, start
            )
        elif ledger.committed is not None:
            start = ledger.committed
            log.warning(
                "%s: Kafka has no committed offset (expired after offsets.retention.minutes?); resuming from the "
                "drain's own ledger at %d",
                where,
                start,
            )
        else:
            log.info("%s: first drain of this partition: starting at the log start %d", where, low)
            return low
    else:
        start = committed
    if start > high:
        raise OffsetError(
            f"{where}: the offset to resume from, {start}, is above the high watermark {high}: the topic was "
            "recreated or its log truncated, so offsets no longer mean what the lake recorded. Nothing was read. "
            "See RUNBOOK.md#offset-out-of-range"
        )
    if start < low:
        raise OffsetError(
            f"{where}: the offset to resume from, {start}, is below the log start {low}: messages {start}..{low - 1} "
            "were deleted by retention before they were ingested. See RUNBOOK.md#offset-out-of-range"
        )
    inside = ledger.batch_containing(start)
    if inside is not None and inside[0] != start:
        if inside[0] < low:
            raise OffsetError(
                f"{where}: resuming at {start} would re-read part of the published batch {inside[0]}..{inside[1]}, "
                f"whose start is no longer in Kafka (log start {low}); its files cannot be rewritten whole. Reset the "
                f"offset to {inside[1] + 1} or later. See RUNBOOK.md#re-drain-a-range"
            )
        first, last = inside[0], inside[1]
        log.warning("%s: %d lies inside the published batch %d..%d: re-reading it whole", where, start, first, last)
        start = inside[0]
    return start


def drain_partition(
    consumer_config: dict[str, Any],
    topic: str,
    partition: int,
    root: ObjectStoragePath,
    batch_size: int = 100_000,
    batch_bytes: int = 64 * 2**20,
    poll_timeout: float = POLL_TIMEOUT_SECONDS,
    idle_timeout: float = IDLE_TIMEOUT_SECONDS,
    home: str | None = None,
    on_batch_written: Callable[[BatchResult], None] | None = None,
    late_lookback: timedelta | None = None,
) -> DrainReport:
    """Drain `topic`/`partition` from its committed offset to the high watermark seen at start.

    Readings older than `late_lookback` (the task passes `METRIFY_LATE_LOOKBACK_DAYS`) are
    quarantined as too late. `on_batch_written` runs after a batch's files are durable and
    before its offset is committed (tests use it to crash the drain at the worst moment).
    """
    validate.topic(topic, "topic")  # it names lake folders and files
    started = time.monotonic()
    _keep_large_allocations_mmapped()
    consumer = Consumer(consumer_config)
    tp = TopicPartition(topic, partition)
    try:
        low, high = consumer.get_watermark_offsets(tp, timeout=10.0, cached=False)
        found = consumer.committed([tp], timeout=10.0)[0]
        if found.error:
            raise KafkaException(found.error)
        ledger = Ledger.claim(root, topic, partition)
        ledger.forget_before(low)
        committed = found.offset if found.offset >= 0 else None
        if ledger.pending is not None and committed is not None and committed > ledger.pending[1]:
            ledger.published()  # committed, but the drain died before recording it
        start = resolve_start(topic, partition, committed, low, high, ledger)
        report = DrainReport(topic, partition, start, start, high, generation=ledger.generation)
        spool = spool_dir(root, topic, partition, ledger.generation, home or str(load_settings().home))
        clear_older_spools(spool)
        consumer.assign([TopicPartition(topic, partition, start)])
        reader = PartitionReader(consumer, topic, partition, poll_timeout, idle_timeout)
        read_from = start
        in_flight: tuple[Future[BatchResult], BatchFiles] | None = None
        # Worker threads decode and write each chunk of messages as soon as it is read, while this
        # thread reads on; a batch's files are published only when all its chunks are written.
        # Offsets are committed strictly in order, each only after its own files are durable, and
        # a batch is published only after the previous batch's commit (so at most one batch is
        # ever published but uncommitted: the ledger's pending one).
        with _gc_paused(), ThreadPoolExecutor(max_workers=DRAIN_THREADS, thread_name_prefix="drain") as workers:
            while True:
                chunks: list[Future[None]] = []
                files = None
                try:
                    if read_from < high:
                        last = _planned_last(ledger, read_from, batch_size, high)
                        # a replayed batch is judged as it was (same clock, same lookback): same files
                        now, lookback = ledger.clock_of(read_from) or (_now(), late_lookback)
                        files = BatchFiles(root, topic, partition, read_from, spool)
                        for chunk in reader.chunks(read_from, last, batch_bytes):
                            files.consumed += len(chunk.messages)
                            files.last_read = chunk.last_offset
                            chunks.append(workers.submit(decode_into, files, chunk, now, lookback))
                            del chunk  # a worker holds it until written: memory follows the batch
                    if in_flight is not None:
                        future, _ = in_flight
                        result = future.result()
                        in_flight = None
                        if on_batch_written:
                            on_batch_written(result)
                        ledger.check_not_fenced()
                        consumer.commit(
                            offsets=[TopicPartition(topic, partition, result.last_offset + 1)], asynchronous=False
                        )
                        ledger.published()
                        report.add(result)
                        log.info(
                            "%s[%d]: committed %d after batch %d..%d (%d read, %d rows, %d quarantined)",
                            topic,
                            partition,
                            report.end_offset,
                            result.first_offset,
                            result.last_offset,
                            result.consumed,
                            result.valid_rows,
                            result.quarantined,
                        )
                except BaseException:
                    wait(chunks)
                    if files is not None:
                        files.discard()  # unpublished spool files only
                    raise
                if not chunks:
                    ledger.save()
                    if reader.carry and offset_of(reader.carry[0]) < high:  # offsets up to `last` were compacted away
                        read_from = offset_of(reader.carry[0])
                        continue
                    break
                assert files is not None  # chunks were read, so a batch was opened
                ledger.pending = [files.first, files.last_read, *Ledger.clock_fields(now, lookback)]
                ledger.check_not_fenced()
                ledger.save()
                in_flight = (workers.submit(close_batch, files, chunks, workers), files)
                read_from = files.last_read + 1
        report.seconds = round(time.monotonic() - started, 3)
        return report
    finally:
        consumer.close()


def _keep_large_allocations_mmapped() -> None:
    """Pin glibc's mmap threshold at 256 KiB for this process.

    glibc raises the threshold to the size of every mmapped block freed (up to 32 MiB), after
    which large message values land in heap arenas that never shrink: measured, a drain's peak
    memory then grew with the backlog (two backlogs of 800 KB messages: 521 -> 729 MiB). With the
    threshold fixed, large blocks go back to the system when freed and the peak follows the batch.
    """
    try:
        libc = ctypes.CDLL(None)
        if hasattr(libc, "mallopt"):
            libc.mallopt(_M_MMAP_THRESHOLD, 256 * 1024)
    except OSError:  # not glibc: nothing to pin
        pass


def _planned_last(ledger: Ledger, first: int, batch_size: int, high: int) -> int:
    """The last offset of the batch that starts at `first`: a published batch's own end (so a
    re-read rewrites the same files), else `batch_size` messages, never into a published batch."""
    known = ledger.batch_starting_at(first)
    if known is not None:
        log.warning(
            "%s[%d]: replaying %s batch %d..%d under its recorded file names",
            ledger.topic,
            ledger.partition,
            "uncommitted" if known is ledger.pending else "published",
            known[0],
            known[1],
        )
        return min(known[1], high - 1)
    last = min(first + batch_size, high) - 1
    following = ledger.next_batch_after(first)
    return min(last, following[0] - 1) if following is not None else last


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a partition is drained.

    Each batch creates ~100,000 Message objects without reference cycles; in a task process that
    imported Airflow, the collections they trigger cost more than the drain itself (measured:
    consume 2x slower). Reference counting still frees everything.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class PartitionReader:
    """Reads one assigned partition in chunks, keeping what it read beyond a batch for the next."""

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        partition: int,
        poll_timeout: float = POLL_TIMEOUT_SECONDS,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
    ) -> None:
        self.consumer, self.topic, self.partition = consumer, topic, partition
        self.poll_timeout, self.idle_timeout = poll_timeout, idle_timeout
        self.carry: list[Message] = []

    def chunks(self, first: int, last: int, max_bytes: int) -> Iterator[Chunk]:
        """Chunks of messages from offset `first` up to `last` inclusive; fewer when their values
        reach `max_bytes` or none arrives for `idle_timeout` seconds."""
        next_offset = first
        size = 0
        idle_since = time.monotonic()
        while next_offset <= last and size < max_bytes:
            if self.carry:
                chunk, self.carry = self.carry, []
            else:
                want = max(1, min(CHUNK_MESSAGES, last + 1 - next_offset))
                chunk = self.consumer.consume(num_messages=want, timeout=self.poll_timeout)
                if any(map(Message.error, chunk)):
                    chunk = [m for m in chunk if not self._is_partition_eof(m)]
            if not chunk:
                if time.monotonic() - idle_since > self.idle_timeout:
                    log.warning(
                        "%s[%d]: no message for %.0f s before offset %d; ending the batch early",
                        self.topic,
                        self.partition,
                        self.idle_timeout,
                        last,
                    )
                    return
                continue
            idle_since = time.monotonic()
            cut = len(chunk)
            while cut and offset_of(chunk[cut - 1]) > last:
                cut -= 1
            if cut < len(chunk):
                self.carry = chunk[cut:]
                chunk = chunk[:cut]
            # len(message) is its value's length (0 without a value); summed without a Python loop
            sizes = np.cumsum(np.fromiter(map(len, chunk), dtype=np.int64, count=len(chunk)))
            # the batch ends with the message that reaches the byte budget
            taken = min(len(chunk), int(np.searchsorted(sizes, max_bytes - size, side="left")) + 1)
            if taken < len(chunk):  # the byte budget ends the batch inside this chunk
                self.carry = chunk[taken:] + self.carry
                chunk = chunk[:taken]
            if chunk:
                size += int(sizes[taken - 1])
                next_offset = offset_of(chunk[-1]) + 1
                yield Chunk.of(chunk)
            if self.carry:
                return

    def _is_partition_eof(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.code() == KafkaError._PARTITION_EOF:
            return True
        if error.code() == KafkaError._AUTO_OFFSET_RESET:
            raise OffsetError(
                f"{self.topic}[{self.partition}]: Kafka refused the offset being read as out of range ({error.str()}); "
                "the drain never lets the client jump (auto.offset.reset=error). The log was truncated or the "
                "topic recreated: see RUNBOOK.md#offset-out-of-range"
            )
        raise KafkaException(error)


def offset_of(message: Message) -> int:
    """The offset of a consumed message (only error events have none)."""
    offset = message.offset()
    if offset is None:
        raise KafkaException(message.error())
    return offset


def _now() -> datetime:
    return datetime.now(UTC)


_SECOND = itemgetter(1)  # of Message.timestamp(): (timestamp type, milliseconds)


@dataclass
class Chunk:
    """Consecutive messages of one partition, with their values and Kafka timestamps pulled out
    by the reading thread (the Message objects are only kept to quarantine bad ones)."""

    messages: list[Message]
    values: list[bytes | None]
    kafka_ts_ms: np.ndarray

    @classmethod
    def of(cls, messages: list[Message]) -> Chunk:
        return cls(
            messages,
            list(map(Message.value, messages)),
            np.fromiter(map(_SECOND, map(Message.timestamp, messages)), dtype=np.int64, count=len(messages)),
        )

    @property
    def last_offset(self) -> int:
        return offset_of(self.messages[-1])


@dataclass
class DecodedChunk:
    """A chunk of consecutive messages, decoded: raw rows (`RAW_SCHEMA`) and quarantine rows."""

    rows: pa.Table
    quarantine: pa.Table | None


def decode_chunk(
    chunk: Chunk, topic: str, partition: int, now: datetime, late_lookback: timedelta | None = None
) -> DecodedChunk:
    """Decode and validate messages; attach their Kafka coordinates; explain every bad one."""
    messages, values = chunk.messages, chunk.values
    decoded = decode(values, now=now, late_lookback=late_lookback)
    if offset_of(messages[-1]) - offset_of(messages[0]) + 1 == len(messages):  # no gaps: the usual case
        offsets = pa.array(np.arange(offset_of(messages[0]), offset_of(messages[-1]) + 1, dtype=np.int64))
    else:  # compacted topics and transaction markers leave gaps
        offsets = pa.array([offset_of(m) for m in messages], pa.int64())
    kafka_ts = pa.array(chunk.kafka_ts_ms).cast(pa.timestamp("ms", tz="UTC"))
    rows = decoded.rows
    index = rows["_index"]
    raw = rows.drop_columns(["_index"])
    raw = raw.append_column("topic", pa.repeat(pa.scalar(topic), raw.num_rows).cast(pa.string()))
    raw = raw.append_column("partition", pa.repeat(pa.scalar(partition, pa.int32()), raw.num_rows))
    raw = raw.append_column("offset", pc.take(offsets, index))
    raw = raw.append_column("kafka_ts", pc.take(kafka_ts, index))
    raw = raw.append_column("ingested_at", pa.repeat(pa.scalar(now, pa.timestamp("us", tz="UTC")), raw.num_rows))
    raw = raw.select(readings.RAW_SCHEMA.names)
    if not decoded.rejected:
        return DecodedChunk(raw, None)
    positions = pa.array([p for p, _ in decoded.rejected], pa.int64())
    quarantine = pa.table(
        {
            "topic": pa.repeat(pa.scalar(topic), len(positions)).cast(pa.string()),
            "partition": pa.repeat(pa.scalar(partition, pa.int32()), len(positions)),
            "offset": pc.take(offsets, positions),
            "kafka_ts": pc.take(kafka_ts, positions),
            "key": pa.array([messages[p].key() for p, _ in decoded.rejected], pa.binary()),
            "raw_value": pa.array([values[p] for p, _ in decoded.rejected], pa.binary()),
            "reason": pa.array([r for _, r in decoded.rejected], pa.string()),
            "quarantined_at": pa.repeat(pa.scalar(now, pa.timestamp("us", tz="UTC")), len(positions)),
        },
        schema=readings.QUARANTINE_SCHEMA,
    )
    return DecodedChunk(raw, quarantine)


class BatchFiles:
    """The files of one batch, filled chunk by chunk as chunks are decoded and published together
    by `close()` under names that hold the batch's offset range (`<topic>+<partition>+<first>-
    <last>.parquet`, the same in every partition it touches).

    Raw rows go to one file per event date and hour, in row groups of at least `ROW_GROUP_ROWS`
    rows; bad messages to one quarantine file per Kafka-timestamp date.
    """

    def __init__(self, root: ObjectStoragePath, topic: str, partition: int, first: int, spool: str) -> None:
        self.root, self.topic, self.partition, self.spool = root, topic, partition, spool
        self.first, self.last_read = first, first - 1
        self.consumed = 0  # set by the reading thread
        self.raw_files: dict[int, lake.ParquetFile] = {}  # by epoch hour
        self.quarantine: list[pa.Table] = []
        self._lock = threading.Lock()

    @property
    def stem(self) -> str:
        return file_stem(self.topic, self.partition, self.first, self.last_read)

    def add(self, decoded: DecodedChunk) -> None:
        """Append a decoded chunk (safe to call from several threads)."""
        for hour, rows in _split_by_hour(decoded.rows):
            with self._lock:
                if hour not in self.raw_files:
                    self.raw_files[hour] = lake.ParquetFile(
                        self.spool,
                        readings.RAW_SCHEMA,
                        row_group_rows=ROW_GROUP_ROWS,
                        dictionary_columns=["meter_id", "topic"],
                    )
                file = self.raw_files[hour]
            file.write(rows)  # files lock themselves: two threads write two hours at once
        if decoded.quarantine is not None:
            with self._lock:
                self.quarantine.append(decoded.quarantine)

    def close(self, workers: ThreadPoolExecutor | None = None) -> BatchResult:
        """Publish every file and make them durable (before the caller commits the offsets).

        With `workers`, the raw files' last row groups are written in parallel.
        """
        raw = sorted(self.raw_files.items())
        if workers is not None:
            for finished in [workers.submit(file.finish) for _, file in raw]:
                finished.result()
        files = []
        for hour, file in raw:
            target = self._raw_path(hour)
            file.publish(target)
            files.append(target)
        valid_rows = sum(file.rows for _, file in raw)
        quarantined = too_late = 0
        if self.quarantine:
            quarantine = pa.concat_tables(self.quarantine).sort_by("offset")
            quarantined = quarantine.num_rows
            too_late = pc.sum(pc.starts_with(quarantine["reason"], readings.TOO_LATE)).as_py() or 0
            # Partitioned by the Kafka timestamp: bad messages may have no usable reading_ts.
            dates = pc.strftime(quarantine["kafka_ts"], "%Y-%m-%d")
            for date in pc.unique(dates).to_pylist():
                part = quarantine.filter(pc.equal(dates, date))
                path = (
                    lake.partition_path(self.root, "quarantine", readings.DATASET, date=date) / f"{self.stem}.parquet"
                )
                lake.write_parquet(part, path, sync=False)
                files.append(path)
                log.warning(
                    "%s[%d]: quarantined %d message(s) in %s; first reason: %s",
                    self.topic,
                    self.partition,
                    part.num_rows,
                    path,
                    part["reason"][0].as_py(),
                )
        lake.sync(files)
        span = self.last_read - self.first + 1
        return BatchResult(
            self.first,
            self.last_read,
            self.consumed,
            span - self.consumed,
            valid_rows,
            quarantined,
            [str(f) for f in files],
            too_late,
        )

    def discard(self) -> None:
        with self._lock:
            opened = list(self.raw_files.values())
        for file in opened:
            file.discard()

    def _raw_path(self, epoch_hour: int) -> ObjectStoragePath:
        hour = datetime.fromtimestamp(epoch_hour * 3600, tz=UTC)
        return (
            lake.partition_path(self.root, "raw", readings.DATASET, date=f"{hour:%Y-%m-%d}", hour=f"{hour:%H}")
            / f"{self.stem}.parquet"
        )


def close_batch(files: BatchFiles, chunks: list[Future[None]], workers: ThreadPoolExecutor) -> BatchResult:
    """Wait for every chunk of the batch to be written, then publish its files.

    Runs in one of `workers` and hands the files' last row groups to the others: it waits only
    on tasks that never wait themselves, so with two workers or more it cannot deadlock.
    """
    try:
        for chunk in chunks:
            chunk.result()
        return files.close(workers)
    except BaseException:
        wait(chunks)  # the batch's other chunks may still be writing: let them finish first
        files.discard()
        raise


def decode_into(files: BatchFiles, chunk: Chunk, now: datetime, late_lookback: timedelta | None = None) -> None:
    files.add(decode_chunk(chunk, files.topic, files.partition, now, late_lookback))


def _split_by_hour(rows: pa.Table) -> list[tuple[int, pa.Table]]:
    """(epoch hour, rows of that event hour) for each hour in `rows`."""
    if rows.num_rows == 0:
        return []
    hours = pc.cast(rows["reading_ts"], pa.int64()).to_numpy() // 3_600_000_000  # µs -> epoch hour
    if hours[0] == hours[-1] and (hours == hours[0]).all():
        return [(int(hours[0]), rows)]
    order = np.argsort(hours, kind="stable")
    sorted_hours = hours[order]
    starts = np.flatnonzero(np.r_[True, sorted_hours[1:] != sorted_hours[:-1]])
    ordered = rows.take(pa.array(order))
    return [
        (int(sorted_hours[begin]), ordered.slice(begin, end - begin))
        for begin, end in zip(starts, np.r_[starts[1:], len(order)], strict=True)
    ]
