"""Great Expectations suites as code: meter readings, their completeness, grid status and weather.

Each `Expect` is one GX expectation with its severity and the row predicate that shows sample
rows (and quarantine reasons) when it fails. `critical` expectations block an interval; those
with a `mostly` threshold let a handful of bad rows be quarantined while a systematic fault (a
unit change, a broken encoder, half the data missing) blocks it. `warning` ones are recorded.
`great_expectations` is imported only when a suite is built (`Expect.build`): it costs ~18 s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from metrify.contracts import grid, readings, weather
from metrify.contracts.geography import CITIES, TSOS
from metrify.contracts.thresholds import (
    FREQUENCY_NORMAL_HZ,
    FREQUENCY_PHYSICAL_HZ,
    TRANSMISSION_VOLTAGE_BAND_KV,
    VOLTAGE_BAND_V,
    VOLTAGE_PHYSICAL_V,
)
from metrify.quality.rules import DELIVERY_MINUTES, INTERVAL, REQUIRED_FOR_USE, TIMELY_MINUTES

FLOAT_TYPES = ["float64", "Float64", "double[pyarrow]"]
SOURCE_TIMELY_MINUTES = {grid.DATASET: 120.0, weather.DATASET: 180.0}


@dataclass
class Expect:
    """One expectation of a suite, with the row predicate used to show sample rows on failure."""

    kind: str  # GX expectation class name
    kwargs: dict[str, Any]
    severity: str  # critical | warning
    bad_rows: Callable[[pd.DataFrame], pd.Series] | None = None

    def build(self) -> Any:
        import great_expectations.expectations as gxe

        return getattr(gxe, self.kind)(**self.kwargs, severity=self.severity)


def is_null(column: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda frame: frame[column].isna()


def between(column: str, low: float | None, high: float | None) -> Callable[[pd.DataFrame], pd.Series]:
    def bad(frame: pd.DataFrame) -> pd.Series:
        values = frame[column]
        mask = pd.Series(False, index=frame.index)
        if low is not None:
            mask |= values < low
        if high is not None:
            mask |= values > high
        return mask

    return bad


def meter_readings_suite() -> list[Expect]:
    """Expectations on the raw rows of one interval."""
    columns = list(readings.RAW_SCHEMA.names) + ["ingestion_lag_minutes", "delivery_lag_minutes"]
    floats = [f.name for f in readings.PAYLOAD_SCHEMA if pa.types.is_floating(f.type)]
    suite = [
        Expect("ExpectTableRowCountToBeBetween", {"min_value": 1}, "critical"),
        Expect("ExpectTableColumnsToMatchSet", {"column_set": columns, "exact_match": False}, "critical"),
    ]
    suite += [
        Expect("ExpectColumnValuesToBeInTypeList", {"column": c, "type_list": FLOAT_TYPES}, "critical") for c in floats
    ]
    suite += [Expect("ExpectColumnValuesToNotBeNull", {"column": c}, "critical", is_null(c)) for c in REQUIRED_FOR_USE]
    suite += [
        Expect(
            "ExpectColumnValueLengthsToBeBetween",
            {"column": "meter_id", "min_value": 1, "max_value": readings.METER_ID_MAX_LEN},
            "critical",
        ),
        Expect(
            "ExpectCompoundColumnsToBeUnique",
            {"column_list": ["meter_id", "reading_ts"], "mostly": 0.995},
            "critical",
            lambda f: f.duplicated(["meter_id", "reading_ts"], keep=False),
        ),
        Expect(
            "ExpectColumnValuesToBeBetween",
            {"column": "consumption_kwh", "min_value": 0, "mostly": 0.999},
            "critical",
            between("consumption_kwh", 0, None),
        ),
        Expect(
            "ExpectColumnValuesToBeBetween",
            {"column": "export_kwh", "min_value": 0},
            "critical",
            between("export_kwh", 0, None),
        ),
        Expect(
            "ExpectColumnValuesToBeBetween",
            {
                "column": "voltage",
                "min_value": VOLTAGE_PHYSICAL_V[0],
                "max_value": VOLTAGE_PHYSICAL_V[1],
                "mostly": 0.999,
            },
            "critical",
            between("voltage", *VOLTAGE_PHYSICAL_V),
        ),
        Expect(
            "ExpectColumnValuesToBeBetween",
            {"column": "voltage", "min_value": VOLTAGE_BAND_V[0], "max_value": VOLTAGE_BAND_V[1], "mostly": 0.99},
            "warning",
            between("voltage", *VOLTAGE_BAND_V),
        ),
        Expect(
            "ExpectColumnValuesToBeBetween",
            {
                "column": "frequency",
                "min_value": FREQUENCY_PHYSICAL_HZ[0],
                "max_value": FREQUENCY_PHYSICAL_HZ[1],
                "mostly": 0.999,
            },
            "critical",
            between("frequency", *FREQUENCY_PHYSICAL_HZ),
        ),
        Expect(
            "ExpectColumnValuesToBeBetween",
            {
                "column": "frequency",
                "min_value": FREQUENCY_NORMAL_HZ[0],
                "max_value": FREQUENCY_NORMAL_HZ[1],
                "mostly": 0.99,
            },
            "warning",
            between("frequency", *FREQUENCY_NORMAL_HZ),
        ),
        Expect(
            "ExpectColumnValuesToBeBetween",
            {"column": "power_factor", "min_value": 0, "max_value": 1},
            "critical",
            between("power_factor", 0, 1),
        ),
        Expect(
            "ExpectColumnValuesToBeBetween",
            {"column": "humidity", "min_value": 0, "max_value": 100},
            "warning",
            between("humidity", 0, 100),
        ),
        Expect(
            "ExpectColumnValuesToBeBetween",
            {"column": "temperature", "min_value": -40, "max_value": 50},
            "warning",
            between("temperature", -40, 50),
        ),
        Expect(
            "ExpectColumnValuesToBeBetween",
            {"column": "delivery_lag_minutes", "max_value": DELIVERY_MINUTES, "mostly": 0.95},
            "warning",
            between("delivery_lag_minutes", None, DELIVERY_MINUTES),
        ),
        Expect(
            "ExpectColumnValuesToBeBetween",
            {"column": "ingestion_lag_minutes", "max_value": TIMELY_MINUTES, "mostly": 0.95},
            "warning",
            between("ingestion_lag_minutes", None, TIMELY_MINUTES),
        ),
    ]
    return suite


def completeness_suite() -> list[Expect]:
    """Expectations on per-meter counts of one interval (`completeness_frame`)."""
    return [
        Expect(
            "ExpectColumnMeanToBeBetween",
            {"column": "completeness", "min_value": 0.9},
            "critical",
            between("completeness", 1.0, None),
        ),  # samples: the incomplete meters
        Expect(
            "ExpectColumnValuesToBeBetween",
            {"column": "completeness", "min_value": 1.0, "mostly": 0.98},
            "warning",
            between("completeness", 1.0, None),
        ),
    ]


def expected_slots(checked: pd.DataFrame, window_start: pd.Timestamp, window_end: pd.Timestamp) -> int:
    """Slots every meter should have: those of the window the fleet has delivered so far, i.e.
    from the earliest to the latest reading_ts in the window. An hour still being ingested (the
    drain runs every 15 minutes) or cut by the start of the data is judged on what is due, and
    judged again when more files arrive (`pending_intervals`)."""
    ts = checked["reading_ts"]
    inside = ts[(ts >= window_start) & (ts < window_end)]
    if inside.empty:
        return max(1, int((pd.Timestamp(window_end) - pd.Timestamp(window_start)) / INTERVAL))
    return int((inside.max() - inside.min()) / INTERVAL) + 1


def completeness_frame(checked: pd.DataFrame, window_start: pd.Timestamp, window_end: pd.Timestamp) -> pd.DataFrame:
    """Distinct readings per meter in the window against the expected slot count."""
    expected = expected_slots(checked, window_start, window_end)
    distinct = checked[~checked["repeat"]]
    counts = distinct.groupby("meter_id", sort=True).size()
    return pd.DataFrame(
        {
            "meter_id": counts.index,
            "readings": counts.to_numpy(),
            "expected": expected,
            "completeness": np.minimum(counts.to_numpy() / expected, 1.0),
        }
    )


def in_set(column: str, values: tuple[str, ...]) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda frame: ~frame[column].isin(values) & frame[column].notna()


def ranges(specs: list[tuple[str, float | None, float | None, str, float]]) -> list[Expect]:
    out = []
    for column, low, high, severity, mostly in specs:
        kwargs: dict[str, Any] = {"column": column}
        if low is not None:
            kwargs["min_value"] = low
        if high is not None:
            kwargs["max_value"] = high
        if mostly < 1:
            kwargs["mostly"] = mostly
        out.append(Expect("ExpectColumnValuesToBeBetween", kwargs, severity, between(column, low, high)))
    return out


def _source_common(dataset: str, columns: tuple[str, ...], keys: tuple[str, ...], floats: list[str]) -> list[Expect]:
    """Schema, types, key and timeliness expectations every polled source shares."""
    key_list = list(keys)
    suite = [
        Expect("ExpectTableRowCountToBeBetween", {"min_value": 1}, "critical"),
        Expect(
            "ExpectTableColumnsToMatchSet",
            {"column_set": [*columns, "ingestion_lag_minutes"], "exact_match": False},
            "critical",
        ),
    ]
    suite += [
        Expect("ExpectColumnValuesToBeInTypeList", {"column": c, "type_list": FLOAT_TYPES}, "critical") for c in floats
    ]
    suite += [Expect("ExpectColumnValuesToNotBeNull", {"column": c}, "critical", is_null(c)) for c in key_list]
    suite.append(
        Expect(
            "ExpectCompoundColumnsToBeUnique",
            {"column_list": key_list},
            "critical",
            lambda f: f.duplicated(key_list, keep=False),
        )
    )
    suite += ranges([("ingestion_lag_minutes", None, SOURCE_TIMELY_MINUTES[dataset], "warning", 0.9)])
    return suite


def grid_status_suite() -> list[Expect]:
    columns = grid.CONTRACT_COLUMNS
    floats = [c for c in columns if c.endswith(("_mw", "_factor", "_hz", "_kv", "_score", "_percentage"))]
    return (
        _source_common(grid.DATASET, columns, grid.KEY, floats)
        + [
            Expect(
                "ExpectColumnValuesToBeInSet",
                {"column": "operator_name", "value_set": list(TSOS)},
                "critical",
                in_set("operator_name", TSOS),
            ),
            Expect(
                "ExpectColumnValuesToNotBeNull",
                {"column": "frequency_hz", "mostly": 0.9},
                "warning",
                lambda f: f["frequency_hz"].isna(),
            ),
        ]
        + ranges(
            [
                (
                    "frequency_hz",
                    *FREQUENCY_PHYSICAL_HZ,
                    "critical",
                    1.0,
                ),  # outside, generators disconnect: a broken feed
                ("frequency_hz", *FREQUENCY_NORMAL_HZ, "warning", 0.99),
                ("load_factor", 0.0, 1.5, "critical", 1.0),
                ("total_capacity_mw", 0.0, None, "critical", 1.0),
                ("renewable_percentage", 0.0, 100.0, "critical", 1.0),
                ("grid_stability_score", 0.0, 100.0, "critical", 1.0),
                ("voltage_kv", *TRANSMISSION_VOLTAGE_BAND_KV, "warning", 1.0),
                ("available_capacity_mw", 0.0, None, "warning", 1.0),
            ]
        )
    )


def weather_suite() -> list[Expect]:
    columns = weather.CONTRACT_COLUMNS
    floats = [c for c in columns if c not in ("city", "source", "observed_at", "ingested_at")]
    cities = tuple(c.name for c in CITIES)
    return (
        _source_common(weather.DATASET, columns, weather.KEY, floats)
        + [
            Expect(
                "ExpectColumnValuesToBeInSet",
                {"column": "source", "value_set": list(weather.SOURCES)},
                "critical",
                in_set("source", weather.SOURCES),
            ),
            Expect(
                "ExpectColumnValuesToBeInSet",
                {"column": "city", "value_set": list(cities)},
                "warning",
                in_set("city", cities),
            ),
        ]
        + ranges(
            [
                ("temperature_celsius", -60.0, 60.0, "critical", 1.0),  # physically impossible in Germany beyond
                ("temperature_celsius", -35.0, 42.0, "warning", 1.0),  # beyond the German records
                ("humidity_percent", 0.0, 100.0, "critical", 1.0),
                ("pressure_hpa", 870.0, 1085.0, "critical", 1.0),  # world records
                ("pressure_hpa", 950.0, 1050.0, "warning", 1.0),
                ("wind_speed_ms", 0.0, 75.0, "critical", 1.0),
                ("wind_speed_ms", 0.0, 40.0, "warning", 1.0),
                ("wind_direction_degrees", 0.0, 360.0, "critical", 1.0),
                ("cloud_cover_percent", 0.0, 100.0, "critical", 1.0),
                ("visibility_km", 0.0, 100.0, "warning", 1.0),
                ("energy_demand_factor", 0.5, 2.0, "warning", 1.0),
            ]
        )
    )


SOURCE_SUITES = {grid.DATASET: grid_status_suite, weather.DATASET: weather_suite}


def plain(value: Any) -> Any:
    """numpy scalars as plain Python values, for readable messages."""
    return value.item() if hasattr(value, "item") else value


def row_reasons(frame: pd.DataFrame, suite: list[Expect], key: tuple[str, ...]) -> pd.Series:
    """Quarantine reason per row from the suite's critical row predicates (None = usable)."""
    keys = list(key)
    reasons = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    checks: list[tuple[pd.Series, str, str | None]] = []
    for expect in suite:
        if expect.severity != "critical" or expect.bad_rows is None or expect.kind == "ExpectCompoundColumnsToBeUnique":
            continue
        try:
            mask = expect.bad_rows(frame).fillna(False).astype(bool)
        except (KeyError, TypeError):
            continue  # a missing or mistyped column fails the batch, not single rows
        column = expect.kwargs.get("column")
        kw = expect.kwargs
        if expect.kind == "ExpectColumnValuesToBeBetween":
            text = f"outside [{kw.get('min_value', '-inf')}, {kw.get('max_value', 'inf')}]"
        elif expect.kind == "ExpectColumnValuesToBeInSet":
            text = f"not one of {kw['value_set']}"
        elif expect.kind == "ExpectColumnValuesToNotBeNull":
            text = "is missing"
        else:
            text = f"fails {expect.kind}"
        checks.append((mask, f"{text} ({expect.kind}, critical)", column))
    duplicate = frame.duplicated(keys, keep="first") if set(keys) <= set(frame.columns) else None
    if duplicate is not None:
        checks.append((duplicate, f"duplicate of an earlier row with the same {', '.join(keys)}", None))
    bad = pd.Series(False, index=frame.index)
    for mask, _, _ in checks:
        bad |= mask
    for i in frame.index[bad]:
        parts = [
            f"{column}={plain(frame.at[i, column])!r} {text}" if column else text
            for mask, text, column in checks
            if mask.at[i]
        ]
        reasons.at[i] = "; ".join(parts)
    return reasons
