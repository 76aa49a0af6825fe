"""`make bench`: ingestion throughput and memory against a ceiling and a peer, in one run.

It simulates N readings once (`--messages`, default 1,000,000) and produces them into each
broker (`--brokers`, default both):
- `real`: a real Apache Kafka 4.4 broker (`metrify_dev.kafka_broker`: KRaft, SASL_SSL with
  SCRAM-SHA-512 on loopback, as production connects), one topic with the project's default
  partition count (12); the jars come from the project's cache in `.metrify/kafka-dist`;
- `mock`: librdkafka's in-process mock cluster (`metrify_dev.kafka_mock`), which keeps only about
  5 MB per partition and auto-creates topics with 4 partitions, so the backlog is spread over as
  many topics as needed (`TOPIC_MESSAGES` each).
On each broker, the contenders read the same backlog, each run with a fresh consumer group and
a fresh lake folder, in processes of its own (`bench.contenders`) that start their work together:
1. raw consume: every message to the high watermark, no decoding, no writing; in one process and
   in `--processes` processes (default: one per core), the better of the two is the ceiling;
2. the drain: `drain_partition`, configured as the ingestion task does, with the partitions dealt
   out over `--processes` processes the way the scheduler hands the mapped `drain` tasks to free
   worker slots (each process drains its partitions one after another, a new consumer for each,
   as task processes do); also in one process, for comparison;
3. the provider: the Airflow Kafka provider's `ConsumeFromTopicOperator` writing zstd Parquet
   per batch through `apply_function_batch`, one task as its documentation shows it
   (`bench.peer_provider` says what it does and does not).
Then, once per broker, the drain's stages are profiled one after another in one thread
(`bench.contenders.profile_stages`): CPU microseconds per message for reading (a new consumer
per partition, the drain's reader), decoding and validating, and writing, beside the drain's own
CPU per message.
A parallel run's rate is all its messages over the time from the first process's start to the
last one's end. They run `--repeats` times, interleaved, so a busy moment on the machine hits all
alike; the best rate of each counts. Results go to `bench-results/ingest.json` (every run, best
rates, ratios drain/raw and drain/provider, peak RSS per process, CPU, broker CPU, load average)
and to stdout.

The provider's operator does no validation: a message that is not JSON fails it, so the shared
backlog has no poison messages unless `--poison-rate` asks for them (then it is left out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any

from metrify.config import load_settings
from metrify.ingest import kafka
from metrify_dev import REPO_ROOT, kafka_broker, kafka_mock
from metrify_dev.bench import peer_provider
from metrify_dev.bench.contenders import GO, READY, STAGES

TOPIC_MESSAGES = 300_000  # per topic on the mock broker (it keeps about 5 MB per partition)
REAL_TOPIC = "bench-meter-readings"
PYCACHE = REPO_ROOT / ".metrify" / "bench-pycache"
# What the contenders' processes report that adds up over parallel processes.
SUMMED = ("messages", "bytes", "valid_rows", "quarantined", "files")
TARGETS = {"drain_to_raw": 0.5, "drain_to_provider": 5.0, "drain_peak_rss_mib": 1024}


@dataclass(frozen=True)
class Contender:
    """One line of the benchmark: what `bench.contenders` runs, in how many processes."""

    name: str
    kind: str  # raw, drain or provider
    processes: int
    label: str


def contenders_for(processes: int, provider: bool) -> list[Contender]:
    """Raw consume in one process and in `processes`; the drain the way a deployment runs it, its
    mapped tasks spread over `processes` worker slots (and in one process for comparison); the
    provider's operator, one task as its documentation shows it."""
    found = [Contender("raw", "raw", 1, "raw consume, 1 process")]
    if processes > 1:
        found += [
            Contender("raw_parallel", "raw", processes, f"raw consume, {processes} processes"),
            Contender("drain_one_process", "drain", 1, "drain, 1 process"),
        ]
    found.append(Contender("drain", "drain", processes, f"drain (project), {processes} process(es)"))
    if provider:
        found.append(Contender("provider", "provider", 1, "provider operator"))
    return found


@dataclass
class Backlog:
    """The simulated readings, produced once per broker."""

    keys: list[bytes]
    values: list[bytes]

    @property
    def avg_bytes(self) -> float:
        sample = self.values[:10_000]
        return sum(map(len, sample)) / max(1, len(sample))


