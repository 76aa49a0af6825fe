"""Drain one Kafka partition into the lake, exactly once.

For each bounded batch (offsets `first..last`):

1. read it in chunks; decode and validate each chunk as it arrives and write its valid rows as
   zstd Parquet row groups to (still temporary) files under
   `raw/meter_readings/date=YYYY-MM-DD/hour=HH/`, one per event hour;
2. record the batch in a small intent marker (`_state/meter_readings/<topic>/partition=<p>.json`);
3. publish the files, every one named `<topic>+<partition>+<first>-<last>.parquet`, with bad
   messages under `quarantine/meter_readings/date=YYYY-MM-DD/`, and make them durable;
4. commit the offset after the batch to Kafka.

If the process dies between 3 and 4, the next drain finds the marker, re-reads exactly the same
offsets, judges them with the same clock and late-reading lookback (both in the marker) and
rewrites the same file names: the retry overwrites, it never duplicates. A batch
costs memory in proportion to the batch size, never to the backlog.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from metrify import lake
from metrify.contracts import readings
from metrify.ingest.decode import decode

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

STATE_LAYER = "_state"
# The reading thread plus three threads that decode and write chunks as they arrive: on two cores,
# consuming, decoding and writing overlap (measured by `make bench`).
DRAIN_THREADS = 3
# Rows buffered per raw file before a row group is written: smaller groups cost more CPU to
# write (measured: 5,000-row groups twice the cost of 50,000-row groups) and to read.
ROW_GROUP_ROWS = 32_768


@dataclass
class BatchResult:
    first_offset: int
    last_offset: int
    messages: int
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
    messages: int = 0
    valid_rows: int = 0
    quarantined: int = 0
    too_late: int = 0  # of the quarantined: readings older than the lookback ("too late: ...")
    batches: int = 0
    files: int = 0  # Parquet files written (raw and quarantine)
    seconds: float = 0.0

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        self.messages += result.messages
        self.valid_rows += result.valid_rows
        self.quarantined += result.quarantined
        self.too_late += result.too_late
        self.files += len(result.files)
        self.end_offset = result.last_offset + 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_stem(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}+{partition}+{first:012d}-{last:012d}"


def marker_path(root: ObjectStoragePath, topic: str, partition: int) -> ObjectStoragePath:
    return root / STATE_LAYER / readings.DATASET / topic / f"partition={partition}.json"


def staging_path(root: ObjectStoragePath, topic: str, partition: int) -> ObjectStoragePath:
    """Where a batch's files are written until they are published (local lakes)."""
    return root / STATE_LAYER / readings.DATASET / topic / f"partition={partition}.staging"


