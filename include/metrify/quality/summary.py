"""What the quality layer holds, for `metrify run` and `metrify summary` to print."""

from __future__ import annotations

from typing import Any

import pandas as pd

from metrify import lake
from metrify.config import Settings, load_settings
from metrify.contracts.readings import DATASET
from metrify.quality.scores import SCORE_DATASET
from metrify.quality.verdicts import status_of

QUARANTINE_DATASET = f"{DATASET}_gate"


def lake_quality_summary(settings: Settings | None = None) -> dict[str, Any]:
    """What the quality layer holds, for `metrify run`/`metrify summary` to print."""
    settings = settings or load_settings()
    root = lake.lake_root(settings)
    base = root / "_quality" / DATASET
    markers = [
        lake.read_json(base / p.split(f"/_quality/{DATASET}/", 1)[1]) for p in lake.list_files(base, suffix=".json")
    ]
    blocked = [f"{m['date']} hour {int(m['hour']):02d}" for m in markers if m and status_of(m) == "blocked"]
    released = [f"{m['date']} hour {int(m['hour']):02d}" for m in markers if m and status_of(m) == "released"]
    findings = lake.read_table(root / "anomalies" / DATASET, columns=["anomaly_type"])
    gate_quarantine = root / "quarantine" / QUARANTINE_DATASET
    reasons: dict[str, int] = {}
    table = lake.read_table(gate_quarantine, columns=["reason"])
    if table is not None:
        for reason in table["reason"].to_pylist():
            key = reason.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
    scores = lake.read_table(root / "quality" / SCORE_DATASET, columns=["quality_tier"])
    docs = settings.gx_home / DATASET / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    return {
        "intervals_judged": len(markers),
        "intervals_blocked": blocked,
        "intervals_released": released,
        "validated_rows": lake.count_rows(root / "validated" / DATASET),
        "gate_quarantined_rows": sum(reasons.values()),
        "gate_quarantine_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "anomalies": (
            {} if findings is None else pd.Series(findings["anomaly_type"].to_pylist()).value_counts().to_dict()
        ),
        "meter_day_tiers": (
            {} if scores is None else pd.Series(scores["quality_tier"].to_pylist()).value_counts().to_dict()
        ),
        "data_docs": docs.as_uri() if docs.exists() else None,
    }
