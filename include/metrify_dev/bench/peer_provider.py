"""The peer an Airflow user would pick: the Kafka provider's `ConsumeFromTopicOperator`.

Set up the way the provider's documentation shows it (apache-airflow-providers-apache-kafka
2.1.0, "Apache Kafka Operators"): a Kafka connection whose extra is the broker's librdkafka
configuration plus `group.id`, `enable.auto.commit: false` (the documentation asks for it with
any `commit_cadence`) and `auto.offset.reset: earliest`; `commit_cadence="end_of_batch"` as
in its example; `apply_function_batch` given as a dotted path; `poll_timeout` left at its
default. `max_messages` is the backlog's size, so `execute()` returns once it has read
everything, and `max_batch_size` is 10,000.

What it does, per batch of up to 10,000 messages from one consumer subscribed to the topic(s):
`json.loads` every value, `pyarrow.Table.from_pylist`, one zstd Parquet file under
`raw/meter_readings/` named after the batch's first message, then a synchronous offset commit.

What it does not do, and the drain does:
- validation: no schema (types are whatever `from_pylist` infers: `reading_ts` stays a string),
  no bounds; a message that is not JSON, or a field of another type than in the rest of its
  batch, fails the task; none of the bench's backlog has one (its poison rate is 0 unless set);
- quarantine: there is nowhere for a bad message to go;
- hour partitioning: one file per batch with rows of every hour and partition mixed, no
  `date=/hour=` folders, no Kafka coordinates (topic, partition, offset, timestamp) in the rows;
- exactly-once: files are written in place (a crash can leave half a file) and are named after
  what the consumer happened to hand over, so a batch read again after a crash between write and
  commit lands under other names: duplicates; no ledger, no fencing of a second run, no durable
  (fsynced) publish before the commit;
- bounded reading: it reads until `max_messages` or until `poll_timeout` (60 s) passes without
  a message, not to the high watermark seen at its start.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from metrify.contracts import readings

if TYPE_CHECKING:
    from confluent_kafka import Message

MAX_BATCH_SIZE = 10_000
COMMIT_CADENCE = "end_of_batch"
APPLY_FUNCTION_BATCH = "metrify_dev.bench.peer_provider.write_batch"

_first_batch_at: list[float] = []  # perf_counter() when the operator handed over its first batch


def connection(connection_extra: dict[str, Any], group_id: str) -> dict[str, Any]:
    """The Airflow connection (for an `AIRFLOW_CONN_<ID>` variable) the operator reads."""
    extra = {
        **connection_extra,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    return {"conn_type": "kafka", "extra": extra}


def connection_variable(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def write_batch(messages: list[Message], lake_dir: str) -> None:
    """The batch apply function: JSON to an Arrow table to one zstd Parquet file."""
    if not _first_batch_at:
        _first_batch_at.append(time.perf_counter())
    table = pa.Table.from_pylist([json.loads(m.value() or b"null") for m in messages])
    first = messages[0]
    folder = os.path.join(lake_dir, "raw", readings.DATASET)
    os.makedirs(folder, exist_ok=True)
    pq.write_table(
        table,
        os.path.join(folder, f"{first.topic()}+{first.partition()}+{first.offset():012d}.parquet"),
        compression="zstd",
    )


def operator(conn_id: str, topics: list[str], messages: int, lake_dir: str) -> Any:
    """A `ConsumeFromTopicOperator` that reads `messages` messages of `topics` into `lake_dir`."""
    from airflow.providers.apache.kafka.operators.consume import ConsumeFromTopicOperator

    return ConsumeFromTopicOperator(
        task_id="consume_meter_readings",
        kafka_config_id=conn_id,
        topics=topics,
        apply_function_batch=APPLY_FUNCTION_BATCH,
        apply_function_kwargs={"lake_dir": lake_dir},
        commit_cadence=COMMIT_CADENCE,
        max_messages=messages,
        # the operator would raise a smaller max_messages to max_batch_size, then wait poll_timeout
        # (60 s) for messages that never come
        max_batch_size=min(MAX_BATCH_SIZE, messages),
    )


def first_batch_seconds(started: float) -> float | None:
    """Seconds from `started` to the first batch the operator handed to `write_batch`."""
    return round(_first_batch_at[0] - started, 3) if _first_batch_at else None


def written(lake_dir: str) -> tuple[int, int]:
    """(files, rows) that `write_batch` wrote under `lake_dir`, rows read from the footers."""
    files = sorted(Path(lake_dir, "raw", readings.DATASET).glob("*.parquet"))
    return len(files), sum(pq.read_metadata(f).num_rows for f in files)
