"""Landing weather from the fake APIs: both sources, faults, quarantine, backfill, correlation."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from metrify import lake
from metrify.contracts.geography import CITY_BY_NAME
from metrify.sources import weather
from metrify.sources.grid import SourceFailed
from metrify.sources.http import AuthError, Endpoint
from metrify_dev.simulator import ambient_weather
from tests.fake_apis import DAY, NOW, endpoint

START, END = DAY + timedelta(hours=14), DAY + timedelta(hours=16)
CITIES = [CITY_BY_NAME[n] for n in ("Berlin", "München", "Köln", "Stuttgart")]
CONN = {"dwd": "brightsky_api", "openweathermap": "openweathermap_api"}


def _land(stack, root, source: str, start=START, end=END, **kw) -> dict:
    ep = kw.pop("ep", None) or endpoint(stack, CONN[source])
    return weather.ingest_source(source, start, end, ep, root, cities=CITIES, now=NOW, **kw)


def _raw(root, source: str) -> pd.DataFrame:
    table = lake.read_table(root / "raw" / weather.DATASET / f"source={source}")
    return pd.DataFrame() if table is None else table.to_pandas()


@pytest.mark.parametrize("source", ["dwd", "openweathermap"])
def test_both_sources_land_every_city_and_hour(clean_fakes, lake_root, source: str) -> None:
    summary = _land(clean_fakes, lake_root, source)
    assert summary["rows"] == 8
    frame = _raw(lake_root, source)
    assert len(frame) == 8 and set(frame["city"]) == {c.name for c in CITIES}
    assert sorted(frame["observed_at"].unique()) == [pd.Timestamp(START), pd.Timestamp(START + timedelta(hours=1))]
    files = lake.list_files(lake_root / "raw" / weather.DATASET / f"source={source}")
    assert [f.rsplit("/", 2)[-2:] for f in files] == [
        ["hour=14", "20261122T1400.parquet"],
        ["hour=15", "20261122T1500.parquet"],
    ]
    assert frame["energy_demand_factor"].between(0.8, 2.0).all()


def test_sources_agree_with_the_simulators_weather(clean_fakes, lake_root) -> None:
    _land(clean_fakes, lake_root, "dwd")
    _land(clean_fakes, lake_root, "openweathermap")
    for source in ("dwd", "openweathermap"):
        frame = _raw(lake_root, source)
        for city in CITIES:
            rows = frame[frame["city"] == city.name].sort_values("observed_at")
            model = ambient_weather(pd.DatetimeIndex(rows["observed_at"]), city.lat, 42)
            assert rows["temperature_celsius"].to_numpy() == pytest.approx(
                model["temperature_celsius"].to_numpy(), abs=0.02
            ), (source, city.name)
            assert rows["humidity_percent"].to_numpy() == pytest.approx(model["humidity_percent"].to_numpy(), abs=0.5)


def test_malformed_city_is_quarantined_others_land_task_fails(clean_fakes, lake_root) -> None:
    munich = CITY_BY_NAME["München"]
    clean_fakes["openweathermap"].inject("malformed", times=None, match=f"lat={munich.lat:.4f}")
    with pytest.raises(
        SourceFailed, match=r"openweathermap: 1 of 4 cities failed.*München: missing field data\[0\]\.temp"
    ):
        _land(clean_fakes, lake_root, "openweathermap")
    frame = _raw(lake_root, "openweathermap")
    assert set(frame["city"]) == {"Berlin", "Köln", "Stuttgart"} and len(frame) == 6
    (row,) = lake.read_table(lake_root / "quarantine" / weather.DATASET).to_pylist()
    assert row["subject"] == "München" and row["source"] == "openweathermap"
    assert "appid=%2A%2A%2A" in row["request"] and row["raw_payload"].startswith("{")
    assert clean_fakes.connections["openweathermap_api"]["password"] not in row["request"] + row["raw_payload"]


def test_brightsky_schema_drift_is_quarantined(clean_fakes, lake_root) -> None:
    clean_fakes["brightsky"].inject("malformed", match="lat=52.5200")
    with pytest.raises(SourceFailed, match="Berlin: weather record lacks field 'temperature'"):
        _land(clean_fakes, lake_root, "dwd")
    assert lake.count_rows(lake_root / "quarantine" / weather.DATASET) == 1
    assert len(_raw(lake_root, "dwd")) == 6


def test_bad_owm_key_fails_at_once_naming_the_connection(clean_fakes, lake_root) -> None:
    bad = Endpoint(
        "openweathermap_api", clean_fakes["openweathermap"].url, secret="not-the-key", extra={"history": "timemachine"}
    )
    with pytest.raises(AuthError, match="HTTP 401.*Airflow connection 'openweathermap_api'.*Invalid API key"):
        _land(clean_fakes, lake_root, "openweathermap", ep=bad)
    assert len(clean_fakes["openweathermap"].requests) == 1
    assert _raw(lake_root, "openweathermap").empty


def test_429_and_timeouts_are_retried(clean_fakes, lake_root) -> None:
    clean_fakes["openweathermap"].inject("429", retry_after=1)
    clean_fakes["brightsky"].inject("timeout", delay=2.5)
    assert _land(clean_fakes, lake_root, "openweathermap")["rows"] == 8
    assert _land(clean_fakes, lake_root, "dwd")["rows"] == 8
    assert [r.fault for r in clean_fakes["openweathermap"].requests][:2] == ["429", None]


def test_live_hour_uses_current_weather_and_past_needs_history(clean_fakes, lake_root) -> None:
    live_start = NOW - timedelta(hours=1)
    _land(clean_fakes, lake_root, "openweathermap", start=live_start, end=NOW)
    assert {r.path for r in clean_fakes["openweathermap"].requests} == {"/data/2.5/weather"}
    conn = clean_fakes.connections["openweathermap_api"]
    no_history = Endpoint.from_dict("openweathermap_api", {**conn, "extra": {**conn["extra"], "history": "none"}})
    with pytest.raises(weather.NotAvailable, match="cannot serve the past hour"):
        _land(clean_fakes, lake_root, "openweathermap", ep=no_history)


def test_current_weather_stands_for_one_live_hour_only(clean_fakes, lake_root) -> None:
    """Two hours within the live window: the one current observation lands in the latest of
    them, the earlier one comes from history (it landed in both before, as duplicate rows)."""
    _land(clean_fakes, lake_root, "openweathermap", start=NOW - timedelta(hours=2), end=NOW)
    paths = [r.path for r in clean_fakes["openweathermap"].requests]
    assert paths.count("/data/2.5/weather") == len(CITIES), paths
    assert paths.count("/data/3.0/onecall/timemachine") == len(CITIES), paths
    frame = _raw(lake_root, "openweathermap")
    assert not frame.duplicated(["city", "observed_at"]).any(), frame[["city", "observed_at", "hour"]]
    assert len(frame) == 2 * len(CITIES)


def test_backfilling_the_same_hours_twice_gives_the_same_partitions(clean_fakes, lake_root) -> None:
    for source in ("dwd", "openweathermap"):
        _land(clean_fakes, lake_root, source)
        first = _raw(lake_root, source).drop(columns="ingested_at").sort_values(["observed_at", "city"])
        files = lake.list_files(lake_root / "raw" / weather.DATASET)
        _land(clean_fakes, lake_root, source)
        second = _raw(lake_root, source).drop(columns="ingested_at").sort_values(["observed_at", "city"])
        assert lake.list_files(lake_root / "raw" / weather.DATASET) == files
        pd.testing.assert_frame_equal(first.reset_index(drop=True), second.reset_index(drop=True))
