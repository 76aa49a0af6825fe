"""Quality gate for meter readings: Great Expectations suites, quarantine, validated output, scores.

How an interval (one hour partition of `raw/meter_readings/`) is judged:

1. **Row rules** (vectorised numpy/pandas, `evaluate_rows`): every row gets a quarantine
   `reason` if it cannot be used downstream (negative import, voltage or frequency outside the
   hard physical bounds, a missing required value, a reading outside the interval, an exact or a
   conflicting duplicate), and warning flags if it is merely implausible (voltage outside
   EN 50160 230 V +-10 %, frequency outside 50 Hz +-0.2, late ingestion).
2. **Great Expectations checkpoint** (`run_checkpoint`): the suite `meter_readings` (schema,
   types, not-null, ranges, uniqueness of (meter_id, reading_ts), timeliness) validates the raw
   rows of the interval, and the suite `meter_readings_completeness` validates the per-meter
   counts (expected: every 15-minute slot of the interval). Each expectation has a GX severity:
   `critical` ones carry a `mostly` threshold, so a handful of bad rows is quarantined while a
   systematic fault (a unit change, a broken encoder, half the data missing) blocks the interval.
   Results are stored in a file data context under `<METRIFY_HOME>/gx/` and rendered as GX Data
   Docs (HTML) there.
3. **Gate** (`run_gate`): quarantined rows go to `quarantine/meter_readings_gate/date=/hour=/`
   with their reason (always, also when the gate fails); if a critical expectation failed the
   gate raises `QualityGateError` naming the expectation, the column, the counts, a few sample
   rows and the Data Docs page, and no validated output exists for the interval; otherwise the
   usable rows are written to `validated/meter_readings/date=/hour=/` and a marker with the
   counts and the quality score to `_quality/meter_readings/date=/hour=.json`.

Quality score (seed "Data Quality Flow"): completeness, accuracy, consistency and timeliness,
each a share in [0, 1], weighted 0.3/0.3/0.2/0.2 into a score 0-100 and a tier: gold (>= 98)
and silver (>= 90) are accepted, bronze (>= 75) is flagged for review, below that rejected.

`import great_expectations` costs ~18 s, so it is imported inside `run_checkpoint` only.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from metrify import anomalies, lake, readings
from metrify.settings import Settings, load_settings

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

DATASET = readings.DATASET
QUARANTINE_DATASET = "meter_readings_gate"
SCORE_DATASET = "meter_day_scores"
INTERVAL = pd.Timedelta(minutes=15)
# hard physical bounds: outside them a reading is a device fault, not a grid event
VOLTAGE_HARD = (161.0, 299.0)  # 230 V +-30 %
FREQUENCY_HARD = (47.5, 51.5)  # generators disconnect outside
TIMELY_MINUTES = 60.0  # ingested within an hour of reaching Kafka is timely
DELIVERY_MINUTES = 24 * 60.0  # a meter's reading should reach Kafka within a day
REQUIRED = ("meter_id", "reading_ts", "consumption_kwh", "voltage", "frequency")
WEIGHTS = {"completeness": 0.3, "accuracy": 0.3, "consistency": 0.2, "timeliness": 0.2}
TIERS = ((98.0, "gold", "accept"), (90.0, "silver", "accept"), (75.0, "bronze", "review"),
         (-1.0, "reject", "reject"))
WARN_VOLTAGE, WARN_FREQUENCY, WARN_LATE = 1, 2, 4
CONSISTENCY_TYPES = ("stuck_meter", "spike", "duplicate_conflict")
SCORE_SCHEMA = pa.schema([
    ("meter_id", pa.string()), ("day", pa.string()), ("readings", pa.int64()), ("completeness", pa.float64()),
    ("accuracy", pa.float64()), ("consistency", pa.float64()), ("timeliness", pa.float64()),
    ("quality_score", pa.float64()), ("quality_tier", pa.string()), ("quality_action", pa.string()),
])


class QualityGateError(RuntimeError):
    """A critical expectation failed: the interval must not go downstream."""


# --------------------------------------------------------------------------- row rules


def _epoch_us(values: pd.Series) -> np.ndarray:
    return anomalies._epoch_us(values)


def duplicate_status(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(repeat, conflict, copies): repeat marks every copy after the first of a (meter_id,
    reading_ts) pair, conflict marks all copies of pairs whose values differ, copies counts them."""
    n = len(frame)
    if n == 0:
        empty = np.zeros(0, dtype=bool)
        return empty, empty, np.zeros(0, dtype=np.int64)
    codes, _ = pd.factorize(frame["meter_id"])
    ts = _epoch_us(frame["reading_ts"])
    slot = (ts - ts.min()) // 1_000_000  # seconds since the earliest reading
    key = codes.astype(np.int64) * (int(slot.max()) + 1) + slot
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    new = np.ones(n, dtype=bool)
    new[1:] = key_sorted[1:] != key_sorted[:-1]
    group = np.cumsum(new) - 1
    copies_sorted = np.bincount(group)[group]
    first_pos = np.flatnonzero(new)[group]  # position (in sorted order) of the group's first copy
    differs = np.zeros(n, dtype=bool)
    for name in anomalies.VALUE_COLUMNS:
        if name not in frame:
            continue
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)[order]
        a, b = values, values[first_pos]
        differs |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
    group_conflict = np.bincount(group, weights=differs.astype(float)) > 0
    repeat = np.empty(n, dtype=bool)
    conflict = np.empty(n, dtype=bool)
    copies = np.empty(n, dtype=np.int64)
    repeat[order] = ~new
    conflict[order] = group_conflict[group]
    copies[order] = copies_sorted
    return repeat, conflict, copies


