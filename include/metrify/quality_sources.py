"""Quality gates for the polled sources (`grid_status`, `weather`) and grid anomalies.

Same shape as the meter-readings gate (`metrify.quality`), per UTC day of raw data:
Great Expectations suites as code (schema, types, key uniqueness, ranges with `critical` physical
bounds and `warning` plausibility bands, timeliness), failing rows quarantined with their reason
under `quarantine/<dataset>_gate/date=/`, usable rows under `validated/<dataset>/date=/`, a
marker under `_quality/<dataset>/date=.json`, and `QualityGateError` when a critical expectation
fails. Grid anomalies (frequency excursions, low stability, capacity shortfall) go to
`anomalies/grid_status/date=/`.

The column contracts follow DESIGN.md and the sources' landing code (raw files under
`raw/grid_status/operator=<op>/date=/hour=/` and `raw/weather/source=<src>/date=/hour=/`).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow.fs import FSSpecHandler, PyFileSystem

from metrify import lake
from metrify.geography import CITIES
from metrify.quality import (
    Expect,
    QualityGateError,
    _between,
    _plain,
    failure_message,
    run_suites,
)
from metrify.settings import Settings, load_settings

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

TSOS = ("TenneT", "50Hertz", "Amprion", "TransnetBW")
WEATHER_SOURCES = ("dwd", "openweathermap")
KEYS = {"grid_status": ["operator_name", "reading_ts"], "weather": ["city", "source", "observed_at"]}
TIME_COLUMN = {"grid_status": "reading_ts", "weather": "observed_at"}
GRID_COLUMNS = ["operator_name", "region", "reading_ts", "total_capacity_mw", "available_capacity_mw",
                "load_factor", "frequency_hz", "voltage_kv", "grid_stability_score", "renewable_percentage",
                "ingested_at"]
WEATHER_COLUMNS = ["city", "source", "observed_at", "temperature_celsius", "humidity_percent", "pressure_hpa",
                   "wind_speed_ms", "wind_direction_degrees", "cloud_cover_percent", "visibility_km",
                   "energy_demand_factor", "ingested_at"]
FLOAT_TYPES = ["float64", "Float64", "double[pyarrow]"]
TIMELY_MINUTES = {"grid_status": 120.0, "weather": 180.0}
ANOMALY_SCHEMA = pa.schema([
    ("operator_name", pa.string()), ("reading_ts", pa.timestamp("us", tz="UTC")), ("anomaly_type", pa.string()),
    ("severity", pa.string()), ("score", pa.float64()), ("detector", pa.string()), ("details", pa.string()),
])


def _in_set(column: str, values: tuple[str, ...]):
    return lambda frame: ~frame[column].isin(values) & frame[column].notna()


def _ranges(specs: list[tuple[str, float | None, float | None, str, float]]) -> list[Expect]:
    out = []
    for column, low, high, severity, mostly in specs:
        kwargs: dict[str, Any] = {"column": column}
        if low is not None:
            kwargs["min_value"] = low
        if high is not None:
            kwargs["max_value"] = high
        if mostly < 1:
            kwargs["mostly"] = mostly
        out.append(Expect("ExpectColumnValuesToBeBetween", kwargs, severity, _between(column, low, high)))
    return out


def _common(dataset: str, columns: list[str], floats: list[str]) -> list[Expect]:
    keys = KEYS[dataset]
    suite = [
        Expect("ExpectTableRowCountToBeBetween", {"min_value": 1}, "critical"),
        Expect("ExpectTableColumnsToMatchSet", {"column_set": columns + ["ingestion_lag_minutes"],
                                                "exact_match": False}, "critical"),
    ]
    suite += [Expect("ExpectColumnValuesToBeInTypeList", {"column": c, "type_list": FLOAT_TYPES}, "critical")
              for c in floats]
    suite += [Expect("ExpectColumnValuesToNotBeNull", {"column": c}, "critical", lambda f, c=c: f[c].isna())
              for c in keys]
    suite.append(Expect("ExpectCompoundColumnsToBeUnique", {"column_list": keys}, "critical",
                        lambda f: f.duplicated(keys, keep=False)))
    suite += _ranges([("ingestion_lag_minutes", None, TIMELY_MINUTES[dataset], "warning", 0.9)])
    return suite


def grid_status_suite() -> list[Expect]:
    floats = [c for c in GRID_COLUMNS if c.endswith(("_mw", "_factor", "_hz", "_kv", "_score", "_percentage"))]
    return _common("grid_status", GRID_COLUMNS, floats) + [
        Expect("ExpectColumnValuesToBeInSet", {"column": "operator_name", "value_set": list(TSOS)}, "critical",
               _in_set("operator_name", TSOS)),
        Expect("ExpectColumnValuesToNotBeNull", {"column": "frequency_hz", "mostly": 0.9}, "warning",
               lambda f: f["frequency_hz"].isna()),
    ] + _ranges([
        ("frequency_hz", 47.5, 51.5, "critical", 1.0),  # outside, generators disconnect: a broken feed
        ("frequency_hz", 49.8, 50.2, "warning", 0.99),  # the normal band
        ("load_factor", 0.0, 1.5, "critical", 1.0),
        ("total_capacity_mw", 0.0, None, "critical", 1.0),
        ("renewable_percentage", 0.0, 100.0, "critical", 1.0),
        ("grid_stability_score", 0.0, 100.0, "critical", 1.0),
        ("voltage_kv", 342.0, 418.0, "warning", 1.0),  # 380 kV +-10 %
        ("available_capacity_mw", 0.0, None, "warning", 1.0),
    ])


def weather_suite() -> list[Expect]:
    floats = [c for c in WEATHER_COLUMNS if c not in ("city", "source", "observed_at", "ingested_at")]
    cities = tuple(c.name for c in CITIES)
    return _common("weather", WEATHER_COLUMNS, floats) + [
        Expect("ExpectColumnValuesToBeInSet", {"column": "source", "value_set": list(WEATHER_SOURCES)}, "critical",
               _in_set("source", WEATHER_SOURCES)),
        Expect("ExpectColumnValuesToBeInSet", {"column": "city", "value_set": list(cities)}, "warning",
               _in_set("city", cities)),
    ] + _ranges([
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
    ])


SUITES = {"grid_status": grid_status_suite, "weather": weather_suite}


def row_reasons(frame: pd.DataFrame, suite: list[Expect], keys: list[str]) -> pd.Series:
    """Quarantine reason per row from the suite's critical row predicates (None = usable)."""
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
        parts = [f"{column}={_plain(frame.at[i, column])!r} {text}" if column else text
                 for mask, text, column in checks if mask.at[i]]
        reasons.at[i] = "; ".join(parts)
    return reasons


