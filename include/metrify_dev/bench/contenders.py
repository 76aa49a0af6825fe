"""One contender of the ingestion benchmark, run in a process of its own by `bench.ingest`.

    python -m metrify_dev.bench.contenders raw|drain|provider|stages|warm

reads its spec (one JSON line, with the connection's credentials: hence not on the command line)
from standard input, sets up (imports and, for `raw`, the consumer), prints `ready`, waits for a
`go` line (so that parallel processes start their work together), works and prints one JSON
line: messages read, wall seconds of the work, its wall-clock start and end, CPU seconds of the
process over that time and its peak RSS (VmHWM, imports included: the drain and the provider
both carry Airflow and its plugins, loaded before the timer as in a task process).

- `raw`: assign each partition in turn and consume it to its high watermark, touching every
  value; no decoding, no writing. The ceiling for any consumer on this machine.
- `drain`: the project's `drain_partition` over every partition, configured exactly as the
  `ingest_meter_readings` task configures it (`metrify.ingest.tasks.drain_one`).
- `provider`: the Airflow Kafka provider's `ConsumeFromTopicOperator` (`bench.peer_provider`).
- `stages`: the drain's stages one after another in one thread, each timed on its own
  (`profile_stages`): where the drain's CPU per message goes.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Spec = dict[str, Any]
READY, GO = "ready", "go"
IDLE_SECONDS = 30.0  # raw consume gives up on a partition that sends nothing for this long
# The drain's stages, in the order a message goes through them (`profile_stages`).
STAGES = {
    "read": "a new consumer reads the partition in the drain's chunks, values and timestamps out",
    "decode": "JSON parse, validation, Kafka offsets and timestamps attached",
    "write": "split by event hour, zstd Parquet, published and synced per batch",
}


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def as_task_process() -> None:
    """Load Airflow's plugins, as its task runner does before a task's body runs (its listener
    manager). Otherwise the first `ObjectStoragePath` read would load them inside the timed work
    (measured: 1.5 to 4 s on this machine, mostly importing astronomer-cosmos and dbt)."""
    from airflow.sdk.listener import get_listener_manager

    get_listener_manager()


@dataclass
class Timer:
    """The work's wall and CPU time, started when the bench says go."""

    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)
    cpu_started: float = field(default_factory=cpu_seconds)

    def stop(self) -> dict[str, float]:
        return {
            "seconds": time.perf_counter() - self.started,
            "started_at": self.started_at,
            "ended_at": time.time(),
            "cpu_seconds": round(cpu_seconds() - self.cpu_started, 2),
        }


def start_when_told() -> Timer:
    """Say `ready` and wait for `go` on standard input, then start the timer."""
    print(READY, flush=True)
    if sys.stdin.readline().strip() != GO:
        sys.exit("the bench did not say go")
    return Timer()


def raw_consume(spec: Spec) -> dict[str, Any]:
    """Consume every assigned partition to its high watermark; no decoding, no writing. An error
    event other than a partition's end, or no message for `idle_timeout` seconds (default
    `IDLE_SECONDS`) before the high watermark, stops it with an error naming the partition."""
    from confluent_kafka import Consumer, TopicPartition

    idle_timeout = spec.get("idle_timeout", IDLE_SECONDS)
    consumer = Consumer(spec["config"])
    timer = start_when_told()
    count = size = 0
    try:
        for topic, partition in spec["assignments"]:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
            consumer.assign([TopicPartition(topic, partition, low)])
            last = low - 1
            idle_since = time.monotonic()
            while last < high - 1:
                messages = consumer.consume(min(10_000, high - 1 - last), timeout=1.0)
                for message in messages:
                    offset = message.offset()
                    if message.error() or offset is None:
                        _raise_unless_partition_end(message, topic, partition)
                        continue
                    size += len(message.value() or b"")
                    last = offset
                    count += 1
                if messages:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > idle_timeout:
                    raise RuntimeError(
                        f"{topic}[{partition}]: no message for {idle_timeout} s at offset {last + 1}, "
                        f"before the high watermark {high}"
                    )
        times = timer.stop()
    finally:
        consumer.close()
    return {"messages": count, "bytes": size, **times, "peak_rss_mib": peak_rss_mib()}


def _raise_unless_partition_end(message: Any, topic: str, partition: int) -> None:
    from confluent_kafka import KafkaError

    error = message.error()
    if error is not None and error.code() != KafkaError._PARTITION_EOF:
        raise RuntimeError(f"{topic}[{partition}]: {error.str()}")


def drain(spec: Spec) -> dict[str, Any]:
    """`drain_partition` over every assigned partition, one after the other, as the task does."""
    from metrify import lake
    from metrify.config import load_settings
    from metrify.ingest import drain

    as_task_process()
    settings = load_settings()  # METRIFY_HOME and METRIFY_LAKE_URL come from the bench
    root = lake.lake_root(settings)
    timer = start_when_told()
    reports = [
        drain.drain_partition(
            spec["config"],
            topic,
            partition,
            root,
            batch_size=spec["batch_size"],
            batch_bytes=spec["batch_bytes"],
            home=str(settings.home),
            late_lookback=settings.late_lookback,
        )
        for topic, partition in spec["assignments"]
    ]
    times = timer.stop()
    return {
        "messages": sum(r.consumed for r in reports),
        **times,
        "threads": drain.DRAIN_THREADS + 1,
        "valid_rows": sum(r.valid_rows for r in reports),
        "quarantined": sum(r.quarantined for r in reports),
        "files": sum(len(r.files) for r in reports),
        "peak_rss_mib": peak_rss_mib(),
    }


