"""Late publication: a scheduled run re-polls a trailing window; data still missing after the
publisher's delay fails the task, data still inside the delay waits for the next run.

The `live` tests call the task functions as the DAGs do (connections from `AIRFLOW_CONN_*`, the
wall clock) against fake APIs that run on the same wall clock.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from metrify import lake
from metrify.contracts.geography import CITY_BY_NAME, TSOS
from metrify.sources import entsoe, grid, tasks, weather
from metrify.sources.grid import SourceFailed
from metrify_dev.fakes import start_fakes
from tests.fake_apis import DAY, FAST, NOW, endpoint

QUARTER, HOUR = timedelta(minutes=15), timedelta(hours=1)
LIVE_CITIES = ("Berlin", "München")


def _boundary(step: timedelta) -> datetime:
    """The last `step` boundary before now; waits out the last 20 s before the next one, so a
    test's runs never straddle a boundary."""
    now = datetime.now(UTC)
    floor = pd.Timestamp(now).floor(step).to_pydatetime()
    if floor + step - now < timedelta(seconds=20):
        time.sleep((floor + step - now).total_seconds() + 0.5)
        floor += step
    return floor


def _files(root: Any, *parts: str) -> dict[str, datetime]:
    """Raw files below root/raw/... and the ingested_at they hold (one value per file)."""
    folder = root / "raw"
    for part in parts:
        folder = folder / part
    out = {}
    for path in lake.list_files(folder):
        ingested = pq.read_table(path, columns=["ingested_at"]).column(0).to_pylist()
        assert len(set(ingested)) == 1
        out[path] = ingested[0]
    return out


def _period(ts: datetime) -> str:
    return ts.strftime("%Y%m%d%H%M")


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch, lake_root: Any) -> Iterator[Any]:
    """Fake APIs on the wall clock, published as the Airflow connections the task functions read."""
    stack = start_fakes(seed=42, client_extra=FAST)
    for conn_id, conn in stack.connections.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    monkeypatch.setenv("METRIFY_WEATHER_CITIES", ",".join(LIVE_CITIES))
    yield stack
    stack.stop()


# --- defect 1: a scheduled run polls a trailing window, in one request per document -----------


def test_a_scheduled_grid_run_repolls_the_trailing_window_in_one_request(live, lake_root) -> None:
    end = _boundary(QUARTER)
    start = end - QUARTER
    frequency = tasks.frequency_task(start, end, {})
    summary = tasks.grid_operator_task("TenneT", frequency, start, end, {})
    a65 = [r.params for r in live["entsoe"].requests if r.params.get("documentType") == "A65"]
    assert [(p["periodStart"], p["periodEnd"]) for p in a65] == [(_period(end - 3 * HOUR), _period(end))]
    assert len(live["entsoe"].requests) == 3 and len(live["gridradar"].requests) == 1  # A65, A75, A68
    assert len(frequency) == 12 and summary["rows"] == 12
    assert len(_files(lake_root, "grid_status", "operator=TenneT")) == 12


def test_a_scheduled_dwd_run_repolls_the_trailing_window_owm_only_its_own_hour(live, lake_root) -> None:
    end = _boundary(HOUR)
    start = end - HOUR
    dwd = tasks.weather_source_task("dwd", start, end, {})
    dates = [(r.params["date"], r.params["last_date"]) for r in live["brightsky"].requests]
    first, last = (end - 6 * HOUR).isoformat(), (end - HOUR).isoformat()
    assert dates == [(first, last)] * len(LIVE_CITIES), "one request per city for the whole window"
    assert dwd["rows"] == 6 * len(LIVE_CITIES)
    owm = tasks.weather_source_task("openweathermap", start, end, {})
    assert owm["rows"] == len(LIVE_CITIES) and len(live["openweathermap"].requests) == len(LIVE_CITIES)


