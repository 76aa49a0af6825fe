"""The `s3://` lake path, through Airflow's ObjectStoragePath and the `aws_default` connection,
against moto's S3 server on loopback: the same code that writes the local lake."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from metrify import lake
from metrify.config import load_settings
from metrify.contracts.readings import DATASET
from metrify.ingest import drain, kafka
from metrify_dev.simulator import SimulationOptions, produce, simulate


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_lake(s3_endpoint: str, metrify_home, monkeypatch: pytest.MonkeyPatch) -> str:
    import boto3

    bucket = f"metrify-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="eu-central-1",
    ).create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    connection = {
        "conn_type": "aws",
        "login": "test",
        "password": "test",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "eu-central-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    monkeypatch.setenv("METRIFY_LAKE_URL", f"s3://{bucket}/lake")
    return bucket


def _client(endpoint: str):
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="eu-central-1"
    )


def _read_objects(bucket: str, endpoint: str, prefix: str) -> dict[str, pa.Table]:
    """Every Parquet object under `prefix`, fetched with boto3 and read with pyarrow (not through the lake)."""
    import pyarrow.parquet as pq

    client = _client(endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    return {
        key: pq.read_table(pa.BufferReader(client.get_object(Bucket=bucket, Key=key)["Body"].read()))
        for key in keys
        if key.endswith(".parquet")
    }


def test_write_and_read_parquet_through_s3(s3_lake: str, s3_endpoint: str) -> None:
    """What the lake writes is one object at the partition's key in the bucket, holding the table;
    checked with boto3 and pyarrow, then read back through the lake."""
    root = lake.lake_root()
    assert root.protocol == "s3"
    path = lake.partition_path(root, "raw", "example", date="2026-11-22", hour="00") / "a.parquet"
    table = pa.table({"x": [1, 2, 3]})
    lake.write_parquet(table, path)
    lake.write_parquet(table, path)  # a retry replaces, never duplicates
    stored = _read_objects(s3_lake, s3_endpoint, "lake/")
    assert list(stored) == ["lake/raw/example/date=2026-11-22/hour=00/a.parquet"]
    assert stored["lake/raw/example/date=2026-11-22/hour=00/a.parquet"].to_pydict() == {"x": [1, 2, 3]}
    assert lake.count_rows(root / "raw" / "example") == 3
    assert lake.read_table(root / "raw" / "example")["date"].to_pylist() == ["2026-11-22"] * 3


def test_drain_into_s3_lake(s3_lake: str, s3_endpoint: str, broker: dict) -> None:
    topic = f"meters-s3-{uuid.uuid4().hex[:6]}"
    sim = simulate(SimulationOptions(meters=8, start=datetime(2026, 11, 20, tzinfo=UTC), seed=2, poison_rate=0.01))
    produce(sim.keys, sim.values, topic, kafka.producer_config({"bootstrap.servers": broker["bootstrap"]}))
    config = kafka.consumer_config({"bootstrap.servers": broker["bootstrap"]}, group_id=topic)
    root = lake.lake_root(load_settings())
    reports = [drain.drain_partition(config, topic, p, root, batch_size=500) for p in kafka.partitions(config, topic)]
    assert sum(r.consumed for r in reports) == sim.counts["messages"]
    # counted from the bucket's objects with boto3 and pyarrow, not through the lake that wrote them
    raw_objects = _read_objects(s3_lake, s3_endpoint, f"lake/raw/{DATASET}/")
    assert raw_objects and all(key.startswith(f"lake/raw/{DATASET}/date=") for key in raw_objects)
    raw = sum(t.num_rows for t in raw_objects.values())
    quarantined = sum(t.num_rows for t in _read_objects(s3_lake, s3_endpoint, f"lake/quarantine/{DATASET}/").values())
    assert raw + quarantined == sim.counts["messages"]
    assert quarantined == sim.counts["poison_messages"]


def _objects(bucket: str, endpoint: str, prefix: str) -> tuple[list[str], list[str]]:
    """(keys, keys of multipart uploads in progress) under `prefix` of the bucket."""
    client = _client(endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    uploads = [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])]
    return keys, uploads


KILLED_BEFORE_PUBLISHING = """
import json, os, sys
from metrify import lake
from metrify.ingest import drain
config, topic = json.loads(sys.argv[1]), sys.argv[2]

