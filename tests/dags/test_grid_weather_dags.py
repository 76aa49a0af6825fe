"""The grid and weather polling DAGs: parse cleanly, poll real data intervals, feed the assets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pendulum
import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert not {k: v for k, v in bag.import_errors.items() if "ingest_grid" in k or "ingest_weather" in k}
    return bag.dags


def test_grid_dag_maps_one_task_per_operator_every_15_minutes(dags) -> None:
    dag = dags["ingest_grid_status"]
    start = pendulum.datetime(2026, 11, 22, 10, 0, tz="UTC")
    interval = dag.timetable.infer_manual_data_interval(run_after=start + timedelta(minutes=20))
    assert interval.end - interval.start == timedelta(minutes=15), "each run must poll a real interval"
    land = dag.get_task("land_operator")
    assert [a.uri for a in land.outlets] == ["metrify://lake/raw/grid_status"]
    assert land.op_kwargs_expand_input.value["operator"] == ["TenneT", "50Hertz", "Amprion", "TransnetBW"]
    assert dag.get_task("frequency").downstream_task_ids == {"land_operator"}


def test_weather_dag_maps_one_task_per_source_hourly(dags) -> None:
    dag = dags["ingest_weather"]
    start = pendulum.datetime(2026, 11, 22, 10, 0, tz="UTC")
    interval = dag.timetable.infer_manual_data_interval(run_after=start + timedelta(minutes=20))
    assert interval.end - interval.start == timedelta(hours=1)
    land = dag.get_task("land_source")
    assert [a.uri for a in land.outlets] == ["metrify://lake/raw/weather"]
    assert land.op_kwargs_expand_input.value["source"] == ["dwd", "openweathermap"]


def test_weather_forecast_dag_polls_each_source_after_each_mosmix_run_is_out(dags) -> None:
    from metrify.sources.weather_forecast import AVAILABLE_AFTER, ISSUE_HOURS

    dag = dags["ingest_weather_forecast"]
    day = pendulum.datetime(2026, 11, 22, tz="UTC")
    ends = []
    info = dag.timetable.next_dagrun_info(last_automated_data_interval=None, restriction=_restriction(day))
    for _ in range(4):
        ends.append(info.data_interval.end)
        info = dag.timetable.next_dagrun_info(
            last_automated_data_interval=info.data_interval, restriction=_restriction(day)
        )
    assert sorted(e.hour for e in ends) == sorted((h + AVAILABLE_AFTER.seconds // 3600) % 24 for h in ISSUE_HOURS)
    land = dag.get_task("land_forecast")
    assert [a.uri for a in land.outlets] == ["metrify://lake/raw/weather_forecast"]
    assert land.op_kwargs_expand_input.value["source"] == ["dwd", "openweathermap"]
    assert set(dag.params.keys()) == {"as_of"} and "On failure" in dag.doc_md
    assert "quarantine/weather_forecast/" in dag.doc_md and "runbook.md" in dag.doc_md.lower()
    for task in dag.tasks:
        assert task.owner == "metrify-data-eng" and task.retries >= 1 and task.execution_timeout


def _restriction(day):
    from airflow.timetables.base import TimeRestriction

    return TimeRestriction(earliest=day, latest=None, catchup=True)


@pytest.mark.parametrize("dag_id", ["ingest_grid_status", "ingest_weather"])
def test_on_call_basics(dags, dag_id: str) -> None:
    dag = dags[dag_id]
    assert dag.tags and "On failure" in dag.doc_md
    doc = dag.doc_md.lower()
    assert "trailing window" in doc and "runbook.md" in doc, "say what re-polling does and where to look"
    assert set(dag.params.keys()) == {"window_start", "window_end"}
    for task in dag.tasks:
        assert task.owner == "metrify-data-eng" and task.retries >= 1 and task.execution_timeout


def test_window_resolution() -> None:
    from metrify.sources.tasks import window

    a, b = datetime(2026, 11, 22, 10, tzinfo=UTC), datetime(2026, 11, 22, 11, tzinfo=UTC)
    assert window(a, b, {}) == (a, b)
    assert window(a, b, {}, timedelta(hours=3)) == (b - timedelta(hours=3), b), "scheduled: the trailing window"
    manual = {"window_start": "2026-11-21T00:00:00Z", "window_end": "2026-11-22T00:00:00+00:00"}
    assert window(a, b, manual, timedelta(hours=3)) == (
        datetime(2026, 11, 21, tzinfo=UTC),
        datetime(2026, 11, 22, tzinfo=UTC),
    )
    with pytest.raises(ValueError, match="empty window"):
        window(a, a, None)


def test_repoll_spans_follow_the_settings_and_refuse_to_undercut_the_publication_delay(monkeypatch) -> None:
    from metrify.sources.tasks import repoll_span

    assert repoll_span("entsoe") == timedelta(hours=3) and repoll_span("dwd") == timedelta(hours=6)
    assert repoll_span("openweathermap") == timedelta(0)
    monkeypatch.setenv("METRIFY_GRID_REPOLL_HOURS", "1.25")
    assert repoll_span("entsoe") == timedelta(minutes=75)
    monkeypatch.setenv("METRIFY_WEATHER_REPOLL_HOURS", "2")
    with pytest.raises(ValueError, match=r"METRIFY_WEATHER_REPOLL_HOURS=2 is shorter than the 2 h publication"):
        repoll_span("dwd")