def test_a_manual_window_overrides_the_trailing_window(live, lake_root) -> None:
    end = _boundary(QUARTER) - 2 * HOUR
    params = {"window_start": (end - HOUR).isoformat(), "window_end": end.isoformat()}
    frequency = tasks.frequency_task(None, None, params)
    summary = tasks.grid_operator_task("Amprion", frequency, None, None, params)
    a65 = [r.params for r in live["entsoe"].requests if r.params.get("documentType") == "A65"]
    assert [(p["periodStart"], p["periodEnd"]) for p in a65] == [(_period(end - HOUR), _period(end))]
    assert summary["rows"] == 4


# --- defect 1 + 3: late quarter-hours wait for the next run, which overwrites the same files ---


def test_late_quarter_hours_land_on_the_next_run_in_the_same_files(live, lake_root, caplog) -> None:
    live["entsoe"].inject("late", minutes=60)  # ENTSO-E publishes the newest hour late
    end = _boundary(QUARTER)
    caplog.set_level(logging.INFO)
    first = {}
    for operator in TSOS:
        frequency = tasks.frequency_task(end - QUARTER, end, {})
        first[operator] = tasks.grid_operator_task(operator, frequency, end - QUARTER, end, {})
    assert {s["rows"] for s in first.values()} == {8}, "the published quarter-hours land, the run succeeds"
    assert first["TenneT"]["pending_quarters"] == [(end - k * QUARTER).isoformat() for k in (4, 3, 2, 1)]
    assert "not yet published" in caplog.text and "next runs re-poll" in caplog.text
    landed = _files(lake_root, "grid_status")
    assert len(landed) == 4 * 8

    live["entsoe"].clear()  # ... now ENTSO-E has published them
    for operator in TSOS:  # the next scheduled run
        frequency = tasks.frequency_task(end, end + QUARTER, {})
        tasks.grid_operator_task(operator, frequency, end, end + QUARTER, {})
    after = _files(lake_root, "grid_status")
    assert len(after) == 4 * 12 and set(landed) <= set(after)
    oldest = (end - 3 * HOUR + QUARTER).strftime("%Y%m%dT%H%M.parquet")  # outside the next run's window
    repolled = [p for p in landed if not p.endswith(oldest)]
    assert len(repolled) == 4 * 7 and all(after[p] > landed[p] for p in repolled), "re-polled files are rewritten"
    frame = lake.read_table(lake_root / "raw" / grid.DATASET).to_pandas()
    assert len(frame) == 4 * 12 and not frame.duplicated(["operator_name", "reading_ts"]).any()
    assert frame["frequency_hz"].notna().all() and frame["load_mw"].notna().all()


def test_late_dwd_hours_land_on_the_next_run_in_the_same_files(live, lake_root, caplog) -> None:
    live["brightsky"].inject("late", minutes=180)  # DWD's two newest hourly observations are not out yet
    end = _boundary(HOUR)
    caplog.set_level(logging.INFO)
    summary = tasks.weather_source_task("dwd", end - HOUR, end, {})
    assert summary["rows"] == 4 * len(LIVE_CITIES)
    assert "not yet published" in caplog.text and "Berlin" in caplog.text
    landed = _files(lake_root, "weather", "source=dwd")
    assert len(landed) == 4

    live["brightsky"].clear()
    tasks.weather_source_task("dwd", end - HOUR, end, {})  # a later run of the same interval
    after = _files(lake_root, "weather", "source=dwd")
    assert len(after) == 6 and set(landed) <= set(after) and all(after[p] > landed[p] for p in landed)
    frame = lake.read_table(lake_root / "raw" / weather.DATASET).to_pandas()
    assert len(frame) == 6 * len(LIVE_CITIES) and not frame.duplicated(["city", "source", "observed_at"]).any()


# --- defect 1: quarter-hours missing past the publication delay fail the task ----------------


def test_quarter_hours_missing_past_the_publication_delay_fail_naming_them(clean_fakes, lake_root) -> None:
    # The fake's clock stops at NOW: the quarter-hours after it are never published, and by the
    # wall clock they are days older than ENTSO-E's one-hour publication delay.
    freq = grid.fetch_frequency(endpoint(clean_fakes, "gridradar_api"), NOW - HOUR, NOW)
    with pytest.raises(SourceFailed) as info:
        grid.ingest_operator(
            "TenneT", NOW - 30 * timedelta(minutes=1), NOW + HOUR, endpoint(clean_fakes, "entsoe_api"), freq, lake_root
        )
    message = str(info.value)
    assert message.startswith("TenneT (10YDE-EON------1): ENTSO-E has not published")
    assert "4 quarter-hours" in message and "2026-11-23 06:00–07:00 UTC" in message
    assert "connection 'entsoe_api'" in message and "RUNBOOK" in message
    assert len(lake.list_files(lake_root / "raw" / grid.DATASET)) == 2, "the published ones still land"


