"""`make bench`'s ingestion benchmark end to end, reduced: the mock broker, a small backlog, one
repeat. The full run (the real broker, 1 M messages, three repeats) is `make bench`."""

from __future__ import annotations

import pytest

from metrify_dev.bench import ingest

pytestmark = pytest.mark.airflow


def test_every_contender_reads_the_whole_backlog_and_the_report_says_so() -> None:
    result = ingest.run(messages=4_000, batch_size=1_000, poison_rate=0.0, repeats=1, brokers=("mock",))

    mock = result["brokers"]["mock"]
    assert set(mock["best"]) == {"raw", "drain", "provider"}
    for kind, run in mock["best"].items():
        assert run["messages"] == result["messages"] == 3_936, kind  # 41 meters x 96 readings
        assert run["peak_rss_mib"] > 0 and run["seconds"] > 0
    assert mock["best"]["drain"]["valid_rows"] == 3_936
    assert set(mock["ratios"]) >= {"drain_to_raw", "drain_to_provider"}
    assert result["machine"]["cpus"] and len(result["machine"]["load_average_at_start"]) == 3
    table = ingest.table(result)
    assert "provider operator" in table and "drain/provider" in table


def test_poison_leaves_the_provider_out() -> None:
    result = ingest.run(messages=2_000, batch_size=1_000, poison_rate=0.01, repeats=1, brokers=("mock",))

    mock = result["brokers"]["mock"]
    assert set(mock["best"]) == {"raw", "drain"}
    assert mock["best"]["drain"]["quarantined"] > 0
    assert mock["targets_met"]["drain_to_provider"] is None
