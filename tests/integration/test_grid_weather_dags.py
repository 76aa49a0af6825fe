"""One `airflow dags test` of `ingest_grid_status` against the fake APIs, with faults.

Amprion's ENTSO-E answers are down for the whole run, TenneT's first request gets a 503 and
gridradar's first a 429: the run must land the other three operators, fail only Amprion's
mapped task with a message naming the connection, emit asset events, and never print a key.
The weather DAG shares all its wiring with this one; its logic is covered in tests/unit.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from metrify import lake
from metrify.config import load_settings
from metrify.sources import entsoe, grid
from metrify_dev import airflow_env
from metrify_dev.fakes import start_fakes

pytestmark = pytest.mark.airflow

DAY = datetime(2026, 11, 22, tzinfo=UTC)


def _all_text(folder: Path) -> str:
    if not folder.exists():
        return ""
    return "\n".join(
        p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file() and p.suffix in {".log", ".json", ""}
    )


def _dags_test(settings, stack, dag_id: str, *args: str) -> str:
    """`airflow dags test <dag_id> <args>` against the fakes; its whole output."""
    airflow_env.ensure_db(settings)
    run = airflow_env.airflow(
        "dags", "test", dag_id, *args, settings=settings, check=False, capture=True, extra_connections=stack.connections
    )
    return run.stdout + run.stderr


def test_grid_dag_lands_three_operators_while_one_is_down_and_never_logs_a_key(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("METRIFY_HOME", str(tmp_path / "metrify"))
    monkeypatch.delenv("METRIFY_LAKE_URL", raising=False)
    monkeypatch.setenv("METRIFY_TASK_RETRIES", "0")  # one try per task: failures show at once
    settings = load_settings()
    start, end = DAY + timedelta(hours=6), DAY + timedelta(hours=8)
    stack = start_fakes(
        seed=42,
        anchor=DAY,
        now=lambda: DAY + timedelta(days=1),
        client_extra={"backoff_base": 0.05, "backoff_max": 0.2, "attempts": 3, "timeout": 5},
    )
    try:
        stack["entsoe"].inject("down", match=entsoe.CONTROL_AREAS["Amprion"])
        stack["entsoe"].inject("5xx", times=1, match=entsoe.CONTROL_AREAS["TenneT"])
        stack["gridradar"].inject("429", retry_after=1)
        keys = [c["password"] for c in stack.connections.values() if c.get("password")]
        output = _dags_test(
            settings,
            stack,
            "ingest_grid_status",
            start.isoformat(),
            "-c",
            json.dumps({"window_start": start.isoformat(), "window_end": end.isoformat()}),
        )
    finally:
        stack.stop()
    tail = output[-5000:]

    logs = output + _all_text(settings.airflow_home / "logs") + _all_text(settings.home / "lake")
    for key in keys:
        assert key not in logs, "an API key reached the task logs"

    root = lake.lake_root(settings)
    for operator in ("TenneT", "50Hertz", "TransnetBW"):
        files = lake.list_files(root / "raw" / grid.DATASET / f"operator={operator}")
        assert len(files) == 8, f"{operator}: {len(files)} files\n{tail}"
    assert lake.list_files(root / "raw" / grid.DATASET / "operator=Amprion") == []
    assert "DagRun failed" in output, tail
    assert "10YDE-RWENET---I" in output and "connection 'entsoe_api'" in output and "HTTP 503" in output
    assert "securityToken=%2A%2A%2A" in output, "redacted requests are what the log shows"

    with sqlite3.connect(settings.airflow_home / "airflow.db") as db:
        events = db.execute(
            "select count(*) from asset_event e join asset a on a.id = e.asset_id "
            "where a.uri = 'metrify://lake/raw/grid_status'"
        ).fetchone()[0]
        states = dict(
            db.execute("select rendered_map_index, state from task_instance where task_id = 'land_operator'").fetchall()
        )
    assert events >= 3, f"expected an asset event per landed operator, got {events}"
    assert states == {"TenneT": "success", "50Hertz": "success", "Amprion": "failed", "TransnetBW": "success"}


def test_scheduled_grid_runs_fetch_late_quarter_hours_into_the_same_files(tmp_path, monkeypatch) -> None:
    """Two scheduled runs (no window params) on the wall clock: ENTSO-E holds back its newest
    hour during the first, which lands the rest and succeeds; the second, after publication,
    lands the late quarter-hours and rewrites the overlapping files, without duplicates."""
    monkeypatch.setenv("METRIFY_HOME", str(tmp_path / "metrify"))
    monkeypatch.delenv("METRIFY_LAKE_URL", raising=False)
    monkeypatch.setenv("METRIFY_TASK_RETRIES", "0")
    settings = load_settings()
    root = lake.lake_root(settings)
    now = datetime.now(UTC)
    end = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    if end + timedelta(minutes=15) - now < timedelta(seconds=60):  # do not straddle a quarter-hour
        time.sleep((end + timedelta(minutes=15) - now).total_seconds() + 1)
        end += timedelta(minutes=15)
    stack = start_fakes(seed=42, client_extra={"backoff_base": 0.05, "backoff_max": 0.2, "attempts": 3, "timeout": 5})

    def scheduled_run(logical_date: datetime) -> str:
        return _dags_test(settings, stack, "ingest_grid_status", logical_date.isoformat())

    def landed() -> dict[str, object]:
        files = lake.list_files(root / "raw" / grid.DATASET)
        return {f: pq.read_table(f, columns=["ingested_at"]).column(0)[0].as_py() for f in files}

    try:
        stack["entsoe"].inject("late", minutes=60)
        first_output = scheduled_run(end)  # data interval [end - 15 min, end)
        first = landed()
        stack["entsoe"].clear()  # ENTSO-E publishes the late hour
        second_output = scheduled_run(end + timedelta(minutes=15))
        second = landed()
    finally:
        stack.stop()
    assert "DagRun failed" not in first_output and "not yet published" in first_output, first_output[-5000:]
    assert len(first) == 4 * 8, f"{len(first)} files after the first run\n{first_output[-5000:]}"
    assert "DagRun failed" not in second_output, second_output[-5000:]
    assert len(second) == 4 * 12 and set(first) <= set(second), f"{len(second)} files\n{second_output[-5000:]}"
    oldest = (end - timedelta(hours=3) + timedelta(minutes=15)).strftime("%Y%m%dT%H%M.parquet")
    repolled = [f for f in first if not f.endswith(oldest)]
    assert len(repolled) == 4 * 7 and all(second[f] > first[f] for f in repolled)
    frame = lake.read_table(root / "raw" / grid.DATASET).to_pandas()
    assert len(frame) == 4 * 12 and not frame.duplicated(["operator_name", "reading_ts"]).any()


def test_forecast_dag_lands_tomorrows_weather_per_source_and_quarantines_a_drifted_city(tmp_path, monkeypatch) -> None:
    """`ingest_weather_forecast` as `metrify run` runs it: as of the window's end, the fakes' clock
    there. OpenWeatherMap's answer for München drifts: that mapped task fails naming city and
    connection after landing the other cities; DWD's task lands every city and emits its asset event."""
    from metrify.contracts.forecast import WEATHER_FORECAST_DATASET
    from metrify.contracts.geography import CITY_BY_NAME
    from metrify.sources.weather_forecast import latest_run

    monkeypatch.setenv("METRIFY_HOME", str(tmp_path / "metrify"))
    monkeypatch.delenv("METRIFY_LAKE_URL", raising=False)
    monkeypatch.setenv("METRIFY_TASK_RETRIES", "0")
    monkeypatch.setenv("METRIFY_WEATHER_CITIES", "Berlin,München,Köln")
    settings = load_settings()
    as_of = DAY + timedelta(hours=23)
    stack = start_fakes(
        seed=42, now=lambda: as_of, client_extra={"backoff_base": 0.05, "backoff_max": 0.2, "attempts": 2}
    )
    try:
        stack["openweathermap"].inject("malformed", times=None, match=f"lat={CITY_BY_NAME['München'].lat:.4f}")
        output = _dags_test(settings, stack, "ingest_weather_forecast", "-c", json.dumps({"as_of": as_of.isoformat()}))
    finally:
        stack.stop()
    tail = output[-5000:]
    root = lake.lake_root(settings)
    issued = latest_run(as_of)
    dwd = lake.read_table(root / "raw" / WEATHER_FORECAST_DATASET / "source=dwd").to_pandas()
    owm = lake.read_table(root / "raw" / WEATHER_FORECAST_DATASET / "source=openweathermap").to_pandas()
    tomorrow = DAY + timedelta(days=1)
    assert set(dwd["city"]) == {"Berlin", "München", "Köln"}, tail
    assert set(owm["city"]) == {"Berlin", "Köln"}, tail
    for frame in (dwd, owm):
        assert set(frame["issued_at"]) == {issued}
        assert frame["valid_at"].min() <= tomorrow and frame["valid_at"].max() >= tomorrow + timedelta(days=1)
    assert "München" in output and "quarantined at" in output and "connection 'openweathermap_api'" in output, tail
    with sqlite3.connect(settings.airflow_home / "airflow.db") as db:
        states = dict(
            db.execute("select rendered_map_index, state from task_instance where task_id = 'land_forecast'").fetchall()
        )
        events = db.execute(
            "select count(*) from asset_event e join asset a on a.id = e.asset_id "
            "where a.uri = 'metrify://lake/raw/weather_forecast'"
        ).fetchone()[0]
    assert states == {"dwd": "success", "openweathermap": "failed"}, tail
    assert events == 1
