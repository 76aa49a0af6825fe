"""The forecast_load DAG: daily after warehouse_daily, one task feeding LOAD_FORECAST, docs for on-call."""

from __future__ import annotations

from pathlib import Path

import pendulum
import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "forecast_load.py"))
    assert not bag.import_errors
    return bag.dags["forecast_load"]


def test_runs_daily_after_warehouse_daily_and_forecasts_the_next_day(dag) -> None:
    from metrify.forecast.tasks import target_day

    assert dag.timetable.expression == "30 4 * * *", "after warehouse_daily (02:30) and its 2 h deadline"
    assert str(getattr(dag.timetable.timezone, "name", dag.timetable.timezone)) == "Europe/Berlin"
    due = pendulum.datetime(2026, 11, 27, 4, 30, tz="Europe/Berlin")  # a cron run's interval is the instant it is due
    assert str(target_day(due, due)) == "2026-11-28", "the run on the 27th forecasts the 28th"


def test_one_task_feeds_the_load_forecast_asset(dag) -> None:
    assert [t.task_id for t in dag.tasks] == ["forecast"]
    assert [a.uri for a in dag.get_task("forecast").outlets] == ["metrify://lake/forecast/load_forecast"]


def test_docs_tell_on_call_where_the_plot_is_and_what_a_fallback_means(dag) -> None:
    doc = dag.doc_md
    assert "forecast/plots/date=" in doc and "load_forecast.png" in doc
    assert "fallback_last_week" in doc and "FALLBACK" in doc and "On failure" in doc