def _read_files(root: ObjectStoragePath, files: list[str]) -> pd.DataFrame | None:
    if not files:
        return None
    data = ds.dataset(files, filesystem=PyFileSystem(FSSpecHandler(root.fs)), format="parquet")
    return data.to_table().to_pandas()


def day_files(root: ObjectStoragePath, dataset: str, date: str) -> list[str]:
    return [f for f in lake.list_files(root / "raw" / dataset) if f"/date={date}/" in f]


def run_source_gate(dataset: str, date: str, settings: Settings | None = None, build_docs: bool = True,
                    now: pd.Timestamp | None = None) -> dict[str, Any]:
    """Judge one UTC day of raw `grid_status` or `weather`; raise QualityGateError on a critical failure."""
    if dataset not in SUITES:
        raise ValueError(f"no quality suite for dataset {dataset!r}; known: {sorted(SUITES)}")
    settings = settings or load_settings()
    root = lake.lake_root(settings)
    files = day_files(root, dataset, date)
    frame = _read_files(root, files)
    if frame is None:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in KEYS[dataset]})
    time_column = TIME_COLUMN[dataset]
    if "ingested_at" in frame and time_column in frame:
        lag = (frame["ingested_at"] - frame[time_column]).dt.total_seconds() / 60
    else:
        lag = pd.Series(np.nan, index=frame.index)
    frame = frame.assign(ingestion_lag_minutes=lag.round(2))
    suite = SUITES[dataset]()
    outcome = run_suites({dataset: (suite, frame)}, gx_home=settings.home / "gx" / dataset, build_docs=build_docs,
                         run_name=date)
    reasons = row_reasons(frame, suite, KEYS[dataset])
    bad = reasons.notna()
    quarantine_file = lake.partition_path(root, "quarantine", f"{dataset}_gate", date=date) / "gate.parquet"
    validated_file = lake.partition_path(root, "validated", dataset, date=date) / f"{dataset}.parquet"
    marker = lake.partition_path(root, "_quality", dataset) / f"date={date}.json"
    if bad.any():
        rows = frame.loc[bad].drop(columns="ingestion_lag_minutes").assign(reason=reasons[bad],
                                                                           gated_at=pd.Timestamp.now(tz="UTC"))
        lake.write_parquet(pa.Table.from_pandas(rows, preserve_index=False), quarantine_file)
    elif quarantine_file.exists():
        quarantine_file.unlink()
    report = {"dataset": dataset, "date": date, "rows": len(frame), "quarantined": int(bad.sum()),
              "validated": 0, "passed": outcome.success, "failures": outcome.failures, "raw_files": files,
              "docs_index": outcome.docs_index}
    if not outcome.success:
        if validated_file.exists():
            validated_file.unlink()
        lake.write_json(report, marker)
        raise QualityGateError(failure_message(dataset, date, outcome, report["quarantined"],
                                               str(quarantine_file) if bad.any() else None))
    good = frame.loc[~bad].drop(columns="ingestion_lag_minutes")
    lake.write_parquet(pa.Table.from_pandas(good, preserve_index=False), validated_file)
    report["validated"] = len(good)
    lake.write_json(report, marker)
    log.info("quality gate passed for %s %s: %d rows, %d validated, %d quarantined",
             dataset, date, len(frame), len(good), report["quarantined"])
    return report


