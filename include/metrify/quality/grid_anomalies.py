"""Grid anomalies: frequency excursions, low stability and capacity shortfall per operator and quarter-hour.

One row per finding (operator_name, reading_ts, anomaly_type, severity, score, detector,
details) under `anomalies/grid_status/date=<date>/`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from metrify import lake
from metrify.config import Settings, load_settings
from metrify.contracts import grid
from metrify.contracts.anomalies import GRID_ANOMALY_SCHEMA
from metrify.contracts.thresholds import FREQUENCY_BAND_HZ, FREQUENCY_CRITICAL_DEVIATION_HZ, FREQUENCY_NOMINAL_HZ
from metrify.quality.gate import day_files, read_files

LOW_STABILITY = 50.0
CAPACITY_SHORTFALL_LOAD_FACTOR = 0.9


def detect_grid_anomalies(frame: pd.DataFrame) -> pd.DataFrame:
    """Frequency excursions, low stability and capacity shortfall per operator and quarter-hour."""
    if frame.empty:
        return GRID_ANOMALY_SCHEMA.empty_table().to_pandas()
    frame = frame.drop_duplicates(list(grid.KEY)).reset_index(drop=True)
    found = []
    deviation = (frame["frequency_hz"] - FREQUENCY_NOMINAL_HZ).abs()
    rules = [
        (
            "frequency_out_of_range",
            deviation > FREQUENCY_BAND_HZ,
            np.where(deviation > FREQUENCY_CRITICAL_DEVIATION_HZ, "critical", "warning"),
            deviation / FREQUENCY_BAND_HZ,
            "rule:frequency_band",
            "frequency_hz",
        ),
        (
            "low_stability",
            frame["grid_stability_score"] < LOW_STABILITY,
            np.where(frame["grid_stability_score"] < LOW_STABILITY / 2, "critical", "warning"),
            (LOW_STABILITY - frame["grid_stability_score"]) / 10,
            "rule:grid_stability_score<50",
            "grid_stability_score",
        ),
        (
            "capacity_shortfall",
            frame["load_factor"] > CAPACITY_SHORTFALL_LOAD_FACTOR,
            np.where(frame["load_factor"] > 1.0, "critical", "warning"),
            frame["load_factor"] / CAPACITY_SHORTFALL_LOAD_FACTOR,
            "rule:load_factor>0.9",
            "load_factor",
        ),
    ]
    for kind, mask, severity, score, detector, column in rules:
        mask = mask.fillna(False).to_numpy(dtype=bool)
        if not mask.any():
            continue
        found.append(
            pd.DataFrame(
                {
                    "operator_name": frame.loc[mask, "operator_name"].to_numpy(),
                    "reading_ts": frame.loc[mask, "reading_ts"].to_numpy(),
                    "anomaly_type": kind,
                    "severity": np.asarray(severity)[mask],
                    "score": np.round(np.asarray(score, dtype=float)[mask], 3),
                    "detector": detector,
                    "details": [json.dumps({column: float(v)}) for v in frame.loc[mask, column]],
                }
            )
        )
    if not found:
        return GRID_ANOMALY_SCHEMA.empty_table().to_pandas()
    out = pd.concat(found, ignore_index=True)
    out["reading_ts"] = pd.to_datetime(out["reading_ts"], utc=True)
    return out.sort_values(["operator_name", "reading_ts", "anomaly_type"], ignore_index=True)


def run_grid_anomalies(date: str, settings: Settings | None = None) -> dict[str, Any]:
    """Grid anomalies of one UTC day of raw grid_status → anomalies/grid_status/date=<date>/."""
    settings = settings or load_settings()
    root = lake.lake_root(settings)
    frame = read_files(root, day_files(root, grid.DATASET, date))
    findings = detect_grid_anomalies(frame if frame is not None else pd.DataFrame())
    path = lake.partition_path(root, "anomalies", grid.DATASET, date=date) / "grid_status_anomalies.parquet"
    lake.write_parquet(pa.Table.from_pandas(findings, schema=GRID_ANOMALY_SCHEMA, preserve_index=False), path)
    return {"date": date, "findings": findings["anomaly_type"].value_counts().to_dict(), "path": str(path)}