def evaluate_rows(frame: pd.DataFrame, window_start: pd.Timestamp, window_end: pd.Timestamp,
                  now: pd.Timestamp | None = None) -> pd.DataFrame:
    """The raw rows plus `reason` (quarantine, None if usable), `warning_flags`, `duplicate`,
    `repeat`, `ingestion_lag_minutes` (Kafka to lake) and `delivery_lag_minutes` (meter to Kafka). The window is [window_start, window_end) on reading_ts."""
    out = frame.copy()
    n = len(out)
    reason = np.full(n, None, dtype=object)

    def numbers(name: str) -> np.ndarray:
        """A numeric column as floats; a missing or non-numeric column is all NaN (the GX schema
        expectations report it and block the interval; here its rows get 'missing required value')."""
        if name not in out:
            return np.full(n, np.nan)
        return pd.to_numeric(out[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)

    with np.errstate(invalid="ignore"):
        consumption = numbers("consumption_kwh")
        voltage = numbers("voltage")
        frequency = numbers("frequency")
        ts = _epoch_us(out["reading_ts"])
        start_us = int(pd.Timestamp(window_start).value // 1000)
        end_us = int(pd.Timestamp(window_end).value // 1000)
        repeat, conflict, copies = duplicate_status(out)
        rules: list[tuple[np.ndarray, Callable[[int], str]]] = []
        for name in REQUIRED:
            missing = out[name].isna().to_numpy() if name in out else np.ones(n, dtype=bool)
            rules.append((missing, lambda i, name=name: f"missing required value: {name}"))
        rules += [
            (conflict, lambda i: f"conflicting duplicate: {copies[i]} readings for this meter_id and "
                                 "reading_ts with different values (all copies kept here)"),
            (repeat & ~conflict, lambda i: "exact duplicate of an earlier reading (same meter_id, reading_ts, values)"),
            ((ts < start_us) | (ts >= end_us),
             lambda i: f"reading_ts outside the gate interval [{window_start}, {window_end})"),
            (consumption < 0, lambda i: f"negative consumption: consumption_kwh={consumption[i]:g} < 0 "
                                        "(import register delta must be >= 0)"),
            ((voltage < VOLTAGE_HARD[0]) | (voltage > VOLTAGE_HARD[1]),
             lambda i: f"voltage={voltage[i]:g} V outside the physical bounds {VOLTAGE_HARD[0]:g}..{VOLTAGE_HARD[1]:g} V"),
            ((frequency < FREQUENCY_HARD[0]) | (frequency > FREQUENCY_HARD[1]),
             lambda i: f"frequency={frequency[i]:g} Hz outside the physical bounds "
                       f"{FREQUENCY_HARD[0]:g}..{FREQUENCY_HARD[1]:g} Hz"),
        ]
        bad = np.zeros(n, dtype=bool)
        for mask, _ in rules:
            bad |= mask
        for i in np.flatnonzero(bad):  # texts only for the (few) quarantined rows
            reason[i] = "; ".join(text(i) for mask, text in rules if mask[i])
        flags = np.zeros(n, dtype=np.int8)
        flags |= np.where((voltage < anomalies.VOLTAGE_LOW) | (voltage > anomalies.VOLTAGE_HIGH), WARN_VOLTAGE, 0).astype(np.int8)
        flags |= np.where(np.abs(frequency - anomalies.FREQUENCY_NOMINAL) > anomalies.FREQUENCY_BAND,
                          WARN_FREQUENCY, 0).astype(np.int8)
        # timeliness is split where responsibility changes hands: delivery (meter/head-end to
        # Kafka: kafka_ts - reading_ts) and ingestion (Kafka to the lake: ingested_at - kafka_ts).
        # A backfilled day is late in delivery, not in ingestion.
        reference = int(pd.Timestamp(now or pd.Timestamp.now(tz="UTC")).value // 1000)
        sent = _epoch_us(out["kafka_ts"]) if "kafka_ts" in out else ts
        arrived = _epoch_us(out["ingested_at"]) if "ingested_at" in out else np.full(n, reference)
        lag = (arrived - sent) / 60e6
        delivery = (sent - ts) / 60e6
        flags |= np.where(lag > TIMELY_MINUTES, WARN_LATE, 0).astype(np.int8)
    out["reason"] = pd.Series(reason, index=out.index, dtype=object)
    out["warning_flags"] = flags
    out["duplicate"] = np.where(conflict, "conflict", np.where(repeat, "exact", None))
    out["repeat"] = repeat  # a later copy of a (meter_id, reading_ts) already seen
    out["ingestion_lag_minutes"] = np.round(lag, 2)
    out["delivery_lag_minutes"] = np.round(delivery, 2)
    return out


# --------------------------------------------------------------------------- scores


def _tier(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tier = np.full(score.shape, "reject", dtype=object)
    action = np.full(score.shape, "reject", dtype=object)
    for threshold, name, act in reversed(TIERS):
        hit = score >= threshold
        tier[hit], action[hit] = name, act
    return tier, action


def meter_day_scores(checked: pd.DataFrame, findings: pd.DataFrame,
                     expected_per_day: int = 96) -> pd.DataFrame:
    """Quality score per meter and day (UTC day of the interval start, reading_ts - 15 min)."""
    ts = checked["reading_ts"]
    day = (ts - INTERVAL).dt.strftime("%Y-%m-%d")
    frame = pd.DataFrame({
        "meter_id": checked["meter_id"], "day": day,
        "reading": ~checked["repeat"],
        "accurate": checked["reason"].isna() & (checked["warning_flags"] & (WARN_VOLTAGE | WARN_FREQUENCY)).eq(0),
        "timely": (checked["warning_flags"] & WARN_LATE).eq(0),
        "rows": 1,
    })
    grouped = frame.groupby(["meter_id", "day"], sort=True).agg(
        readings=("reading", "sum"), accurate=("accurate", "sum"), timely=("timely", "sum"), rows=("rows", "sum"))
    inconsistent = findings[findings["anomaly_type"].isin(CONSISTENCY_TYPES)]
    if len(inconsistent):
        bad = inconsistent.assign(day=(inconsistent["reading_ts"] - INTERVAL).dt.strftime("%Y-%m-%d"))
        bad = bad.drop_duplicates(["meter_id", "reading_ts"]).groupby(["meter_id", "day"]).size()
        grouped["inconsistent"] = bad.reindex(grouped.index, fill_value=0)
    else:
        grouped["inconsistent"] = 0
    out = grouped.reset_index()
    out["completeness"] = np.minimum(out["readings"] / expected_per_day, 1.0)
    out["accuracy"] = out["accurate"] / out["rows"]
    out["consistency"] = 1 - np.minimum(out["inconsistent"] / np.maximum(out["readings"], 1), 1.0)
    out["timeliness"] = out["timely"] / out["rows"]
    out["quality_score"] = np.round(100 * sum(w * out[k] for k, w in WEIGHTS.items()), 2)
    out["quality_tier"], out["quality_action"] = _tier(out["quality_score"].to_numpy())
    return out[["meter_id", "day", "readings", "completeness", "accuracy", "consistency", "timeliness",
                "quality_score", "quality_tier", "quality_action"]]


def batch_score(checked: pd.DataFrame, findings: pd.DataFrame | None = None,
                expected_readings: int | None = None) -> dict[str, Any]:
    """One quality score for a batch (an interval or a day)."""
    rows = len(checked)
    if rows == 0:
        return {"rows": 0, "quality_score": 0.0, "quality_tier": "reject", "quality_action": "reject"}
    distinct = int((~checked["repeat"]).sum())
    if expected_readings is None:
        meters = checked["meter_id"].nunique()
        slots = checked["reading_ts"].nunique()
        expected_readings = meters * slots
    flags = checked["warning_flags"]
    parts = {
        "completeness": min(distinct / max(expected_readings, 1), 1.0),
        "accuracy": float((checked["reason"].isna() & (flags & (WARN_VOLTAGE | WARN_FREQUENCY)).eq(0)).mean()),
        "consistency": 1.0 - float(checked["duplicate"].notna().mean()),
        "timeliness": float((flags & WARN_LATE).eq(0).mean()),
    }
    if findings is not None and len(findings):
        inconsistent = findings[findings["anomaly_type"].isin(CONSISTENCY_TYPES)].drop_duplicates(
            ["meter_id", "reading_ts"])
        parts["consistency"] = max(0.0, parts["consistency"] - len(inconsistent) / rows)
    score = round(100 * sum(WEIGHTS[k] * v for k, v in parts.items()), 2)
    tier, action = _tier(np.array([score]))
    return {"rows": rows, "expected_readings": int(expected_readings),
            **{k: round(v, 6) for k, v in parts.items()},
            "quality_score": score, "quality_tier": str(tier[0]), "quality_action": str(action[0])}


# --------------------------------------------------------------------------- Great Expectations


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


def _between(column: str, low: float | None, high: float | None) -> Callable[[pd.DataFrame], pd.Series]:
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
    suite += [Expect("ExpectColumnValuesToBeInTypeList",
                     {"column": c, "type_list": ["float64", "Float64", "double[pyarrow]"]}, "critical")
              for c in floats]
    suite += [Expect("ExpectColumnValuesToNotBeNull", {"column": c}, "critical", lambda f, c=c: f[c].isna())
              for c in REQUIRED]
    suite += [
        Expect("ExpectColumnValueLengthsToBeBetween", {"column": "meter_id", "min_value": 1,
                                                        "max_value": readings.METER_ID_MAX_LEN}, "critical"),
        Expect("ExpectCompoundColumnsToBeUnique", {"column_list": ["meter_id", "reading_ts"], "mostly": 0.995},
               "critical", lambda f: f.duplicated(["meter_id", "reading_ts"], keep=False)),
        Expect("ExpectColumnValuesToBeBetween", {"column": "consumption_kwh", "min_value": 0, "mostly": 0.999},
               "critical", _between("consumption_kwh", 0, None)),
        Expect("ExpectColumnValuesToBeBetween", {"column": "export_kwh", "min_value": 0}, "critical",
               _between("export_kwh", 0, None)),
        Expect("ExpectColumnValuesToBeBetween", {"column": "voltage", "min_value": VOLTAGE_HARD[0],
                                                 "max_value": VOLTAGE_HARD[1], "mostly": 0.999},
               "critical", _between("voltage", *VOLTAGE_HARD)),
        Expect("ExpectColumnValuesToBeBetween", {"column": "voltage", "min_value": anomalies.VOLTAGE_LOW,
                                                 "max_value": anomalies.VOLTAGE_HIGH, "mostly": 0.99},
               "warning", _between("voltage", anomalies.VOLTAGE_LOW, anomalies.VOLTAGE_HIGH)),
        Expect("ExpectColumnValuesToBeBetween", {"column": "frequency", "min_value": FREQUENCY_HARD[0],
                                                 "max_value": FREQUENCY_HARD[1], "mostly": 0.999},
               "critical", _between("frequency", *FREQUENCY_HARD)),
        Expect("ExpectColumnValuesToBeBetween", {"column": "frequency", "min_value": 49.8, "max_value": 50.2,
                                                 "mostly": 0.99}, "warning", _between("frequency", 49.8, 50.2)),
        Expect("ExpectColumnValuesToBeBetween", {"column": "power_factor", "min_value": 0, "max_value": 1},
               "critical", _between("power_factor", 0, 1)),
        Expect("ExpectColumnValuesToBeBetween", {"column": "humidity", "min_value": 0, "max_value": 100},
               "warning", _between("humidity", 0, 100)),
        Expect("ExpectColumnValuesToBeBetween", {"column": "temperature", "min_value": -40, "max_value": 50},
               "warning", _between("temperature", -40, 50)),
        Expect("ExpectColumnValuesToBeBetween", {"column": "delivery_lag_minutes", "max_value": DELIVERY_MINUTES,
                                                 "mostly": 0.95}, "warning",
               _between("delivery_lag_minutes", None, DELIVERY_MINUTES)),
        Expect("ExpectColumnValuesToBeBetween", {"column": "ingestion_lag_minutes", "max_value": TIMELY_MINUTES,
                                                 "mostly": 0.95}, "warning",
               _between("ingestion_lag_minutes", None, TIMELY_MINUTES)),
    ]
    return suite


def completeness_suite() -> list[Expect]:
    """Expectations on per-meter counts of one interval (`completeness_frame`)."""
    return [
        Expect("ExpectColumnMeanToBeBetween", {"column": "completeness", "min_value": 0.9}, "critical",
               _between("completeness", 1.0, None)),  # samples: the incomplete meters
        Expect("ExpectColumnValuesToBeBetween", {"column": "completeness", "min_value": 1.0, "mostly": 0.98},
               "warning", _between("completeness", 1.0, None)),
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
    return pd.DataFrame({"meter_id": counts.index, "readings": counts.to_numpy(),
                         "expected": expected, "completeness": np.minimum(counts.to_numpy() / expected, 1.0)})


@dataclass
class CheckpointOutcome:
    success: bool  # no critical expectation failed
    failures: list[dict[str, Any]] = field(default_factory=list)  # every failed expectation
    statistics: dict[str, Any] = field(default_factory=dict)
    docs_index: str | None = None  # Data Docs index.html
    docs_pages: dict[str, str] = field(default_factory=dict)  # suite -> this run's validation page
    result_path: str | None = None  # validation result JSON kept beside the docs
    import_seconds: float = 0.0

    @property
    def critical(self) -> list[dict[str, Any]]:
        return [f for f in self.failures if f["severity"] == "critical"]


def _context(home: Path | None) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if home is None:
        context = gx.get_context(mode="ephemeral")
    else:
        home.mkdir(parents=True, exist_ok=True)
        context = gx.get_context(mode="file", project_root_dir=str(home))
    bars = context.variables.progress_bars
    enabled = bars is None or (bars.get("globally", True) if isinstance(bars, dict) else bars.globally)
    if enabled:
        context.variables.progress_bars = ProgressBarsConfig(globally=False)  # keep task logs readable
        if home is not None:
            context.variables.save()
    return context


def run_checkpoint(frame: pd.DataFrame, checked: pd.DataFrame, window_start: pd.Timestamp,
                   window_end: pd.Timestamp, gx_home: Path | None = None, build_docs: bool = True,
                   run_name: str | None = None) -> CheckpointOutcome:
    """Validate a meter-readings interval with its two suites and keep the results.

    `gx_home` is the file data context's root (results + Data Docs); None uses an ephemeral one.
    """
    # exact redeliveries (at-least-once delivery) are harmless and quarantined as such; the
    # uniqueness expectation judges what is left, i.e. conflicting readings
    exact_repeat = (checked["repeat"] & checked["duplicate"].eq("exact")).to_numpy()
    rows_frame = frame.assign(ingestion_lag_minutes=checked["ingestion_lag_minutes"].to_numpy(),
                              delivery_lag_minutes=checked["delivery_lag_minutes"].to_numpy())
    if exact_repeat.any():
        rows_frame = rows_frame.loc[~exact_repeat].reset_index(drop=True)
    counts_frame = completeness_frame(checked, window_start, window_end)
    specs = {"meter_readings": (meter_readings_suite(), rows_frame),
             "meter_readings_completeness": (completeness_suite(), counts_frame)}
    return run_suites(specs, gx_home=gx_home, build_docs=build_docs,
                      run_name=run_name or f"{window_start:%Y-%m-%dT%H%M}")


def run_suites(specs: dict[str, tuple[list[Expect], pd.DataFrame]], gx_home: Path | None = None,
               build_docs: bool = True, run_name: str = "run") -> CheckpointOutcome:
    """Run one GX checkpoint per suite (`name -> (expectations, dataframe)`), results kept.

    With `build_docs` and a `gx_home`, a file data context there stores suites, validation
    definitions, checkpoints and results, and renders Data Docs; otherwise it is ephemeral.
    """
    t0 = time.perf_counter()
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # keep the task log readable
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier

    import_seconds = time.perf_counter() - t0
    context = _context(gx_home if build_docs else None)
    source = context.data_sources.add_or_update_pandas(name="metrify")
    outcome = CheckpointOutcome(success=True, import_seconds=import_seconds)
    for name, (expects, data) in specs.items():
        try:
            asset = source.get_asset(name)
        except LookupError:
            asset = source.add_dataframe_asset(name=name)
        try:
            batch_definition = asset.get_batch_definition("interval")
        except (KeyError, LookupError, ValueError):
            batch_definition = asset.add_batch_definition_whole_dataframe("interval")
        suite = context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=[e.build() for e in expects]))
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"{name}_interval", data=batch_definition, suite=suite))
        actions = [UpdateDataDocsAction(name="update_data_docs")] if build_docs else []
        checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
            name=f"{name}_gate", validation_definitions=[definition], actions=actions,
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5}))
        result = checkpoint.run(batch_parameters={"dataframe": data},
                                run_id=RunIdentifier(run_name=run_name, run_time=datetime.now(timezone.utc)))
        for identifier, validation in result.run_results.items():
            outcome.statistics[name] = dict(validation.statistics)
            if build_docs and gx_home is not None:
                pages = context.get_docs_sites_urls(resource_identifier=identifier)
                if pages and pages[0].get("site_url"):
                    outcome.docs_pages[name] = pages[0]["site_url"]
            for expect, res in zip(expects, _ordered(validation, expects), strict=True):
                if res is None or res.success:
                    continue
                outcome.failures.append({**_describe(expect, res, data), "suite": name})
    outcome.success = not outcome.critical
    if build_docs and gx_home is not None:
        urls = context.get_docs_sites_urls()
        if urls:
            outcome.docs_index = urls[0].get("site_url")
    return outcome