def test_quarter_hours_inside_the_publication_delay_do_not_fail(clean_fakes, lake_root) -> None:
    summary = grid.ingest_operator(
        "50Hertz", NOW - HOUR, NOW + HOUR, endpoint(clean_fakes, "entsoe_api"), {}, lake_root, now=NOW + HOUR
    )
    assert summary["rows"] == 4 and len(summary["pending_quarters"]) == 4 and summary["missing_quarters"] == []
    with pytest.raises(SourceFailed, match="4 quarter-hours"):  # one quarter-hour past the delay, they fail
        grid.ingest_operator(
            "50Hertz", NOW - HOUR, NOW + HOUR, endpoint(clean_fakes, "entsoe_api"), {}, lake_root, now=NOW + 3 * HOUR
        )


def test_entsoe_without_any_published_quarter_hour_inside_the_delay_waits(clean_fakes, lake_root) -> None:
    later = NOW + HOUR
    summary = grid.ingest_operator(
        "TenneT", later, later + QUARTER, endpoint(clean_fakes, "entsoe_api"), {}, lake_root, now=later + QUARTER
    )
    assert summary["rows"] == 0 and summary["pending_quarters"] == [later.isoformat()]


def test_a_repoll_without_a_frequency_keeps_the_landed_one(clean_fakes, lake_root) -> None:
    start, end = DAY + 9 * HOUR, DAY + 10 * HOUR
    ep = endpoint(clean_fakes, "entsoe_api")
    frequency = grid.fetch_frequency(endpoint(clean_fakes, "gridradar_api"), start, end)
    grid.ingest_operator("Amprion", start, end, ep, frequency, lake_root, now=NOW)
    columns = ["reading_ts", "frequency_hz", "grid_stability_score"]
    first = lake.read_table(lake_root / "raw" / grid.DATASET).to_pandas()[columns].sort_values("reading_ts")
    grid.ingest_operator("Amprion", start, end, ep, {}, lake_root, now=NOW)  # gridradar has nothing this time
    second = lake.read_table(lake_root / "raw" / grid.DATASET).to_pandas()[columns].sort_values("reading_ts")
    assert first["frequency_hz"].notna().all()
    pd.testing.assert_frame_equal(first.reset_index(drop=True), second.reset_index(drop=True))


# --- defect 2: DWD answering nothing for an hour that should exist is a failure -------------

CITIES = [CITY_BY_NAME["Berlin"], CITY_BY_NAME["Köln"]]


def test_dwd_hours_missing_past_the_publication_delay_fail_naming_city_hour_connection(clean_fakes, lake_root) -> None:
    start = NOW + HOUR  # Bright Sky (the fake stops at NOW) answers with an empty `weather` list
    with pytest.raises(SourceFailed) as info:
        weather.ingest_source(
            "dwd",
            start,
            start + 2 * HOUR,
            endpoint(clean_fakes, "brightsky_api"),
            lake_root,
            CITIES,
            now=NOW + 6 * HOUR,
        )
    message = str(info.value)
    assert message.startswith("dwd: 2 of 2 cities failed")
    assert "Berlin: no record for 2026-11-23 07:00–09:00 UTC" in message and "Köln" in message
    assert "connection 'brightsky_api'" in message and "RUNBOOK" in message


def test_dwd_hours_inside_the_publication_delay_are_skipped_with_a_log_line(clean_fakes, lake_root, caplog) -> None:
    caplog.set_level(logging.INFO, logger="metrify.sources.weather")
    start = NOW + HOUR
    summary = weather.ingest_source(
        "dwd", start, start + HOUR, endpoint(clean_fakes, "brightsky_api"), lake_root, CITIES, now=start + HOUR
    )
    assert summary["rows"] == 0
    assert "not yet published" in caplog.text and "Berlin 2026-11-23 07:00–08:00 UTC" in caplog.text