@dataclass
class Topics:
    """Where one broker holds the backlog, and how to reach it."""

    broker: str  # "real" or "mock"
    description: str
    extra: dict[str, Any]  # the Kafka connection's extra
    topics: list[str]
    pairs: list[tuple[str, int]]  # (topic, partition)
    broker_pid: int
    produce_seconds: float


def simulate_backlog(messages: int, poison_rate: float) -> Backlog:
    from metrify_dev.simulator import SimulationOptions, simulate

    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    sim = simulate(SimulationOptions(meters=max(1, messages // 96), start=start, seed=1, poison_rate=poison_rate))
    return Backlog(sim.keys, sim.values)


def _produce(backlog: Backlog, topics: list[str], chunk: int, extra: dict[str, Any]) -> float:
    from metrify_dev.simulator import produce

    started = time.perf_counter()
    config = {**kafka.producer_config(extra), "log_level": 3}
    for n, topic in enumerate(topics):
        part = slice(n * chunk, (n + 1) * chunk)
        produce(backlog.keys[part], backlog.values[part], topic, config)
    return time.perf_counter() - started


def _check_retained(extra: dict[str, Any], pairs: list[tuple[str, int]], produced: int) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(kafka.consumer_config(extra, "bench-meta"))
    try:
        marks = [consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10, cached=False) for t, p in pairs]
    finally:
        consumer.close()
    retained = sum(high - low for low, high in marks)
    if retained != produced or any(low for low, _ in marks):
        raise RuntimeError(
            f"the broker kept {retained:,} of {produced:,} messages (dropped by retention?); lower TOPIC_MESSAGES"
        )


def _pairs(extra: dict[str, Any], topics: list[str]) -> list[tuple[str, int]]:
    meta = kafka.consumer_config(extra, "bench-meta")
    return [(topic, p) for topic in topics for p in kafka.partitions(meta, topic)]


@contextmanager
def real_broker(tmp: Path, backlog: Backlog) -> Iterator[Topics]:
    """A fresh real broker (jars from the project's cache) holding the backlog in one topic."""
    broker = kafka_broker.KafkaBroker(tmp / "kafka-real", dist_home=REPO_ROOT / ".metrify" / "kafka-dist")
    state = broker.up()
    try:
        partitions = broker.create_topic(REAL_TOPIC)  # the project's default partition count
        extra = broker.connection_extra()
        seconds = _produce(backlog, [REAL_TOPIC], len(backlog.values), extra)
        pairs = _pairs(extra, [REAL_TOPIC])
        _check_retained(extra, pairs, len(backlog.values))
        yield Topics(
            "real",
            f"Apache Kafka {state['kafka_version']} (KRaft, single node, {state['security_protocol']}/"
            f"{state['sasl_mechanism']}, loopback), 1 topic x {partitions} partitions",
            extra,
            [REAL_TOPIC],
            pairs,
            state["pid"],
            seconds,
        )
    finally:
        broker.stop()


@contextmanager
def mock_broker(tmp: Path, backlog: Backlog) -> Iterator[Topics]:
    """librdkafka's mock cluster holding the backlog, spread over topics of 4 partitions."""
    settings = load_settings({**os.environ, "METRIFY_HOME": str(tmp)})  # kafka_mock's state lives there
    info = kafka_mock.up(settings)
    try:
        extra = {"bootstrap.servers": info["bootstrap"]}
        total = len(backlog.values)
        topics = [f"bench-meter-readings-{n:02d}" for n in range((total + TOPIC_MESSAGES - 1) // TOPIC_MESSAGES)]
        seconds = _produce(backlog, topics, TOPIC_MESSAGES, extra)
        pairs = _pairs(extra, topics)
        _check_retained(extra, pairs, total)
        yield Topics(
            "mock",
            f"librdkafka mock cluster (in-process, plaintext), {len(topics)} topics x "
            f"{kafka_mock.MOCK_PARTITIONS} partitions",
            extra,
            topics,
            pairs,
            int(info["pid"]),
            seconds,
        )
    finally:
        kafka_mock.down(settings)


def _process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (the broker), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_environment(tmp: Path) -> dict[str, str]:
    """The environment of every contender's process.

    Python modules are imported from compiled bytecode, as in a deployed worker (whose image
    compiled them when it installed them), whatever PYTHONDONTWRITEBYTECODE says here: the
    bytecode goes to a cache of the bench's own (`PYCACHE`), filled by a warm-up process before
    any timed run, since the drain and the provider import modules lazily on first use.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {
        **env,
        "PYTHONPYCACHEPREFIX": str(PYCACHE),
        "METRIFY_HOME": str(tmp),
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }


def _spawn(kind: str, spec: dict[str, Any], env: dict[str, str], log: IO[str]) -> subprocess.Popen[str]:
    """`bench.contenders` in a fresh interpreter, given its spec; its stderr to `log`."""
    child = subprocess.Popen(
        [sys.executable, "-m", "metrify_dev.bench.contenders", kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    assert child.stdin is not None
    child.stdin.write(json.dumps(spec) + "\n")
    child.stdin.flush()
    return child


def _wait_ready(child: subprocess.Popen[str], kind: str, log: IO[str]) -> None:
    """Until the child has set up and waits for `go`; its failure before that is an error."""
    assert child.stdout is not None
    while line := child.stdout.readline():  # whatever imports print comes before
        if line.strip() == READY:
            return
    child.wait()
    raise RuntimeError(f"benchmark step {kind} failed before it started:\n{_tail(log)}")


def _tail(log: IO[str]) -> str:
    log.seek(0)
    return log.read()[-3000:]


def _run_processes(kind: str, specs: list[dict[str, Any]], env: dict[str, str]) -> dict[str, Any]:
    """Run one contender in `len(specs)` processes that start their work together; their JSON
    results (the last line each prints) summed: messages and CPU over all, wall time from the
    first start to the last end, peak RSS of the largest process and of all together."""
    logs = [tempfile.TemporaryFile("w+") for _ in specs]
    children: list[subprocess.Popen[str]] = []
    try:
        for spec, log in zip(specs, logs, strict=True):
            children.append(_spawn(kind, spec, env, log))
            _wait_ready(children[-1], kind, log)
        for child in children:  # all are set up: go
            assert child.stdin is not None
            child.stdin.write(GO + "\n")
            child.stdin.close()
        outputs = []
        for child, log in zip(children, logs, strict=True):
            assert child.stdout is not None
            out = child.stdout.read()
            if child.wait() != 0:
                raise RuntimeError(f"benchmark step {kind} failed:\n{_tail(log)}")
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:  # after a failure, the others would wait or read on: stop them
            if child.poll() is None:
                child.kill()
                child.wait()
            for pipe in (child.stdin, child.stdout):
                if pipe is not None and not pipe.closed:
                    pipe.close()
        for log in logs:
            log.close()
    if len(outputs) == 1:
        return {**outputs[0], "processes": 1}
    summed = {key: sum(o[key] for o in outputs) for key in outputs[0] if key in SUMMED}
    return {
        **summed,
        "seconds": max(o["ended_at"] for o in outputs) - min(o["started_at"] for o in outputs),
        "cpu_seconds": round(sum(o["cpu_seconds"] for o in outputs), 2),
        "peak_rss_mib": max(o["peak_rss_mib"] for o in outputs),
        "peak_rss_mib_all_processes": round(sum(o["peak_rss_mib"] for o in outputs), 1),
        "processes": len(outputs),
        "per_process": outputs,
    }


def _child(contender: Contender, spec: dict[str, Any], env: dict[str, str], broker_pid: int) -> dict[str, Any]:
    """One timed contender run, with the machine's load and the broker's CPU time around it."""
    load = os.getloadavg()[0]
    broker_cpu = _process_cpu_seconds(broker_pid)
    started = time.perf_counter()
    specs = [spec]
    if contender.processes > 1:  # partitions dealt out the way a scheduler hands mapped tasks to free slots
        specs = [
            {**spec, "assignments": spec["assignments"][n :: contender.processes]} for n in range(contender.processes)
        ]
    result = _run_processes(contender.kind, specs, env)
    broker_cpu_after = _process_cpu_seconds(broker_pid)
    result["process_seconds"] = round(time.perf_counter() - started, 2)  # interpreters, imports and all
    result["load_1m_at_start"] = round(load, 2)
    if broker_cpu is not None and broker_cpu_after is not None:
        result["broker_cpu_seconds"] = round(broker_cpu_after - broker_cpu, 2)
    result["rate"] = result["messages"] / result["seconds"]
    return result


def _spec(
    contender: Contender, topics: Topics, attempt: int, lake: Path, total: int, batch_size: int
) -> dict[str, Any]:
    group, kind = f"bench-{contender.name}-{attempt}", contender.kind
    settings = load_settings()
    if kind == "raw":
        return {"config": kafka.consumer_config(topics.extra, group), "assignments": topics.pairs}
    if kind in ("drain", "stages"):  # exactly as metrify.ingest.tasks configures the drain
        return {
            "config": kafka.consumer_config(topics.extra, group, batch_bytes=settings.batch_bytes),
            "assignments": topics.pairs,
            "batch_size": batch_size,
            "batch_bytes": settings.batch_bytes,
        }
    return {"conn_id": f"bench_provider_{attempt}", "topics": topics.topics, "messages": total, "lake_dir": str(lake)}


def _describe_run(kind: str, run: dict[str, Any]) -> str:
    text = (
        f"{run['messages']:,} in {run['seconds']:.2f} s = {run['rate']:,.0f} msg/s, CPU {run['cpu_seconds']} s, "
        f"peak RSS {run['peak_rss_mib']} MiB"
    )
    if kind == "provider" and run.get("first_batch_seconds") is not None:
        text += f", first batch after {run['first_batch_seconds']:.1f} s"
    return text + f", load {run['load_1m_at_start']}"


def _rate_after_first_batch(run: dict[str, Any]) -> float | None:
    """A provider run's rate from its first batch in hand to the end (no consumer set-up, no join)."""
    first_batch = min(run["messages"], peer_provider.MAX_BATCH_SIZE)
    if run.get("first_batch_seconds") is None or run["messages"] <= first_batch:
        return None
    return float((run["messages"] - first_batch) / (run["seconds"] - run["first_batch_seconds"]))


def measure(
    topics: Topics, tmp: Path, total: int, batch_size: int, repeats: int, contenders: list[Contender]
) -> dict[str, Any]:
    """Every contender `repeats` times, interleaved, each with a fresh group and lake folder."""
    base_env = child_environment(tmp)
    _run_processes("warm", [{}], {**base_env, "METRIFY_LAKE_URL": (tmp / "lake-warm").as_uri()})
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in contenders}
    for attempt in range(1, repeats + 1):
        for contender in contenders:
            lake = tmp / f"lake-{topics.broker}-{contender.name}-{attempt}"
            spec = _spec(contender, topics, attempt, lake, total, batch_size)
            env = {**base_env, "METRIFY_LAKE_URL": lake.as_uri()}
            if contender.kind == "provider":  # its connection, the way Airflow reads one from the environment
                connection = peer_provider.connection(topics.extra, group_id=f"bench-provider-{attempt}")
                env[peer_provider.connection_variable(spec["conn_id"])] = json.dumps(connection)
            run = _child(contender, spec, env, topics.broker_pid)
            shutil.rmtree(lake, ignore_errors=True)
            runs[contender.name].append(run)
            print(f"  [{attempt}/{repeats}] {contender.label}: {_describe_run(contender.kind, run)}", flush=True)
            complete = contender.kind != "drain" or run["valid_rows"] + run["quarantined"] == total
            if run["messages"] != total or not complete:
                raise RuntimeError(
                    f"{contender.name} lost messages on the {topics.broker} broker: produced {total}, got {run}"
                )
    best = {name: max(found, key=lambda r: r["rate"]) for name, found in runs.items()}
    stages = run_stage_profile(topics, tmp, total, batch_size, base_env, runs.get("drain_one_process", runs["drain"]))
    ceiling = max(best[name]["rate"] for name in ("raw", "raw_parallel") if name in best)
    drain = best["drain"]["rate"]  # over `processes` processes
    single = best.get("drain_one_process", best["drain"])["rate"]  # in one process
    ratios: dict[str, float] = {"drain_to_raw": round(drain / ceiling, 3)}
    if "drain_one_process" in best:
        ratios["drain_one_process_to_raw"] = round(single / ceiling, 3)
    if "provider" in best:
        # process for process: the operator is one task in one process, so is this drain
        provider = best["provider"]["rate"]
        ratios["drain_to_provider"] = round(single / provider, 2)
        if "drain_one_process" in best:
            ratios["drain_processes_to_provider"] = round(drain / provider, 2)
        after_first = [rate for rate in map(_rate_after_first_batch, runs["provider"]) if rate is not None]
        if after_first:  # the provider's rate once its group is joined and its first batch read
            ratios["drain_to_provider_after_first_batch"] = round(single / max(after_first), 2)
    peak = {name: max(r["peak_rss_mib"] for r in found) for name, found in runs.items()}
    return {
        "broker": topics.description,
        "topics": topics.topics,
        "partitions": len(topics.pairs),
        "produce_seconds": round(topics.produce_seconds, 1),
        "contenders": {c.name: {"label": c.label, "processes": c.processes} for c in contenders},
        "runs": runs,
        "best": best,
        "best_rates": {name: round(run["rate"]) for name, run in best.items()},
        "ceiling_rate": round(ceiling),
        "all_rates": {name: [round(r["rate"]) for r in found] for name, found in runs.items()},
        "ratios": ratios,
        "stage_profile": stages,
        "peak_rss_mib": peak,
        "targets_met": {
            "drain_to_raw": ratios["drain_to_raw"] >= TARGETS["drain_to_raw"],
            "drain_to_provider": ratios["drain_to_provider"] >= TARGETS["drain_to_provider"]
            if "drain_to_provider" in ratios
            else None,
            "drain_peak_rss_mib": peak["drain"] < TARGETS["drain_peak_rss_mib"],
        },
    }


def run_stage_profile(
    topics: Topics, tmp: Path, total: int, batch_size: int, env: dict[str, str], drain: list[dict[str, Any]]
) -> dict[str, Any]:
    """The drain's stages one after another in one thread, in CPU microseconds per message, once,
    after the timed runs; beside the drain's own CPU per message in one process, all threads
    (`drain`: its runs; the lowest and the highest)."""
    contender = Contender("stages", "stages", 1, "stage profile")
    lake = tmp / f"lake-{topics.broker}-stages"
    spec = _spec(contender, topics, 0, lake, total, batch_size)
    found = _child(contender, spec, {**env, "METRIFY_LAKE_URL": lake.as_uri()}, topics.broker_pid)
    shutil.rmtree(lake, ignore_errors=True)
    if found["messages"] != total or found["valid_rows"] + found["quarantined"] != total:
        raise RuntimeError(
            f"the stage profile lost messages on the {topics.broker} broker: produced {total}, got {found}"
        )
    per_message = {stage: round(cpu * 1e6 / total, 2) for stage, cpu in found["stage_cpu_seconds"].items()}
    profile = {
        "stages": STAGES,
        "cpu_us_per_message": per_message,
        "stages_us_per_message": round(sum(per_message.values()), 2),
        "drain_us_per_message": [
            round(f(r["cpu_seconds"] * 1e6 / r["messages"] for r in drain), 2) for f in (min, max)
        ],
        "run": found,
    }
    print(f"  stage profile: {describe_stages(profile)}", flush=True)
    return profile


def describe_stages(profile: dict[str, Any]) -> str:
    per_message = profile["cpu_us_per_message"]
    stages = ", ".join(f"{name} {per_message[name]}" for name in STAGES)
    return (
        f"CPU µs per message, one thread: {stages} = {profile['stages_us_per_message']} "
        f"in {profile['run']['seconds']:.2f} s (the drain in one process, all threads: "
        f"{profile['drain_us_per_message'][0]} to {profile['drain_us_per_message'][1]})"
    )


def run(
    messages: int,
    batch_size: int,
    poison_rate: float,
    repeats: int = 3,
    brokers: tuple[str, ...] = ("real", "mock"),
    processes: int | None = None,
) -> dict[str, Any]:
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    processes = processes or os.cpu_count() or 1
    contenders = contenders_for(processes, provider=poison_rate == 0)
    started = time.perf_counter()
    backlog = simulate_backlog(messages, poison_rate)
    total = len(backlog.values)
    print(f"simulated {total:,} messages ({backlog.avg_bytes:.0f} B each) in {time.perf_counter() - started:.1f} s")
    if poison_rate:
        print("poison messages in the backlog: the provider's operator (no validation) is left out")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="metrify-bench-") as tmp_name:
        for broker in brokers:
            tmp = Path(tmp_name) / broker
            tmp.mkdir()
            setup = real_broker if broker == "real" else mock_broker
            with setup(tmp, backlog) as topics:
                print(f"{broker} broker: {topics.description}; produced in {topics.produce_seconds:.1f} s", flush=True)
                results[broker] = measure(topics, tmp, total, batch_size, repeats, contenders)
    settings = load_settings()
    return {
        "benchmark": "ingest_meter_readings: raw consume vs the drain vs the Airflow Kafka provider's operator",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "messages": total,
        "avg_message_bytes": round(backlog.avg_bytes),
        "poison_rate": poison_rate,
        "repeats": repeats,
        "processes": processes,
        "drain": {"batch_size": batch_size, "batch_bytes": settings.batch_bytes},
        "provider": {
            "package": f"apache-airflow-providers-apache-kafka {version('apache-airflow-providers-apache-kafka')}",
            "operator": "ConsumeFromTopicOperator",
            "max_batch_size": peer_provider.MAX_BATCH_SIZE,
            "commit_cadence": peer_provider.COMMIT_CADENCE,
            "apply_function_batch": "json.loads + pyarrow.Table.from_pylist + zstd Parquet per batch",
        },
        "targets": {
            "drain_to_raw": f">= {TARGETS['drain_to_raw']} (real broker; the drain in {processes} process(es) "
            "against the better raw consume)",
            "drain_to_provider": f">= {TARGETS['drain_to_provider']} (real broker; one drain process against the "
            "operator's one task)",
            "drain_peak_rss_mib": f"< {TARGETS['drain_peak_rss_mib']}",
        },
        "brokers": results,
    }


def table(result: dict[str, Any]) -> str:
    """The readable summary: one line per broker and contender, then the ratios."""
    lines = [
        f"{result['messages']:,} messages of {result['avg_message_bytes']} B, best of {result['repeats']} "
        f"(load average {result['machine']['load_average_at_start']} at start, "
        f"{result['machine']['load_average_at_end']} at end, {result['machine']['cpus']} cores)",
        f"{'broker':<6} {'contender':<30} {'best msg/s':>11}  {'all runs (msg/s)':<22} {'CPU s':>6} "
        f"{'broker CPU s':>12} {'peak RSS MiB':>12}",
    ]
    for broker, found in result["brokers"].items():
        for name, best in found["best"].items():
            runs = ", ".join(f"{rate / 1000:,.0f}k" for rate in found["all_rates"][name])
            lines.append(
                f"{broker:<6} {found['contenders'][name]['label']:<30} {best['rate']:>11,.0f}  {runs:<22} "
                f"{best['cpu_seconds']:>6} {best.get('broker_cpu_seconds', ''):>12} {found['peak_rss_mib'][name]:>12}"
            )
    for broker, found in result["brokers"].items():
        ratios, met = found["ratios"], found["targets_met"]
        processes = found["contenders"]["drain"]["processes"]
        text = f"{broker}: drain/raw {ratios['drain_to_raw']} ({processes} drain process(es) against the ceiling; "
        text += f"target >= {TARGETS['drain_to_raw']}: " + ("met" if met["drain_to_raw"] else "missed")
        if "drain_to_provider" in ratios:
            text += f"), drain/provider {ratios['drain_to_provider']} (one process each; "
            text += f"target >= {TARGETS['drain_to_provider']}: " + ("met" if met["drain_to_provider"] else "missed")
            if "drain_to_provider_after_first_batch" in ratios:
                text += f"; {ratios['drain_to_provider_after_first_batch']} against its rate after the first batch"
        text += ")"
        if "drain_one_process_to_raw" in ratios:
            text += f"; drain in 1 process/raw {ratios['drain_one_process_to_raw']}"
        if "drain_processes_to_provider" in ratios:
            text += f"; {processes} drain processes/provider {ratios['drain_processes_to_provider']}"
        lines.append(text)
        lines.append(f"{broker}: {describe_stages(found['stage_profile'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=load_settings().batch_size, help="the drain's batch size")
    parser.add_argument(
        "--poison-rate", type=float, default=0.0, help="poison messages per reading (> 0 leaves the provider out)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each contender; the best counts")
    parser.add_argument(
        "--brokers", default="real,mock", help="comma-separated: real (Kafka 4.4, needs java and mvn), mock"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes the drain's partitions (and the parallel raw consume's) are spread over",
    )
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench-results" / "ingest.json")
    args = parser.parse_args(argv)
    brokers = tuple(b.strip() for b in args.brokers.split(",") if b.strip())
    if not brokers or set(brokers) - {"real", "mock"}:
        parser.error("--brokers takes real, mock or both")
    result = run(args.messages, args.batch_size, args.poison_rate, args.repeats, brokers, args.processes)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