def _ordered(validation: Any, expects: list[Expect]) -> list[Any]:
    """Match results to our specs by expectation type and kwargs (GX keeps suite order)."""
    results = list(validation.results)
    matched: list[Any] = []
    for expect in expects:
        snake = "".join("_" + ch.lower() if ch.isupper() else ch for ch in expect.kind).lstrip("_")
        found = None
        for res in results:
            config = res.expectation_config
            if config.type != snake:
                continue
            kwargs = config.kwargs
            if all(kwargs.get(k) == v for k, v in expect.kwargs.items() if k != "type_list"):
                found = res
                break
        if found is not None:
            results.remove(found)
        matched.append(found)
    return matched


def _describe(expect: Expect, res: Any, data: pd.DataFrame) -> dict[str, Any]:
    info = res.result or {}
    column = expect.kwargs.get("column") or expect.kwargs.get("column_list") or "(table)"
    failure: dict[str, Any] = {
        "expectation": res.expectation_config.type,
        "column": column,
        "severity": expect.severity,
        "kwargs": {k: v for k, v in expect.kwargs.items() if k not in ("column", "column_list")},
        "element_count": info.get("element_count"),
        "unexpected_count": info.get("unexpected_count"),
        "unexpected_percent": info.get("unexpected_percent"),
        "observed_value": info.get("observed_value"),
        "partial_unexpected_list": info.get("partial_unexpected_list"),
    }
    if expect.kind == "ExpectTableColumnsToMatchSet":
        observed = set(info.get("observed_value") or [])
        failure["kwargs"] = {"missing_columns": sorted(set(expect.kwargs["column_set"]) - observed)}
    if res.exception_info and res.exception_info.get("raised_exception"):
        failure["exception"] = res.exception_info.get("exception_message")
    if expect.bad_rows is not None:
        try:
            mask = expect.bad_rows(data).fillna(False).astype(bool)
            keys = [c for c in ("meter_id", "reading_ts", column if isinstance(column, str) else None,
                                "readings", "expected") if c and c in data.columns]
            failure["sample_rows"] = data.loc[mask, list(dict.fromkeys(keys))].head(5).astype(str).to_dict("records")
        except (KeyError, TypeError) as exc:  # a missing column is itself what failed
            failure["sample_rows_error"] = str(exc)
    return failure