def pending_days(dataset: str, settings: Settings | None = None) -> list[str]:
    """Days of raw/<dataset> whose files changed since the gate last judged them."""
    settings = settings or load_settings()
    root = lake.lake_root(settings)
    by_day: dict[str, list[str]] = {}
    for name in lake.list_files(root / "raw" / dataset):
        parts = dict(p.split("=", 1) for p in name.split("/") if "=" in p)
        if "date" in parts:
            by_day.setdefault(parts["date"], []).append(name)
    pending = []
    for date, names in sorted(by_day.items()):
        marker = lake.read_json(lake.partition_path(root, "_quality", dataset) / f"date={date}.json")
        if marker is None or sorted(marker.get("raw_files", [])) != sorted(names):
            pending.append(date)
    return pending


# --------------------------------------------------------------------------- grid anomalies

LOW_STABILITY = 50.0
CAPACITY_SHORTFALL_LOAD_FACTOR = 0.9


def detect_grid_anomalies(frame: pd.DataFrame) -> pd.DataFrame:
    """Frequency excursions, low stability and capacity shortfall per operator and quarter-hour."""
    if frame.empty:
        return ANOMALY_SCHEMA.empty_table().to_pandas()
    frame = frame.drop_duplicates(KEYS["grid_status"]).reset_index(drop=True)
    found = []
    deviation = (frame["frequency_hz"] - 50.0).abs()
    rules = [
        ("frequency_out_of_range", deviation > 0.2, np.where(deviation > 1.0, "critical", "warning"),
         deviation / 0.2, "rule:frequency_band", "frequency_hz"),
        ("low_stability", frame["grid_stability_score"] < LOW_STABILITY,
         np.where(frame["grid_stability_score"] < LOW_STABILITY / 2, "critical", "warning"),
         (LOW_STABILITY - frame["grid_stability_score"]) / 10, "rule:grid_stability_score<50", "grid_stability_score"),
        ("capacity_shortfall", frame["load_factor"] > CAPACITY_SHORTFALL_LOAD_FACTOR,
         np.where(frame["load_factor"] > 1.0, "critical", "warning"),
         frame["load_factor"] / CAPACITY_SHORTFALL_LOAD_FACTOR, "rule:load_factor>0.9", "load_factor"),
    ]
    for kind, mask, severity, score, detector, column in rules:
        mask = mask.fillna(False).to_numpy(dtype=bool)
        if not mask.any():
            continue
        found.append(pd.DataFrame({
            "operator_name": frame.loc[mask, "operator_name"].to_numpy(),
            "reading_ts": frame.loc[mask, "reading_ts"].to_numpy(),
            "anomaly_type": kind,
            "severity": np.asarray(severity)[mask],
            "score": np.round(np.asarray(score, dtype=float)[mask], 3),
            "detector": detector,
            "details": [json.dumps({column: float(v)}) for v in frame.loc[mask, column]],
        }))
    if not found:
        return ANOMALY_SCHEMA.empty_table().to_pandas()
    out = pd.concat(found, ignore_index=True)
    out["reading_ts"] = pd.to_datetime(out["reading_ts"], utc=True)
    return out.sort_values(["operator_name", "reading_ts", "anomaly_type"], ignore_index=True)


def run_grid_anomalies(date: str, settings: Settings | None = None) -> dict[str, Any]:
    """Grid anomalies of one UTC day of raw grid_status → anomalies/grid_status/date=<date>/."""
    settings = settings or load_settings()
    root = lake.lake_root(settings)
    frame = _read_files(root, day_files(root, "grid_status", date))
    findings = detect_grid_anomalies(frame if frame is not None else pd.DataFrame())
    path = lake.partition_path(root, "anomalies", "grid_status", date=date) / "grid_status_anomalies.parquet"
    lake.write_parquet(pa.Table.from_pandas(findings, schema=ANOMALY_SCHEMA, preserve_index=False), path)
    return {"date": date, "findings": findings["anomaly_type"].value_counts().to_dict(), "path": str(path)}
