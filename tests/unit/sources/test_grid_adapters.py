"""ENTSO-E and gridradar adapters on real-format fixtures; the grid_status derivations."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from metrify.sources import NoDataError, PayloadError, entsoe, gridradar
from metrify.sources.grid import build_rows, region_of, stability_score
from tests.fake_apis import fixture

T10 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def _values(series: entsoe.Series) -> list[float]:
    return [series.values[k] for k in sorted(series.values)]


def test_a65_actual_load_points_become_quarter_hours() -> None:
    (series,) = entsoe.parse_document(fixture("grid/entsoe_a65_actual_load_50hertz.xml"), "A65")
    assert series.direction == "out" and series.psr_type is None
    assert sorted(series.values)[0] == T10
    assert _values(series) == [15820.0, 15911.5, 16002.0, 15987.25]


def test_a75_generation_per_type_fills_a03_gaps_spreads_hourly_and_skips_consumption() -> None:
    series = entsoe.parse_document(fixture("grid/entsoe_a75_generation_transnetbw.xml"), "A75")
    by_type = {(s.psr_type, s.direction): s for s in series}
    assert _values(by_type[("B16", "in")]) == [2400, 2500, 2600, 2550]
    # curve A03: position 2 repeats position 1, position 4 repeats position 3
    assert _values(by_type[("B05", "in")]) == [3000, 3000, 3200, 3200]
    assert by_type[("B10", "out")].direction == "out"


def test_fetch_level_frame_from_a75(monkeypatch) -> None:
    raw = fixture("grid/entsoe_a75_generation_transnetbw.xml")
    monkeypatch.setattr(entsoe, "_request", lambda client, params, t: entsoe.parse_document(raw, t))
    frame = entsoe.fetch_generation(None, "10YDE-ENBW-----N", T10, T10.replace(hour=11))  # type: ignore[arg-type]
    assert list(frame.columns) == ["B16", "B05", "B19"], "pumped-storage consumption must not count as generation"
    assert frame["B19"].tolist() == [400.0] * 4, "a PT60M value holds for its four quarter-hours"
    assert len(frame) == 4


def test_a68_installed_capacity() -> None:
    series = entsoe.parse_document(fixture("grid/entsoe_a68_installed_capacity_amprion.xml"), "A68")
    assert {s.psr_type: max(s.values.values()) for s in series} == {"B02": 9000.0, "B16": 15000.0}


def test_acknowledgement_is_no_data() -> None:
    with pytest.raises(NoDataError, match="No matching data found"):
        entsoe.parse_document(fixture("grid/entsoe_ack_no_data.xml"), "A65")


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"<GL_MarketDocument><unclosed>", "not well-formed XML"),
        (b"<html><body>Maintenance</body></html>", "unexpected root element"),
        (
            fixture("grid/entsoe_a65_actual_load_50hertz.xml").replace(
                b"<quantity>16002</quantity>", b"<quantity>n/a</quantity>"
            ),
            "numeric",
        ),
        (fixture("grid/entsoe_a65_actual_load_50hertz.xml").replace(b"PT15M", b"PT5S"), "unknown resolution"),
        (fixture("grid/entsoe_a65_actual_load_50hertz.xml").replace(b">MAW<", b">MWH<"), "expected MAW"),
    ],
)
def test_malformed_or_drifted_documents_are_payload_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason) as info:
        entsoe.parse_document(raw, "A65")
    assert info.value.raw, "the raw payload travels with the error for quarantine"


def test_wrong_document_type_is_rejected() -> None:
    with pytest.raises(PayloadError, match="expected A75"):
        entsoe.parse_document(fixture("grid/entsoe_a65_actual_load_50hertz.xml"), "A75")


def test_gridradar_datapoints() -> None:
    series = gridradar.parse_frequency(fixture("grid/gridradar_frequency.json"))
    assert len(series) == 6 and series.index.tz is not None
    assert series.iloc[0] == 49.998
    with pytest.raises(PayloadError, match="datapoints"):
        gridradar.parse_frequency(b'[{"target": "x", "values": []}]')
    with pytest.raises(PayloadError, match="not JSON"):
        gridradar.parse_frequency(b"<html>")


def test_stability_score_formula() -> None:
    # f exactly 50 Hz, load factor 0.3 (reserve term full), no renewables: 100*(0.5+0.3+0.2)
    assert stability_score(50.0, 0.3, 0.0) == 100.0
    # f 50.1 Hz -> frequency term 0.5; load factor 0.75 -> reserve 0.5; 60 % renewables -> inertia 0.7
    assert stability_score(50.1, 0.75, 60.0) == pytest.approx(100 * (0.25 + 0.15 + 0.14))
    # outside the ±0.2 Hz band the frequency term is 0, overload gives no reserve
    assert stability_score(49.7, 1.2, 100.0) == pytest.approx(10.0)
    assert np.isnan(stability_score(np.nan, 0.5, 10.0))


def test_build_rows_derives_every_field() -> None:
    index = pd.DatetimeIndex([pd.Timestamp(T10), pd.Timestamp(T10) + pd.Timedelta(minutes=15)])
    load = pd.Series([20000.0, 21000.0], index=index)
    generation = pd.DataFrame({"B16": [5000.0, 6000.0], "B04": [15000.0, 14000.0]}, index=index)
    frame = build_rows(
        "Amprion", load, generation, {"B16": 15000.0, "B04": 25000.0}, pd.Series([50.0, 50.1], index=index)
    )
    first = frame.iloc[0]
    assert first["reading_ts"] == pd.Timestamp("2026-11-22T10:15:00Z"), "reading_ts is the interval END"
    assert first["total_capacity_mw"] == 40000.0 and first["available_capacity_mw"] == 20000.0
    assert first["load_factor"] == 0.5 and first["generation_mw"] == 20000.0
    assert first["renewable_percentage"] == 25.0 and first["voltage_kv"] == 380.0
    assert first["region"] == region_of("Amprion") == "Nordrhein-Westfalen, Rheinland-Pfalz, Saarland"
    # by hand: 100 * (0.5 * 1 [50 Hz] + 0.3 * 1 [reserve (1 - 0.5) / 0.5] + 0.2 * 0.875 [25 % renewables])
    assert first["grid_stability_score"] == 97.5
    second = frame.iloc[1]
    assert second["load_factor"] == 0.525 and second["renewable_percentage"] == 30.0
    # 100 * (0.5 * 0.5 [50.1 Hz] + 0.3 * 0.95 [reserve (1 - 0.525) / 0.5] + 0.2 * 0.85 [30 % renewables])
    assert second["grid_stability_score"] == 70.5
