"""Measure the quality checks and the anomaly detection against the simulator's labels.

    python -m metrify_dev.bench.quality --meters 100000 --anomaly-rate 0.05 --out .metrify/bench/quality.json

1. simulates one day with labelled anomalies (`Simulation.labels`: one row per affected
   reading; for `gap` the timestamps of the missing readings);
2. turns the Kafka messages into raw rows exactly as ingestion does (`metrify.ingest.decode`), so
   exact and conflicting duplicates are present as in the lake;
3. times the row-level quality rules, the quality score and the anomaly detection together
   (and, separately, the Great Expectations checkpoint on the same rows unless --no-gx);
4. scores the findings against the labels: precision, recall and F1 per anomaly type and
   overall (micro-average over (meter_id, reading_ts, anomaly_type) rows), and the
   false-positive rate on clean meter-days (meters without any label that got any finding).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metrify.ingest.decode import decode
from metrify.quality import anomalies
from metrify.quality.checkpoint import run_checkpoint
from metrify.quality.rules import evaluate_rows
from metrify.quality.scores import batch_score, meter_day_scores
from metrify_dev.simulator import ANOMALY_TYPES, Simulation, SimulationOptions, simulate

log = logging.getLogger(__name__)
KEY = ["meter_id", "reading_ts", "anomaly_type"]


def raw_frame(sim: Simulation, ingested_lag: timedelta = timedelta(minutes=20)) -> pd.DataFrame:
    """The simulation's messages decoded by the ingestion contract, in delivery order."""
    decoded = decode(sim.values, now=datetime.now(UTC) + timedelta(days=3650))
    if decoded.rejected:  # e.g. a spike on a large meter can exceed the contract's 2000 A current bound
        log.warning(
            "%d messages rejected by the ingestion contract, e.g. %s", len(decoded.rejected), decoded.rejected[:3]
        )
    frame = decoded.rows.to_pandas().sort_values("_index", kind="stable", ignore_index=True)
    frame = frame.drop(columns="_index")
    frame["topic"] = "meter-readings"
    frame["partition"] = 0
    frame["offset"] = np.arange(len(frame), dtype=np.int64)
    frame["kafka_ts"] = (frame["reading_ts"] + pd.Timedelta(minutes=1)).astype("datetime64[ms, UTC]")
    frame["ingested_at"] = frame["reading_ts"] + pd.Timedelta(ingested_lag)
    frame.attrs["rejected"] = len(decoded.rejected)
    return frame


def score(findings: pd.DataFrame, labels: pd.DataFrame, meters: pd.Series) -> dict[str, Any]:
    """Precision/recall/F1 per type and overall, and the false-positive rate on clean meter-days."""
    predicted = findings[KEY].drop_duplicates()
    truth = labels[KEY].drop_duplicates()
    predicted = predicted.assign(
        reading_ts=pd.to_datetime(predicted["reading_ts"], utc=True).astype("datetime64[us, UTC]")
    )
    truth = truth.assign(reading_ts=pd.to_datetime(truth["reading_ts"], utc=True).astype("datetime64[us, UTC]"))
    hits = predicted.merge(truth, on=KEY, how="inner")
    per_type: dict[str, dict[str, float]] = {}
    for kind in ANOMALY_TYPES:
        tp = int((hits["anomaly_type"] == kind).sum())
        n_pred = int((predicted["anomaly_type"] == kind).sum())
        n_true = int((truth["anomaly_type"] == kind).sum())
        per_type[kind] = _prf(tp, n_pred, n_true)
    overall = _prf(len(hits), len(predicted), len(truth))
    labelled = set(truth["meter_id"])
    clean = meters[~meters.isin(labelled)]
    flagged = set(predicted["meter_id"]) - labelled
    false_positive_rows = predicted[~predicted["meter_id"].isin(labelled)]
    return {
        "overall": overall,
        "per_type": per_type,
        "clean_meter_days": int(len(clean)),
        "clean_meter_days_with_findings": len(flagged),
        "false_positive_rate_clean_meter_days": round(len(flagged) / max(len(clean), 1), 6),
        "false_positive_findings_on_clean_meters": false_positive_rows["anomaly_type"].value_counts().to_dict(),
    }