def drain_partition(
    consumer_config: dict[str, Any],
    topic: str,
    partition: int,
    root: ObjectStoragePath,
    batch_size: int = 100_000,
    poll_timeout: float = 1.0,
    idle_timeout: float = 30.0,
    on_batch_written: Callable[[BatchResult], None] | None = None,
    late_lookback: timedelta | None = None,
) -> DrainReport:
    """Drain `topic`/`partition` from its committed offset to the high watermark seen at start.

    Readings older than `late_lookback` (the task passes `METRIFY_LATE_LOOKBACK_DAYS`) are
    quarantined as too late. `on_batch_written` runs after a batch's files are durable and
    before its offset is committed (tests use it to crash the drain at the worst moment).
    """
    started = time.monotonic()
    consumer = Consumer(consumer_config)
    tp = TopicPartition(topic, partition)
    try:
        low, high = consumer.get_watermark_offsets(tp, timeout=10.0, cached=False)
        committed = consumer.committed([tp], timeout=10.0)[0]
        if committed.error:
            raise KafkaException(committed.error)
        start = committed.offset if committed.offset >= 0 else low
        if start < low:
            raise RuntimeError(
                f"{topic}[{partition}]: committed offset {start} is below the log start {low}: "
                f"messages {start}..{low - 1} were deleted by retention before they were ingested"
            )
        report = DrainReport(topic, partition, start, start, high)
        lake.clear_staging(staging_path(root, topic, partition))  # what a killed drain left unfinished
        pending = lake.read_json(marker_path(root, topic, partition))
        replay_last = None
        replay_now, replay_lookback = None, late_lookback
        if pending and pending["first_offset"] == start and pending["last_offset"] < high:
            replay_last = pending["last_offset"]
            # judged as the attempt judged it (same clock, same lookback): the same verdicts, the same files
            if "decoded_at" in pending:
                replay_now = datetime.fromisoformat(pending["decoded_at"])
                seconds = pending.get("late_lookback_seconds")
                replay_lookback = None if seconds is None else timedelta(seconds=seconds)
            log.warning(
                "%s[%d]: replaying uncommitted batch %d..%d written by an earlier attempt",
                topic,
                partition,
                pending["first_offset"],
                replay_last,
            )
        consumer.assign([TopicPartition(topic, partition, start)])
        reader = _PartitionReader(consumer, topic, partition, poll_timeout, idle_timeout)
        read_from = start
        in_flight: Future[BatchResult] | None = None
        # Two worker threads decode and write each chunk of messages as soon as it is read, while
        # this thread reads on; a batch's files are published (renamed into place) only when all
        # its chunks are written. Offsets are committed strictly in order, each only after its own
        # files are durable, and a batch is published only after the previous batch's commit (so
        # at most one batch is ever published but uncommitted: the one the intent marker names).
        with _gc_paused(), ThreadPoolExecutor(max_workers=DRAIN_THREADS, thread_name_prefix="drain") as workers:
            while True:
                chunks: list[Future[None]] = []
                files = None
                try:
                    last_read = read_from - 1
                    if read_from < high:
                        if replay_last is not None:
                            last, now, lookback = replay_last, replay_now or _now(), replay_lookback
                        else:
                            last, now, lookback = min(read_from + batch_size, high) - 1, _now(), late_lookback
                        replay_last = None
                        files = BatchFiles(root, topic, partition, read_from, last)
                        for chunk in reader.chunks(read_from, last):
                            chunks.append(workers.submit(decode_into, files, chunk, now, lookback))
                            last_read = chunk.last_offset
                            del chunk  # a worker holds it until written: memory follows the batch size
                    if in_flight is not None:
                        result = in_flight.result()
                        in_flight = None
                        if on_batch_written:
                            on_batch_written(result)
                        consumer.commit(
                            offsets=[TopicPartition(topic, partition, result.last_offset + 1)], asynchronous=False
                        )
                        report.add(result)
                        log.info(
                            "%s[%d]: committed %d after batch %d..%d (%d rows, %d quarantined)",
                            topic,
                            partition,
                            report.end_offset,
                            result.first_offset,
                            result.last_offset,
                            result.valid_rows,
                            result.quarantined,
                        )
                except BaseException:
                    wait(chunks)
                    if files is not None:
                        files.discard()  # unpublished temporary files only
                    raise
                if not chunks:
                    if reader.carry and offset_of(reader.carry[0]) < high:  # offsets up to `last` were compacted away
                        read_from = offset_of(reader.carry[0])
                        continue
                    break
                assert files is not None  # chunks were read, so a batch was opened
                files.last_read = last_read  # below `last` only if the partition went idle or was compacted
                lake.write_json(
                    {
                        "first_offset": read_from,
                        "last_offset": last,
                        "decoded_at": now.isoformat(),  # a replay judges with the same clock and lookback
                        "late_lookback_seconds": None if lookback is None else lookback.total_seconds(),
                        "written_at": _now().isoformat(),
                    },
                    marker_path(root, topic, partition),
                )
                in_flight = workers.submit(close_batch, files, chunks, workers)
                read_from = last_read + 1
        report.seconds = round(time.monotonic() - started, 3)
        return report
    finally:
        consumer.close()


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