def test_an_hour_older_than_the_delay_but_missing_for_one_city_keeps_the_others(clean_fakes, lake_root) -> None:
    clean_fakes["brightsky"].inject("late", times=None, minutes=24 * 60, match="lat=50.9380")  # Köln's station
    with pytest.raises(SourceFailed, match=r"dwd: 1 of 2 cities failed.*Köln: no record for 2026-11-22 14:00–16:00"):
        weather.ingest_source(
            "dwd", DAY + 14 * HOUR, DAY + 16 * HOUR, endpoint(clean_fakes, "brightsky_api"), lake_root, CITIES, now=NOW
        )
    frame = lake.read_table(lake_root / "raw" / weather.DATASET).to_pandas()
    assert sorted(frame["city"]) == ["Berlin", "Berlin"]


def test_a_repoll_never_drops_a_landed_city_it_cannot_replace(clean_fakes, lake_root) -> None:
    window = (DAY + 14 * HOUR, DAY + 16 * HOUR)
    ep = endpoint(clean_fakes, "brightsky_api")
    weather.ingest_source("dwd", *window, ep, lake_root, CITIES, now=NOW)
    clean_fakes["brightsky"].inject("down", match="lat=50.9380")  # Köln fails on the re-poll
    with pytest.raises(SourceFailed, match="Köln"):
        weather.ingest_source("dwd", *window, ep, lake_root, CITIES, now=NOW)
    frame = lake.read_table(lake_root / "raw" / weather.DATASET).to_pandas()
    assert sorted(frame["city"]) == ["Berlin", "Berlin", "Köln", "Köln"]


def test_owm_history_without_data_for_a_past_hour_fails_naming_city_hour_connection(clean_fakes, lake_root) -> None:
    start = NOW + HOUR  # the fake's timemachine has nothing after its clock
    with pytest.raises(SourceFailed) as info:
        weather.ingest_source(
            "openweathermap",
            start,
            start + HOUR,
            endpoint(clean_fakes, "openweathermap_api"),
            lake_root,
            CITIES[:1],
            now=NOW + 6 * HOUR,
        )
    message = str(info.value)
    assert "Berlin: no record for 2026-11-23 07:00–08:00 UTC" in message
    assert "connection 'openweathermap_api'" in message
    assert lake.read_table(lake_root / "quarantine" / weather.DATASET) is None, "no data is not a bad payload"


# --- defect 3: the fakes publish late on request ----------------------------------------------


def test_the_late_fault_hides_the_newest_minutes_until_published(clean_fakes) -> None:
    fake = clean_fakes["entsoe"]
    fake.inject("late", minutes=60, delay=1.0, match=entsoe.CONTROL_AREAS["TenneT"])
    ep = endpoint(clean_fakes, "entsoe_api")
    from metrify.sources.http import HttpClient

    client = HttpClient(ep)
    late = entsoe.fetch_actual_load(client, entsoe.CONTROL_AREAS["TenneT"], NOW - 2 * HOUR, NOW)
    other = entsoe.fetch_actual_load(client, entsoe.CONTROL_AREAS["Amprion"], NOW - 2 * HOUR, NOW)
    assert len(late) == 4 and late.index.max() == pd.Timestamp(NOW - HOUR - QUARTER) and len(other) == 8
    time.sleep(1.1)  # published after `delay` seconds
    assert len(entsoe.fetch_actual_load(client, entsoe.CONTROL_AREAS["TenneT"], NOW - 2 * HOUR, NOW)) == 8
    bright = clean_fakes["brightsky"]
    bright.inject("late", minutes=120)
    records = weather.brightsky.fetch_hourly(
        HttpClient(endpoint(clean_fakes, "brightsky_api")), 52.52, 13.405, NOW - 4 * HOUR, NOW
    )
    assert [r["observed_at"] for r in records] == [NOW - 4 * HOUR, NOW - 3 * HOUR, NOW - 2 * HOUR]
