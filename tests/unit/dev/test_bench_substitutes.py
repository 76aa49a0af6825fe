"""The masked backtest of substitute values: the mask it hides and the figures it reports."""

from __future__ import annotations

from datetime import date

import numpy as np

from metrify_dev.bench import substitutes


def test_mask_hides_five_percent_in_whole_blocks() -> None:
    mask = substitutes._mask(10, 2976, 96, np.random.default_rng(1))
    assert abs(mask.mean() - substitutes.HIDDEN_SHARE) < 0.005
    for row in mask:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
        lengths = edges[1::2] - edges[::2]
        assert (lengths == 96).all()


def test_backtest_reports_every_block_length_and_judges_the_targets() -> None:
    figures = substitutes.run(meters=6, month_start=date(2026, 10, 1), seed=3)
    assert set(figures) == set(substitutes.BLOCKS)
    one_hour = figures["1h"]
    assert one_hour["substituted_quarter_hours"] == one_hour["hidden_quarter_hours"]
    assert 0 < one_hour["monthly_error_median"] < 0.01
    assert "target_met" in figures["24h"] and "target_met" not in figures["7d"]
