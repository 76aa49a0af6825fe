"""The ingestion DAG's reconciliation step."""

from __future__ import annotations

import pytest

from metrify.ingest.tasks import reconcile


def report(partition: int, messages: int, valid: int, quarantined: int) -> dict:
    return {
        "topic": "meter-readings",
        "partition": partition,
        "start_offset": 10,
        "end_offset": 10 + messages,
        "messages": messages,
        "valid_rows": valid,
        "quarantined": quarantined,
        "files": 2,
    }


def test_reconcile_sums_partitions() -> None:
    summary = reconcile([report(0, 100, 98, 2), report(1, 50, 50, 0)])
    assert summary["messages"] == 150 and summary["valid_rows"] == 148 and summary["quarantined"] == 2
    assert summary["offsets"] == {0: [10, 110], 1: [10, 60]}


def test_reconcile_names_the_partition_and_offsets_that_lost_messages() -> None:
    with pytest.raises(RuntimeError, match=r"meter-readings\[1\] offsets 10\.\.59.*RUNBOOK"):
        reconcile([report(0, 100, 98, 2), report(1, 50, 49, 0)])