def _plain(value: Any) -> Any:
    """numpy scalars as plain Python values, for readable messages."""
    return value.item() if hasattr(value, "item") else value


def failure_message(dataset: str, interval: str, outcome: CheckpointOutcome, quarantined: int,
                    quarantine_path: str | None) -> str:
    lines = [f"quality gate FAILED for {dataset} interval {interval}: "
             f"{len(outcome.critical)} critical expectation(s) failed; nothing was written to validated/."]
    for f in outcome.critical:
        count = f.get("unexpected_count")
        total = f.get("element_count")
        percent = f.get("unexpected_percent")
        counts = (f"{count} of {total} rows unexpected ({percent:.3f} %; exact redeliveries not counted)" if count is not None and percent is not None
                  else f"observed {_plain(f.get('observed_value'))!r}")
        lines.append(f"- [{f.get('suite', '')}] {f['expectation']} on column {f['column']} {f['kwargs']}: {counts}")
        if f.get("exception"):
            lines.append(f"    error: {f['exception']}")
        for row in f.get("sample_rows", [])[:5]:
            lines.append(f"    sample: {row}")
    warnings = [f for f in outcome.failures if f["severity"] != "critical"]
    if warnings:
        lines.append("warnings (recorded, not blocking): " + ", ".join(
            f"{w['expectation']}({w['column']}): {w.get('unexpected_count')}" for w in warnings))
    lines.append(f"{quarantined} row(s) quarantined with their reason at {quarantine_path}" if quarantined
                 else "no row was quarantined: the interval as a whole failed")
    for suite in sorted({f["suite"] for f in outcome.critical if f.get("suite") in outcome.docs_pages}):
        lines.append(f"Great Expectations validation result ({suite}): {outcome.docs_pages[suite]}")
    if outcome.docs_index:
        lines.append(f"Great Expectations Data Docs (all runs): {outcome.docs_index}")
    lines.append("what to do: open the Data Docs, inspect the sample rows and the quarantine; fix the "
                 "source or re-ingest the interval, then clear this task to re-run the gate.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the gate


@dataclass
class GateReport:
    date: str
    hour: int
    rows: int
    validated: int
    quarantined: int
    passed: bool
    score: dict[str, Any]
    failures: list[dict[str, Any]]
    docs_index: str | None
    raw_files: list[str]
    validated_path: str | None
    quarantine_path: str | None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def interval_bounds(date: str, hour: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.Timestamp(f"{date}T{hour:02d}:00:00", tz="UTC")
    return start, start + pd.Timedelta(hours=1)


def raw_partition(root: ObjectStoragePath, date: str, hour: int) -> ObjectStoragePath:
    return lake.partition_path(root, "raw", DATASET, date=date, hour=f"{hour:02d}")


def marker_path(root: ObjectStoragePath, date: str, hour: int) -> ObjectStoragePath:
    return lake.partition_path(root, "_quality", DATASET, date=date) / f"hour={hour:02d}.json"


def read_interval(root: ObjectStoragePath, date: str, hour: int) -> tuple[pd.DataFrame, list[str]]:
    """Raw rows of one hour partition in delivery order (topic, partition, offset)."""
    path = raw_partition(root, date, hour)
    files = lake.list_files(path)
    table = lake.read_table(path, columns=list(readings.RAW_SCHEMA.names))
    if table is None:
        return readings.RAW_SCHEMA.empty_table().to_pandas(), files
    frame = table.to_pandas()
    frame = frame.sort_values(["topic", "partition", "offset"], kind="stable", ignore_index=True)
    return frame, files


def run_gate(date: str, hour: int, settings: Settings | None = None, build_docs: bool = True,
             now: pd.Timestamp | None = None) -> GateReport:
    """Judge one hour of raw meter readings; raise QualityGateError if a critical check fails."""
    settings = settings or load_settings()
    root = lake.lake_root(settings)
    start, end = interval_bounds(date, hour)
    frame, files = read_interval(root, date, hour)
    checked = evaluate_rows(frame, start, end, now=now)
    outcome = run_checkpoint(frame, checked, start, end, gx_home=settings.home / "gx" / DATASET, build_docs=build_docs,
                             run_name=f"{date}T{hour:02d}")
    bad = checked["reason"].notna()
    quarantine_dir = lake.partition_path(root, "quarantine", QUARANTINE_DATASET, date=date, hour=f"{hour:02d}")
    quarantine_file = quarantine_dir / "gate.parquet"
    validated_file = lake.partition_path(root, "validated", DATASET, date=date, hour=f"{hour:02d}") / "validated.parquet"
    if bad.any():
        rows = checked.loc[bad, list(readings.RAW_SCHEMA.names) + ["reason"]].copy()
        rows["gated_at"] = pd.Timestamp.now(tz="UTC")
        lake.write_parquet(pa.Table.from_pandas(rows, preserve_index=False), quarantine_file)
    elif quarantine_file.exists():
        quarantine_file.unlink()  # a re-run over corrected data leaves no stale quarantine
    due = expected_slots(checked, start, end)
    score = batch_score(checked, expected_readings=checked["meter_id"].nunique() * due)
    score["slots_due"], score["slots_in_interval"] = due, 4
    report = GateReport(date=date, hour=hour, rows=len(frame), validated=0, quarantined=int(bad.sum()),
                        passed=outcome.success, score=score, failures=outcome.failures,
                        docs_index=outcome.docs_index, raw_files=files, validated_path=None,
                        quarantine_path=str(quarantine_file) if bad.any() else None)
    if not outcome.success:
        if validated_file.exists():
            validated_file.unlink()  # a blocked interval must not keep an older validated copy
        lake.write_json(report.as_dict(), marker_path(root, date, hour))
        raise QualityGateError(failure_message(DATASET, f"{date} hour {hour:02d}", outcome,
                                               report.quarantined, report.quarantine_path))
    good = checked.loc[~bad, list(readings.RAW_SCHEMA.names)]
    table = pa.Table.from_pandas(good, preserve_index=False).cast(readings.RAW_SCHEMA)
    lake.write_parquet(table, validated_file)
    report.validated = len(good)
    report.validated_path = str(validated_file)
    lake.write_json(report.as_dict(), marker_path(root, date, hour))
    log.info("quality gate passed for %s hour %02d: %d rows, %d validated, %d quarantined, score %s (%s)",
             date, hour, report.rows, report.validated, report.quarantined, score["quality_score"],
             score["quality_tier"])
    return report


LOOKBACK_DAYS = 7  # automatic re-gating looks at the newest raw days; older ones: run with conf


def recent_date_partitions(base: ObjectStoragePath, lookback_days: int = LOOKBACK_DAYS) -> list[str]:
    """The newest `lookback_days` `date=` partition names below `base` (without listing files)."""
    if not base.exists():
        return []
    names = [str(p).rstrip("/").rsplit("/", 1)[-1] for p in base.fs.ls(base.path, detail=False)]
    return sorted(n.split("=", 1)[1] for n in names if n.startswith("date="))[-lookback_days:]


def pending_intervals(settings: Settings | None = None, lookback_days: int = LOOKBACK_DAYS) -> list[dict[str, Any]]:
    """Hour partitions of raw/meter_readings (newest `lookback_days` days) whose files changed
    since the gate last judged them (the gate marker records the files it saw)."""
    settings = settings or load_settings()
    root = lake.lake_root(settings)
    base = root / "raw" / DATASET
    by_hour: dict[tuple[str, int], list[str]] = {}
    for date in recent_date_partitions(base, lookback_days):
        for name in lake.list_files(base / f"date={date}"):
            hour = [p for p in name.split("/") if p.startswith("hour=")]
            if hour:
                by_hour.setdefault((date, int(hour[-1].split("=", 1)[1])), []).append(name)
    pending = []
    for (date, hour), names in sorted(by_hour.items()):
        marker = lake.read_json(marker_path(root, date, hour))
        if marker is None or sorted(marker.get("raw_files", [])) != sorted(names):
            pending.append({"date": date, "hour": hour})
    return pending


# --------------------------------------------------------------------------- anomalies of a day


def days_for_intervals(intervals: list[dict[str, Any]]) -> list[str]:
    """Meter-days touched by hour intervals: a day D is (D 00:00, D+1 00:00] in reading_ts
    (interval-start day), so hour 00 of D+1 also completes day D."""
    days: set[str] = set()
    for interval in intervals:
        days.add(str(interval["date"]))
        if int(interval["hour"]) == 0:
            days.add((pd.Timestamp(interval["date"]) - pd.Timedelta(days=1)).strftime("%Y-%m-%d"))
    return sorted(days)


def read_day(root: ObjectStoragePath, date: str) -> pd.DataFrame:
    """Raw readings of meter-day `date`: reading_ts in (date 00:00, date+1 00:00], delivery order."""
    start = pd.Timestamp(date, tz="UTC")
    end = start + pd.Timedelta(days=1)
    frames = []
    for path in (lake.partition_path(root, "raw", DATASET, date=date),
                 lake.partition_path(root, "raw", DATASET, date=end.strftime("%Y-%m-%d"), hour="00")):
        table = lake.read_table(path, columns=list(readings.RAW_SCHEMA.names))
        if table is not None:
            frames.append(table.to_pandas())
    if not frames:
        return readings.RAW_SCHEMA.empty_table().to_pandas()
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[(frame["reading_ts"] > start) & (frame["reading_ts"] <= end)]
    return frame.sort_values(["topic", "partition", "offset"], kind="stable", ignore_index=True)


def run_anomalies(date: str, settings: Settings | None = None) -> dict[str, Any]:
    """Detect anomalies in one meter-day of raw readings; write findings and meter-day scores.

    Findings go to `anomalies/meter_readings/date=<date>/`, scores to
    `quality/meter_day_scores/date=<date>/` (both overwritten: a re-run is idempotent).
    """
    settings = settings or load_settings()
    root = lake.lake_root(settings)
    frame = read_day(root, date)
    if frame.empty:  # e.g. the day before the first hour-00 partition: nothing to judge
        log.info("anomalies for %s: no raw readings, nothing written", date)
        return {"date": date, "rows": 0, "findings": {}}
    day_start = pd.Timestamp(date, tz="UTC")
    day_end = day_start + pd.Timedelta(days=1)
    last = frame["reading_ts"].max() if len(frame) else day_start
    window_end = min(day_end, last)  # a day still being ingested: do not report the future as gaps
    findings = anomalies.detect_anomalies(frame, day_start, window_end)
    path = anomalies.write_anomalies(findings, root, date)
    checked = evaluate_rows(frame, day_start + INTERVAL, day_end + INTERVAL)
    scores = meter_day_scores(checked, findings)
    score_path = lake.partition_path(root, "quality", SCORE_DATASET, date=date) / f"{SCORE_DATASET}.parquet"
    lake.write_parquet(pa.Table.from_pandas(scores, schema=SCORE_SCHEMA, preserve_index=False), score_path)
    summary = {"date": date, "rows": len(frame), "findings": findings["anomaly_type"].value_counts().to_dict(),
               "anomalies_path": str(path), "scores_path": str(score_path),
               "tiers": scores["quality_tier"].value_counts().to_dict(),
               "batch_score": batch_score(checked, findings, expected_readings=frame["meter_id"].nunique() * 96)}
    log.info("anomalies for %s: %s", date, json.dumps(summary, default=str))
    return summary


def intervals_from_request(extras: list[dict[str, Any]], conf: dict[str, Any],
                           settings: Settings | None = None) -> list[dict[str, Any]]:
    """The hour intervals a quality run must judge.

    Order of precedence: a manual run's conf (`{"intervals": [{"date":..,"hour":..}]}` or
    `{"date": "YYYY-MM-DD"}` for all its raw hours), the triggering asset events' extra
    (`intervals`), else every raw hour whose files changed since the gate last judged it.
    """
    def clean(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen = {(str(i["date"]), int(i["hour"])) for i in items}
        for date, hour in seen:
            datetime.strptime(date, "%Y-%m-%d")
            if not 0 <= hour <= 23:
                raise ValueError(f"interval hour {hour} of {date} is not 0..23")
        return [{"date": d, "hour": h} for d, h in sorted(seen)]

    if conf.get("intervals"):
        return clean(list(conf["intervals"]))
    if conf.get("date"):
        settings = settings or load_settings()
        base = lake.partition_path(lake.lake_root(settings), "raw", DATASET, date=str(conf["date"]))
        hours = {int(p.split("hour=")[1].split("/")[0]) for p in lake.list_files(base) if "hour=" in p}
        return clean([{"date": conf["date"], "hour": h} for h in hours])
    requested = [i for extra in extras for i in (extra.get("intervals") or [])]
    if requested:
        return clean(requested)
    return pending_intervals(settings)


def run_summary(gates: list[dict[str, Any]], days: list[dict[str, Any]]) -> dict[str, Any]:
    """One log line an on-call engineer can read: what passed, what was quarantined, what was found."""
    findings: dict[str, int] = {}
    for day in days:
        for kind, count in day.get("findings", {}).items():
            findings[kind] = findings.get(kind, 0) + int(count)
    result = {
        "intervals": len(gates),
        "validated_rows": sum(int(g["validated"]) for g in gates),
        "quarantined_rows": sum(int(g["quarantined"]) for g in gates),
        "lowest_quality_score": min((g["quality_score"] for g in gates), default=None),
        "days": [d["date"] for d in days],
        "anomalies": findings,
    }
    log.info("quality run: %s", json.dumps(result, default=str))
    return result


def lake_quality_summary(settings: Settings | None = None) -> dict[str, Any]:
    """What the quality layer holds, for `metrify run`/`metrify summary` to print."""
    settings = settings or load_settings()
    root = lake.lake_root(settings)
    base = root / "_quality" / DATASET
    markers = [lake.read_json(base / p.split(f"/_quality/{DATASET}/", 1)[1])
               for p in lake.list_files(base, suffix=".json")]
    blocked = [f"{m['date']} hour {int(m['hour']):02d}" for m in markers if m and not m.get("passed")]
    findings = lake.read_table(root / "anomalies" / DATASET, columns=["anomaly_type"])
    gate_quarantine = root / "quarantine" / QUARANTINE_DATASET
    reasons: dict[str, int] = {}
    table = lake.read_table(gate_quarantine, columns=["reason"])
    if table is not None:
        for reason in table["reason"].to_pylist():
            key = reason.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
    scores = lake.read_table(root / "quality" / SCORE_DATASET, columns=["quality_tier"])
    docs = settings.home / "gx" / DATASET / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    return {
        "intervals_judged": len(markers),
        "intervals_blocked": blocked,
        "validated_rows": lake.count_rows(root / "validated" / DATASET),
        "gate_quarantined_rows": sum(reasons.values()),
        "gate_quarantine_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "anomalies": ({} if findings is None else
                      pd.Series(findings["anomaly_type"].to_pylist()).value_counts().to_dict()),
        "meter_day_tiers": ({} if scores is None else
                            pd.Series(scores["quality_tier"].to_pylist()).value_counts().to_dict()),
        "data_docs": docs.as_uri() if docs.exists() else None,
    }
