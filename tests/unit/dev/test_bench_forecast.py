"""The forecast backtest on a tiny fleet: it runs end to end and its figures are sane."""

from __future__ import annotations

from datetime import date

from metrify_dev.bench import forecast


def test_backtest_reports_every_series_with_figures() -> None:
    report = forecast.run(meters=40, first=date(2026, 12, 23), last=date(2026, 12, 23), seed=3, workers=1)
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
