"""The forecast backtest on a tiny fleet: it runs end to end and its figures are sane."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest

from metrify.contracts.geography import CITIES
from metrify_dev.bench import forecast


def test_backtest_reports_every_series_with_figures() -> None:
    report = forecast.run(
        meters=40, min_per_region=0, first=date(2026, 12, 23), last=date(2026, 12, 23), seed=3, workers=1
    )
    kinds = {r["series_kind"] for r in report["series"]}
    assert kinds == {"region", "control_area"}
    assert {r["series"] for r in report["series"] if r["series_kind"] == "control_area"} <= {
        "50Hertz",
        "Amprion",
        "TenneT",
        "TransnetBW",
    }
    for r in report["series"]:
        assert r["days"] == 1 and r["model_days"] == 1
        assert 0 < r["nmae"] < 1 and 0 < r["nmae_seasonal_naive"] < 2
        assert 0 <= r["coverage_p10_p90"] <= 1
    assert set(report["targets"].values()) <= {"MET", "MISSED"}
    assert "ratio" in forecast.table(report)


def test_every_state_gets_the_minimum_meters_in_its_own_cities() -> None:
    registry = forecast.backtest_registry(200, 30, seed=1)
    counts = registry["region"].value_counts()
    assert set(counts.index) == {c.region for c in CITIES}
    assert counts.min() >= 30
    region_of = {c.name: (c.region, c.tso) for c in CITIES}
    places = registry[["city", "region", "grid_operator"]].itertuples(index=False)
    assert all(region_of[city] == (region, tso) for city, region, tso in places)
    # the population-weighted part stays as the simulator builds it; only short states are topped up
    weighted = forecast.build_registry(200, np.random.default_rng(1))
    weighted_counts = weighted["region"].value_counts().reindex(counts.index, fill_value=0)
    assert registry.iloc[:200]["meter_id"].tolist() == weighted["meter_id"].tolist()
    assert len(registry) == 200 + int((30 - weighted_counts).clip(lower=0).sum())


def test_backtest_trains_once_per_retrain_period(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = forecast.backtest_registry(0, 20, seed=2)
    registry = registry[registry["region"] == "Bremen"].reset_index(drop=True)
    first, last = date(2026, 12, 1), date(2026, 12, 1 + forecast.RETRAIN_DAYS)
    fleet = forecast.simulate_fleet(
        registry, first - timedelta(days=forecast.HISTORY_DAYS + 2), last + timedelta(days=1), 2, 1
    )
    calls: list[Any] = []
    real_train = forecast.train_model

    def counting_train(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(forecast, "train_model", counting_train)
    key = ("region", "Bremen")
    result = forecast.backtest_series((key, fleet.loads[key], fleet.observed[key], fleet.lats[key], first, last, 2))
    assert result["days"] == forecast.RETRAIN_DAYS + 1 and result["model_days"] == forecast.RETRAIN_DAYS + 1
    assert len(calls) == 2  # day 1 and day 1 + RETRAIN_DAYS
