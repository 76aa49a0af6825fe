"""`make bench`'s ingestion benchmark end to end, reduced: the mock broker, a small backlog, one
repeat. The full run (the real broker, 1 M messages, three repeats) is `make bench`."""

from __future__ import annotations

from typing import Any

import pytest

from metrify_dev.bench import ingest

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return ingest.run(messages=4_000, batch_size=1_000, poison_rate=0.0, repeats=1, brokers=("mock",), processes=2)


def test_every_contender_reads_the_whole_backlog_and_the_report_says_so(result: dict[str, Any]) -> None:
    mock = result["brokers"]["mock"]
    assert set(mock["best"]) == {"raw", "raw_parallel", "drain_one_process", "drain", "provider"}
    for name, run in mock["best"].items():
        assert run["messages"] == result["messages"] == 3_936, name  # 41 meters x 96 readings
        assert run["peak_rss_mib"] > 0 and run["seconds"] > 0
    assert mock["best"]["drain"]["valid_rows"] == mock["best"]["drain_one_process"]["valid_rows"] == 3_936
    assert set(mock["ratios"]) >= {
        "drain_to_raw",
        "drain_to_provider",
        "drain_one_process_to_raw",
        "drain_processes_to_provider",
    }
    best = mock["best"]
    ceiling = max(best["raw"]["rate"], best["raw_parallel"]["rate"])
    assert mock["ceiling_rate"] == round(ceiling)
    assert mock["ratios"]["drain_to_raw"] == round(best["drain"]["rate"] / ceiling, 3)
    # process for process: one drain process against the operator's one task
    assert mock["ratios"]["drain_to_provider"] == round(best["drain_one_process"]["rate"] / best["provider"]["rate"], 2)
    assert result["machine"]["cpus"] and len(result["machine"]["load_average_at_start"]) == 3
    table = ingest.table(result)
    assert "provider operator" in table and "drain/provider" in table and "2 processes" in table


def test_a_parallel_run_counts_every_process_and_its_whole_span(result: dict[str, Any]) -> None:
    drain = result["brokers"]["mock"]["best"]["drain"]
    processes = drain["per_process"]
    assert drain["processes"] == len(processes) == 2
    assert all(p["messages"] > 0 for p in processes)  # the 4 partitions dealt out over both
    assert drain["messages"] == sum(p["messages"] for p in processes) == 3_936
    assert drain["seconds"] == max(p["ended_at"] for p in processes) - min(p["started_at"] for p in processes)
    # each process times its work with its own monotonic clock: equal up to clock resolution
    assert drain["seconds"] >= max(p["seconds"] for p in processes) - 1e-3
    assert drain["cpu_seconds"] == pytest.approx(sum(p["cpu_seconds"] for p in processes), abs=0.011)


def test_poison_leaves_the_provider_out() -> None:
    result = ingest.run(messages=2_000, batch_size=1_000, poison_rate=0.01, repeats=1, brokers=("mock",), processes=1)

    mock = result["brokers"]["mock"]
    assert set(mock["best"]) == {"raw", "drain"}
    assert mock["best"]["drain"]["quarantined"] > 0
    assert mock["targets_met"]["drain_to_provider"] is None


def test_the_stage_profile_runs_every_message_through_every_stage(result: dict[str, Any]) -> None:
    profile = result["brokers"]["mock"]["stage_profile"]
    run = profile["run"]
    assert run["messages"] == run["valid_rows"] == 3_936 and run["quarantined"] == 0
    assert list(profile["cpu_us_per_message"]) == ["read", "decode", "write"]
    for stage, seconds in run["stage_cpu_seconds"].items():
        assert seconds > 0, stage
        assert profile["cpu_us_per_message"][stage] == round(seconds * 1e6 / 3_936, 2)
    # the stages run one after another inside the timed work: together no more than its CPU time
    assert sum(run["stage_cpu_seconds"].values()) <= run["cpu_seconds"] + 0.011
    assert profile["stages_us_per_message"] == round(sum(profile["cpu_us_per_message"].values()), 2)
    drain = [run["cpu_seconds"] * 1e6 / 3_936 for run in result["brokers"]["mock"]["runs"]["drain_one_process"]]
    assert profile["drain_us_per_message"] == [round(min(drain), 2), round(max(drain), 2)]
    assert "one thread: read" in ingest.table(result)