def _prf(tp: int, n_pred: int, n_true: int) -> dict[str, float]:
    precision = tp / n_pred if n_pred else (1.0 if n_true == 0 else 0.0)
    recall = tp / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "true_positives": tp,
        "predicted": n_pred,
        "labelled": n_true,
    }


def run(meters: int, anomaly_rate: float, seed: int, gx: bool, duplicate_rate: float) -> dict[str, Any]:
    start = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday in November
    t0 = time.perf_counter()
    sim = simulate(
        SimulationOptions(
            meters=meters, start=start, seed=seed, anomaly_rate=anomaly_rate, duplicate_rate=duplicate_rate
        )
    )
    simulate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = raw_frame(sim)
    decode_s = time.perf_counter() - t0
    del sim.values, sim.keys
    window_start, window_end = pd.Timestamp(start), pd.Timestamp(start) + pd.Timedelta(days=1)

    t0 = time.perf_counter()
    checked = evaluate_rows(frame, window_start, window_end, now=window_end + pd.Timedelta(hours=1))
    rules_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    findings = anomalies.detect_anomalies(frame, window_start, window_end)
    detect_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = meter_day_scores(checked, findings)
    score_s = time.perf_counter() - t0
    result: dict[str, Any] = {
        "meters": meters,
        "readings": len(frame),
        "anomaly_rate": anomaly_rate,
        "seed": seed,
        "window": [window_start.isoformat(), window_end.isoformat()],
        "labels": sim.labels["anomaly_type"].value_counts().to_dict(),
        "rejected_by_ingestion_contract": frame.attrs.get("rejected", 0),
        "findings": findings["anomaly_type"].value_counts().to_dict(),
        "accuracy": score(findings, sim.labels, sim.registry["meter_id"]),
        "seconds": {
            "simulate": round(simulate_s, 2),
            "decode_like_ingestion": round(decode_s, 2),
            "row_rules": round(rules_s, 2),
            "anomaly_detection": round(detect_s, 2),
            "quality_scores": round(score_s, 2),
            "checks_plus_detection": round(rules_s + detect_s + score_s, 2),
        },
        "batch_quality": batch_score(checked, findings),
        "meter_day_tiers": scores["quality_tier"].value_counts().to_dict(),
        "cpu_count": os.cpu_count(),
    }
    if gx:
        t0 = time.perf_counter()
        outcome = run_checkpoint(frame, checked, window_start, window_end, build_docs=False)
        gx_s = time.perf_counter() - t0
        result["seconds"]["gx_checkpoint_incl_import"] = round(gx_s, 2)
        result["seconds"]["gx_import"] = round(outcome.import_seconds, 2)
        result["seconds"]["total_with_gx"] = round(rules_s + detect_s + score_s + gx_s, 2)
        result["gx_success"] = outcome.success
        result["gx_failed_expectations"] = [f["expectation"] for f in outcome.failures]
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["targets"] = _targets(result)
    return result


def _targets(result: dict[str, Any]) -> dict[str, bool]:
    acc = result["accuracy"]
    seconds = result["seconds"].get("total_with_gx", result["seconds"]["checks_plus_detection"])
    return {
        "overall_f1>=0.9": acc["overall"]["f1"] >= 0.9,
        "every_type_f1>=0.8": all(v["f1"] >= 0.8 for v in acc["per_type"].values()),
        "fp_rate_clean<0.005": acc["false_positive_rate_clean_meter_days"] < 0.005,
        "seconds<120_for_9.6M": (seconds < 120) if result["readings"] >= 9_000_000 else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meters", type=int, default=100_000)
    parser.add_argument("--anomaly-rate", type=float, default=0.05)
    parser.add_argument("--duplicate-rate", type=float, default=0.0005)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-gx", action="store_true", help="skip the Great Expectations checkpoint")
    parser.add_argument("--out", default=None, help="JSON report path (default .metrify/bench/quality.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    result = run(args.meters, args.anomaly_rate, args.seed, not args.no_gx, args.duplicate_rate)
    from metrify.config import load_settings

    out = Path(args.out) if args.out else load_settings().home / "bench" / "quality.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    print(f"written to {out}")
    return 0 if all(v is not False for v in result["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
