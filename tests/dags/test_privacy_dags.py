"""Wiring of the privacy DAGs: a manual erasure with a checked meter id, a daily retention run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from metrify import validate

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


def _dag(name: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER / f"{name}.py"))
    assert bag.import_errors == {}
    return bag.dags[name]


def test_erase_meter_runs_only_when_triggered_and_checks_the_meter_id() -> None:
    dag = _dag("erase_meter")
    assert dag.schedule is None and dag.max_active_runs == 1
    assert [t.task_id for t in dag.tasks] == ["erase"]
    schema = dag.params.get_param("meter_id").schema
    assert schema["pattern"] == f"^{validate.METER_ID_PATTERN}$"
    pattern = re.compile(schema["pattern"])
    assert pattern.match("DE0000011011500000000000000000001")
    assert not pattern.match("x' OR '1'='1") and not pattern.match("")
    with pytest.raises(Exception, match="does not match"):  # refused when triggered
        dag.params.get_param("meter_id").resolve("a b")


def test_apply_retention_runs_daily() -> None:
    dag = _dag("apply_retention")
    assert dag.schedule == "15 4 * * *" and not dag.catchup
    assert [t.task_id for t in dag.tasks] == ["remove_expired_partitions"]


def test_apply_retention_documents_every_layers_setting_the_substituted_one_included() -> None:
    """On-call reads the DAG's docs to find a layer's setting: each layer with a retention
    (`metrify.config.RETENTION_DEFAULTS`) is named there, substitute values included."""
    from metrify.config import RETENTION_DEFAULTS

    doc = _dag("apply_retention").doc_md
    assert "substituted" in RETENTION_DEFAULTS
    missing = [layer for layer in RETENTION_DEFAULTS if f"_{layer.upper()}`" not in doc]
    assert missing == [], f"apply_retention's docs do not name the retention setting of {missing}"
