"""Landing grid status from the fake APIs: faults, quarantine, idempotent backfill, correlation."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from metrify import lake
from metrify.contracts.geography import TSOS
from metrify.sources import entsoe, grid
from metrify.sources.grid import SourceFailed
from metrify.sources.http import AuthError
from metrify_dev.simulator import grid_frequency
from tests.fake_apis import DAY, NOW, endpoint

START, END = DAY + timedelta(hours=9), DAY + timedelta(hours=10)


def _frequency(stack) -> dict[str, float]:
    return grid.fetch_frequency(endpoint(stack, "gridradar_api"), START, END)


def _land(stack, root, operator: str, freq: dict[str, float]) -> dict:
    return grid.ingest_operator(operator, START, END, endpoint(stack, "entsoe_api"), freq, root)


def _raw(root, operator: str | None = None) -> pd.DataFrame:
    path = root / "raw" / grid.DATASET
    if operator:
        path = path / f"operator={operator}"
    table = lake.read_table(path)
    return pd.DataFrame() if table is None else table.to_pandas()


def test_all_four_operators_land_one_file_per_quarter_hour(clean_fakes, lake_root) -> None:
    freq = _frequency(clean_fakes)
    assert len(freq) == 4
    for operator in TSOS:
        summary = _land(clean_fakes, lake_root, operator, freq)
        assert summary["rows"] == 4 and summary["entsoe_calls"] == 3
    frame = _raw(lake_root)
    assert sorted(frame["operator_name"].unique()) == sorted(TSOS)
    assert len(frame) == 16 and frame[["operator_name", "reading_ts"]].duplicated().sum() == 0
    assert frame["reading_ts"].min() == pd.Timestamp(START + timedelta(minutes=15))
    assert frame["load_factor"].between(0.05, 1).all() and frame["renewable_percentage"].between(0, 100).all()
    assert frame["grid_stability_score"].between(0, 100).all()
    files = lake.list_files(lake_root / "raw" / grid.DATASET / "operator=Amprion")
    assert [f.rsplit("/", 2)[-2:] for f in files] == [
        ["hour=09", "20261122T0915.parquet"],
        ["hour=09", "20261122T0930.parquet"],
        ["hour=09", "20261122T0945.parquet"],
        ["hour=10", "20261122T1000.parquet"],
    ]


def test_frequency_is_the_simulators_grid_frequency(clean_fakes) -> None:
    freq = _frequency(clean_fakes)
    path_index = pd.date_range(DAY, END, freq="15min", inclusive="left")
    expected = dict(zip(path_index, grid_frequency(path_index, 42), strict=True))
    for ts, hz in freq.items():
        assert hz == pytest.approx(expected[pd.Timestamp(ts)], abs=1e-4)


def test_one_operator_down_while_three_land(clean_fakes, lake_root) -> None:
    clean_fakes["entsoe"].inject("down", match=entsoe.CONTROL_AREAS["Amprion"])
    freq = _frequency(clean_fakes)
    failures = {}
    for operator in TSOS:
        try:
            _land(clean_fakes, lake_root, operator, freq)
        except Exception as exc:
            failures[operator] = exc
    assert list(failures) == ["Amprion"]
    message = str(failures["Amprion"])
    assert isinstance(failures["Amprion"], SourceFailed) and message.startswith("Amprion (10YDE-RWENET---I)")
    assert "gave up after 3 attempts" in message and "HTTP 503" in message and "'entsoe_api'" in message
    assert sorted(_raw(lake_root)["operator_name"].unique()) == sorted(set(TSOS) - {"Amprion"})


def test_5xx_then_success_lands(clean_fakes, lake_root) -> None:
    clean_fakes["entsoe"].inject("5xx", times=2)
    assert _land(clean_fakes, lake_root, "TenneT", _frequency(clean_fakes))["rows"] == 4
    faults = [r.fault for r in clean_fakes["entsoe"].requests]
    assert faults[:3] == ["5xx", "5xx", None]


def test_429_with_retry_after_is_honoured(clean_fakes, lake_root) -> None:
    clean_fakes["gridradar"].inject("429", retry_after=1)
    freq = _frequency(clean_fakes)
    requests = clean_fakes["gridradar"].requests
    assert [r.fault for r in requests] == ["429", None] and len(freq) == 4


def test_malformed_payload_is_quarantined_and_fails_that_operator(clean_fakes, lake_root) -> None:
    freq = _frequency(clean_fakes)
    clean_fakes["entsoe"].inject("malformed", match=entsoe.CONTROL_AREAS["50Hertz"])
    with pytest.raises(SourceFailed, match="50Hertz .*cannot read.*Quarantined at") as info:
        _land(clean_fakes, lake_root, "50Hertz", freq)
    assert entsoe.CONTROL_AREAS["50Hertz"] in str(info.value)
    quarantined = lake.read_table(lake_root / "quarantine" / grid.DATASET).to_pylist()
    assert len(quarantined) == 1
    row = quarantined[0]
    assert row["source"] == "entsoe" and row["subject"] == "50Hertz"
    assert "not well-formed XML" in row["reason"] and row["raw_payload"].startswith("<?xml")
    assert "securityToken=%2A%2A%2A" in row["request"]
    assert clean_fakes.connections["entsoe_api"]["password"] not in row["request"] + row["raw_payload"]
    assert _raw(lake_root, "50Hertz").empty
    _land(clean_fakes, lake_root, "TransnetBW", freq)  # the others are unaffected


def test_bad_key_fails_at_once_naming_the_connection(clean_fakes, lake_root) -> None:
    stack = clean_fakes
    bad = endpoint(stack, "entsoe_api").__class__(
        "entsoe_api", stack["entsoe"].url, secret="wrong-token", extra={"attempts": 3}
    )
    with pytest.raises(AuthError, match="HTTP 401.*Airflow connection 'entsoe_api'"):
        grid.ingest_operator("TenneT", START, END, bad, {}, lake_root)
    assert len(stack["entsoe"].requests) == 1


def test_interval_unpublished_past_the_delay_fails_with_retry_advice(clean_fakes, lake_root) -> None:
    later = NOW + timedelta(hours=1)  # the fake publishes nothing after NOW
    with pytest.raises(SourceFailed, match="has not published 1 quarter-hour older.*connection 'entsoe_api'.*retries"):
        grid.ingest_operator(
            "TenneT",
            later,
            later + timedelta(minutes=15),
            endpoint(clean_fakes, "entsoe_api"),
            {},
            lake_root,
            now=later + timedelta(hours=2),
        )


def test_backfilling_the_same_interval_twice_gives_the_same_partition(clean_fakes, lake_root) -> None:
    freq = _frequency(clean_fakes)
    _land(clean_fakes, lake_root, "TransnetBW", freq)
    path = lake_root / "raw" / grid.DATASET / "operator=TransnetBW"
    files_first = lake.list_files(path)
    first = _raw(lake_root, "TransnetBW").drop(columns="ingested_at").sort_values("reading_ts")
    _land(clean_fakes, lake_root, "TransnetBW", _frequency(clean_fakes))
    second = _raw(lake_root, "TransnetBW").drop(columns="ingested_at").sort_values("reading_ts")
    assert lake.list_files(path) == files_first
    pd.testing.assert_frame_equal(first.reset_index(drop=True), second.reset_index(drop=True))
    assert len(second) == 4