def die(files, chunks, workers):
    for chunk in chunks:
        chunk.result()  # every row of the batch is written to its spool files ...
    os._exit(9)  # ... and the process dies before publishing them

drain.close_batch = die
drain.drain_partition(config, topic, 0, lake.lake_root(), batch_size=400)
"""


def test_a_drain_killed_or_failing_mid_batch_leaves_nothing_on_s3(
    s3_lake: str, s3_endpoint: str, broker: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    topic = f"meters-s3-{uuid.uuid4().hex[:6]}"
    sim = simulate(SimulationOptions(meters=24, start=datetime(2026, 11, 20, tzinfo=UTC), seed=4, poison_rate=0.02))
    produce(sim.keys, sim.values, topic, kafka.producer_config({"bootstrap.servers": broker["bootstrap"]}))
    config = kafka.consumer_config({"bootstrap.servers": broker["bootstrap"]}, group_id=topic)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_BEFORE_PUBLISHING, json.dumps(config), topic], capture_output=True, timeout=120
    )
    assert killed.returncode == 9, killed.stderr[-2000:]
    for layer in ("raw", "quarantine"):
        assert _objects(s3_lake, s3_endpoint, f"lake/{layer}/") == ([], []), f"{layer}/ after a kill"

    calls = {"n": 0}
    decode_chunk = drain.decode_chunk

    def fail_on_the_third_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full (injected)")
        return decode_chunk(*args, **kwargs)

    monkeypatch.setattr(drain, "decode_chunk", fail_on_the_third_chunk)
    monkeypatch.setattr(drain, "CHUNK_MESSAGES", 50)  # one batch of several chunks: the failure is mid-batch
    root = lake.lake_root(load_settings())
    with pytest.raises(RuntimeError, match="disk full"):
        drain.drain_partition(config, topic, 0, root, batch_size=5000)
    assert calls["n"] >= 3
    for layer in ("raw", "quarantine"):
        assert _objects(s3_lake, s3_endpoint, f"lake/{layer}/") == ([], []), f"{layer}/ after a failure"

    monkeypatch.setattr(drain, "decode_chunk", decode_chunk)
    report = drain.drain_partition(config, topic, 0, root, batch_size=5000)  # and the next drain does it all
    assert report.start_offset == 0 and report.consumed == report.end_offset > 0


def test_heating_meters_read_the_validated_weather_from_s3(s3_lake: str) -> None:
    """The daily substitutes' weather read (`substitution.daily.read_weather`) on the `s3://` lake:
    a local day's mean temperature per city, DWD preferred per clock hour."""
    from datetime import date

    import pandas as pd

    from metrify.contracts.weather import DATASET as WEATHER
    from metrify.contracts.weather import WEATHER_SCHEMA
    from metrify.substitution import daily, method

    root = lake.lake_root()
    hours = pd.date_range("2026-11-17 23:00", periods=24, freq="h", tz="UTC")  # local 18 Nov
    for source, minute, celsius in (("dwd", 0, 4.0), ("openweathermap", 37, 9.0)):
        stamps = hours + pd.Timedelta(minutes=minute)
        for day in sorted(set(stamps.date)):
            these = stamps[stamps.date == day]
            table = pa.Table.from_pylist(
                [
                    {
                        "city": "Berlin",
                        "source": source,
                        "observed_at": t.to_pydatetime(),
                        "temperature_celsius": celsius,
                    }
                    for t in these
                ],
                schema=WEATHER_SCHEMA,
            )
            lake.write_parquet(
                table, lake.partition_path(root, "validated", WEATHER, date=str(day)) / f"{source}.parquet"
            )

    observations = daily.read_weather(root, [date(2026, 11, 17), date(2026, 11, 18)])
    assert len(observations) == 48
    days = method.day_temperatures(observations)
    assert days.to_dict("records") == [{"city": "Berlin", "local_date": date(2026, 11, 18), "temperature_celsius": 4.0}]