def provider(spec: Spec) -> dict[str, Any]:
    """The Airflow Kafka provider's operator reading the whole backlog into zstd Parquet: the
    time of `execute()`, which makes the consumer, joins the group, reads, writes and commits."""
    import pandas  # noqa: F401 - pyarrow's first write_table imports it; the drain imports it before its timer

    from metrify_dev.bench import peer_provider

    as_task_process()
    operator = peer_provider.operator(spec["conn_id"], spec["topics"], spec["messages"], spec["lake_dir"])
    timer = start_when_told()
    operator.execute(context={})
    times = timer.stop()
    first_batch = peer_provider.first_batch_seconds(timer.started)
    files, rows = peer_provider.written(spec["lake_dir"])
    return {
        "messages": rows,  # counted from the Parquet footers of what it wrote
        **times,
        # from execute() to its first batch in hand: consumer, group join, first fetch
        "first_batch_seconds": first_batch,
        "files": files,
        "peak_rss_mib": peak_rss_mib(),
    }


def profile_stages(spec: Spec) -> dict[str, Any]:
    """The drain's stages one after another in this thread, each timed alone (the process's CPU
    time around it), with the drain's own code: for each partition, a new consumer reads it to
    its high watermark in the drain's batches and chunks (`PartitionReader`, which also pulls the
    values and Kafka timestamps out) and is closed; then each chunk is decoded (`decode_chunk`)
    and written (`BatchFiles`, published and synced per batch). Left out: the ledger, the offset
    commits and the hand-offs between the drain's threads, which overlap these stages."""
    from metrify import lake
    from metrify.config import load_settings
    from metrify.ingest import drain

    as_task_process()
    settings = load_settings()
    root = lake.lake_root(settings)
    spent = dict.fromkeys(STAGES, 0.0)
    count = valid_rows = quarantined = 0

    def timed(stage: str, work: Any, *args: Any) -> Any:
        clock = cpu_seconds()
        result = work(*args)
        spent[stage] += cpu_seconds() - clock
        return result

    gc.disable()  # as the drain does while it drains
    timer = start_when_told()
    for topic, partition in spec["assignments"]:
        batches = timed("read", _read_partition, spec, topic, partition)
        spool = drain.spool_dir(root, topic, partition, 0, str(settings.home))
        for chunks in batches:
            now = datetime.now(UTC)  # one clock per batch, as the drain judges a batch
            files = drain.BatchFiles(root, topic, partition, drain.offset_of(chunks[0].messages[0]), spool)
            for chunk in chunks:
                decoded = timed("decode", drain.decode_chunk, chunk, topic, partition, now, settings.late_lookback)
                timed("write", files.add, decoded)
                files.consumed += len(chunk.messages)
                files.last_read = chunk.last_offset
            result = timed("write", files.close)
            count += files.consumed
            valid_rows, quarantined = valid_rows + result.valid_rows, quarantined + result.quarantined
    times = timer.stop()
    return {
        "messages": count,
        **times,
        "stage_cpu_seconds": {stage: round(seconds, 6) for stage, seconds in spent.items()},
        "valid_rows": valid_rows,
        "quarantined": quarantined,
        "peak_rss_mib": peak_rss_mib(),
    }


def _read_partition(spec: Spec, topic: str, partition: int) -> list[list[Any]]:
    """One partition, low to high watermark, as `drain_partition` reads it: a new consumer, the
    drain's reader with the drain's timeouts, batches of `batch_size` messages or `batch_bytes`.
    Reading stops early only where the reader does (no message for its idle timeout)."""
    from confluent_kafka import Consumer, TopicPartition

    from metrify.ingest.drain import PartitionReader

    consumer = Consumer(spec["config"])
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10.0, cached=False)
        consumer.assign([TopicPartition(topic, partition, low)])
        reader = PartitionReader(consumer, topic, partition)
        batches: list[list[Any]] = []
        read_from = low
        while read_from < high:
            chunks = list(reader.chunks(read_from, min(read_from + spec["batch_size"], high) - 1, spec["batch_bytes"]))
            if not chunks:
                break
            batches.append(chunks)
            read_from = chunks[-1].last_offset + 1
        return batches
    finally:
        consumer.close()


def warm(spec: Spec) -> dict[str, Any]:
    """Import what the contenders import, lazily included (Airflow's plugins, the lake's file
    systems, the provider's operator), so that the bytecode cache is complete before a timed run."""
    from metrify import lake
    from metrify.config import load_settings
    from metrify_dev.bench import peer_provider

    started = time.perf_counter()
    as_task_process()
    lake.lake_root(load_settings()).fs  # noqa: B018 - registers Airflow's file systems
    peer_provider.operator("warm", ["warm"], 1, "/nonexistent")
    start_when_told()
    return {"seconds": round(time.perf_counter() - started, 2)}


CONTENDERS = {"raw": raw_consume, "drain": drain, "provider": provider, "stages": profile_stages, "warm": warm}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in CONTENDERS:
        sys.exit(f"usage: python -m metrify_dev.bench.contenders {'|'.join(CONTENDERS)} < SPEC_JSON")
    result = CONTENDERS[args[0]](json.loads(sys.stdin.readline()))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