class _PartitionReader:
    """Reads one assigned partition in chunks, keeping what it read beyond a batch for the next."""

    def __init__(
        self, consumer: Consumer, topic: str, partition: int, poll_timeout: float, idle_timeout: float
    ) -> None:
        self.consumer, self.topic, self.partition = consumer, topic, partition
        self.poll_timeout, self.idle_timeout = poll_timeout, idle_timeout
        self.carry: list[Message] = []

    def chunks(self, first: int, last: int) -> Iterator[Chunk]:
        """Chunks of messages from offset `first` up to `last` inclusive (fewer if none arrives
        for `idle_timeout` seconds)."""
        next_offset = first
        idle_since = time.monotonic()
        while next_offset <= last:
            if self.carry:
                chunk, self.carry = self.carry, []
            else:
                want = max(1, min(10_000, last + 1 - next_offset))
                chunk = self.consumer.consume(num_messages=want, timeout=self.poll_timeout)
                chunk = [m for m in chunk if not _is_partition_eof(m)] if any(map(Message.error, chunk)) else chunk
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
            if chunk:
                next_offset = offset_of(chunk[-1]) + 1
                yield Chunk.of(chunk)
            if self.carry:
                return


def offset_of(message: Message) -> int:
    """The offset of a consumed message (only error events have none)."""
    offset = message.offset()
    if offset is None:
        raise KafkaException(message.error())
    return offset


def _is_partition_eof(message: Message) -> bool:
    error = message.error()
    if error is None:
        return False
    if error.code() == KafkaError._PARTITION_EOF:
        return True
    raise KafkaException(error)


def _now() -> datetime:
    return datetime.now(UTC)


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
            np.fromiter([m.timestamp()[1] for m in messages], dtype=np.int64, count=len(messages)),
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
    """The files of one batch (`<topic>+<partition>+<first>-<last>.parquet` in every partition it
    touches), filled chunk by chunk as chunks are decoded and published together by `close()`.

    Raw rows go to one file per event date and hour, in row groups of at least `ROW_GROUP_ROWS`
    rows; bad messages to one quarantine file per Kafka-timestamp date.
    """

    def __init__(self, root: ObjectStoragePath, topic: str, partition: int, first: int, last: int) -> None:
        self.root, self.topic, self.partition = root, topic, partition
        self.first, self.last_read = first, last  # the drain lowers last_read if the batch ended early
        self.stem = file_stem(topic, partition, first, last)  # named after the planned range, as the marker
        self.raw_files: dict[int, lake.ParquetFile] = {}  # by epoch hour
        self.quarantine: list[pa.Table] = []
        self.valid_rows = 0
        self._lock = threading.Lock()

    def add(self, decoded: DecodedChunk) -> None:
        """Append a decoded chunk (safe to call from several threads)."""
        for hour, rows in _split_by_hour(decoded.rows):
            with self._lock:
                if hour not in self.raw_files:
                    self.raw_files[hour] = lake.ParquetFile(
                        self._raw_path(hour),
                        readings.RAW_SCHEMA,
                        staging_path(self.root, self.topic, self.partition),
                        row_group_rows=ROW_GROUP_ROWS,
                        dictionary_columns=["meter_id", "topic"],
                    )
                file = self.raw_files[hour]
            file.write(rows)  # files lock themselves: two threads write two hours at once
        with self._lock:
            self.valid_rows += decoded.rows.num_rows
            if decoded.quarantine is not None:
                self.quarantine.append(decoded.quarantine)

    def close(self, workers: ThreadPoolExecutor | None = None) -> BatchResult:
        """Publish every file and make them durable (before the caller commits the offsets).

        With `workers`, the raw files' last row groups are written in parallel.
        """
        raw = [self.raw_files[hour] for hour in sorted(self.raw_files)]
        if workers is not None:
            for finished in [workers.submit(file.finish) for file in raw]:
                finished.result()
        for file in raw:
            file.finish()  # a no-op when already finished
            file.publish()
        files = [file.path for file in raw]
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
        return BatchResult(
            self.first,
            self.last_read,
            self.valid_rows + quarantined,
            self.valid_rows,
            quarantined,
            [str(f) for f in files],
            too_late,
        )

    def discard(self) -> None:
        for file in self.raw_files.values():
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
