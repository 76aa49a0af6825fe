"""Masked backtest of the substitute-value method on a simulated fleet.

Simulates a fleet with the real simulator, hides 5 % of the meter quarter-hours of one local
month in blocks of 1 h, 24 h and 7 days (one run per block length), fills them day by day with
the production `substitute_day` and reports, per block length, the error of each gapped meter's
monthly energy (median and 95th percentile of |substituted month - true month| / true month) and
the quarter-hour MAE. Target: monthly energy within 1 % for 1 h and 24 h gaps.

    python -m metrify_dev.bench.substitutes --meters 60 --out bench-results/substitutes.json
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metrify.contracts.geography import CITIES
from metrify.substitution.method import OWN_PROFILE_WEEKS, day_temperatures, interval_starts, substitute_day
from metrify_dev.history import dwd_observations
from metrify_dev.simulator import SimulationOptions, simulate

BLOCKS = {"1h": 4, "24h": 96, "7d": 672}
HIDDEN_SHARE = 0.05
TARGET_MONTHLY_ERROR = 0.01
TARGET_BLOCKS = ("1h", "24h")


def _mask(n_meters: int, n_slots: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean (meter, slot) mask hiding HIDDEN_SHARE of all slots in non-overlapping blocks."""
    mask = np.zeros((n_meters, n_slots), dtype=bool)
    target = HIDDEN_SHARE * n_meters * n_slots
    while mask.sum() + block <= target + block / 2:
        m, s = int(rng.integers(n_meters)), int(rng.integers(0, n_slots - block + 1))
        if not mask[m, max(0, s - 1) : s + block + 1].any():
            mask[m, s : s + block] = True
    return mask


def run(meters: int, month_start: date, seed: int) -> dict[str, Any]:
    """The backtest; returns the figures per block length."""
    month_end = (pd.Timestamp(month_start) + pd.offsets.MonthBegin(1)).date()
    warmup = month_start - timedelta(weeks=OWN_PROFILE_WEEKS + 1)
    sim_start = interval_starts(warmup)[0].to_pydatetime()
    sim_end = interval_starts(month_end)[0].to_pydatetime()
    sim = simulate(SimulationOptions(meters=meters, start=sim_start, end=sim_end, seed=seed))
    truth = sim.readings[["meter_id", "reading_ts", "consumption_kwh"]].copy()
    registry = sim.registry[["meter_id", "load_profile", "yearly_kwh", "city"]]
    cities = [city.name for city in CITIES]
    temperatures = day_temperatures(dwd_observations(sim_start, sim_end, cities, seed, ingested_at=sim_end))
    month_ts = interval_starts(month_start)[0] + pd.Timedelta(minutes=15)
    end_ts = interval_starts(month_end)[0] + pd.Timedelta(minutes=15)
    in_month = (truth["reading_ts"] >= month_ts) & (truth["reading_ts"] < end_ts)
    wide = truth[in_month].pivot(index="meter_id", columns="reading_ts", values="consumption_kwh")
    true_month = wide.sum(axis=1)
    days = [month_start + timedelta(days=i) for i in range((month_end - month_start).days)]
    results: dict[str, Any] = {}
    for name, block in BLOCKS.items():
        began = time.perf_counter()
        mask = _mask(len(wide), wide.shape[1], block, np.random.default_rng([seed, block]))
        hidden = pd.DataFrame(mask, index=wide.index, columns=wide.columns).stack()
        hidden = hidden[hidden].index.to_frame(index=False)
        key = pd.MultiIndex.from_frame(truth[["meter_id", "reading_ts"]])
        measured = truth[~key.isin(pd.MultiIndex.from_frame(hidden))]
        daily = [substitute_day(day, registry, measured, day_temperatures=temperatures) for day in days]
        subs = pd.concat([d.substitutes for d in daily], ignore_index=True)
        unfilled: dict[str, int] = {}
        for d in daily:
            for reason, n in d.unfilled_by_reason.items():
                unfilled[reason] = unfilled.get(reason, 0) + n
        filled = subs.merge(truth, on=["meter_id", "reading_ts"], suffixes=("_sub", "_true"))
        gapped = sorted(set(hidden["meter_id"]))
        sub_month = (
            measured[measured["reading_ts"].between(month_ts, end_ts, inclusive="left")]
            .groupby("meter_id")["consumption_kwh"]
            .sum()
            .add(subs.groupby("meter_id")["consumption_kwh"].sum(), fill_value=0)
        )
        rel = ((sub_month - true_month).abs() / true_month).loc[gapped]
        results[name] = {
            "hidden_quarter_hours": int(mask.sum()),
            "hidden_share": round(float(mask.mean()), 4),
            "substituted_quarter_hours": len(subs),
            "methods": {k: int(v) for k, v in subs["substitution_method"].value_counts().items()},
            "meters_with_gaps": len(gapped),
            "monthly_error_median": round(float(rel.median()), 5),
            "monthly_error_p95": round(float(rel.quantile(0.95)), 5),
            "monthly_error_p95_by_profile": {
                str(k): round(float(v.quantile(0.95)), 5)
                for k, v in rel.groupby(registry.set_index("meter_id")["load_profile"].reindex(rel.index))
            },
            "left_unfilled": dict(sorted(unfilled.items())),
            "quarter_hour_mae_kwh": round(
                float((filled["consumption_kwh_sub"] - filled["consumption_kwh_true"]).abs().mean()), 5
            ),
            "seconds": round(time.perf_counter() - began, 1),
        }
        if name in TARGET_BLOCKS:
            results[name]["target_met"] = bool(rel.quantile(0.95) <= TARGET_MONTHLY_ERROR)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=60)
    parser.add_argument("--month", default="2026-10-01", help="first day of the local month to mask")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench-results/substitutes.json"))
    args = parser.parse_args()
    figures = run(args.meters, date.fromisoformat(args.month), args.seed)
    report = {
        "meters": args.meters,
        "month": args.month,
        "seed": args.seed,
        "target_monthly_error": TARGET_MONTHLY_ERROR,
        "blocks": figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, f in figures.items():
        verdict = "" if "target_met" not in f else ("  MET" if f["target_met"] else "  MISSED")
        print(
            f"substitutes {name:>3}: monthly error median {f['monthly_error_median']:.2%}"
            f" p95 {f['monthly_error_p95']:.2%} (target p95 <= {TARGET_MONTHLY_ERROR:.0%}),"
            f" quarter-hour MAE {f['quarter_hour_mae_kwh']:.4f} kWh{verdict}"
        )


if __name__ == "__main__":
    main()
