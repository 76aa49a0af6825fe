"""BDEW standard load profiles (2025 edition, via demandlib) for quarter-hours in UTC."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

BERLIN = "Europe/Berlin"
# Profiles are normalised by demandlib to 1 GWh/year; yearly kWh scale them.
PROFILE_ANNUAL_KWH = 1_000_000.0


def has_profile(load_profile: str) -> bool:
    """Whether demandlib's `bdew` module has a standard load profile of this class (it has none
    for heat pumps / electric heating, `WP`: those are temperature-dependent, not standard)."""
    from demandlib import bdew

    return re.fullmatch(r"[A-Z][0-9]{2}", str(load_profile)) is not None and hasattr(bdew, load_profile)


def profile_kw(load_profile: str, interval_starts_utc: pd.DatetimeIndex) -> np.ndarray:
    """BDEW profile in kW per 1 GWh/year for 15-minute intervals starting at the given UTC instants.

    Any class demandlib's `bdew` module offers (H25, G25, L25, P25, ...) is accepted by name.
    """
    import holidays
    from demandlib import bdew

    profile_class = getattr(bdew, load_profile, None)
    if profile_class is None:
        raise ValueError(f"unknown BDEW load profile {load_profile!r} (demandlib.bdew has no such class)")
    local = interval_starts_utc.tz_convert(BERLIN)
    years = sorted(set(local.year))
    german_holidays = holidays.Germany(years=years, categories=("public",))
    # demandlib needs a fixed-step index; the local wall time drives its profile lookup.
    values = profile_class(pd.DatetimeIndex(local, freq="15min"), holidays=dict(german_holidays))
    return np.asarray(values, dtype=float)


def profile_kwh(load_profile: str, yearly_kwh: float, interval_starts_utc: pd.DatetimeIndex) -> np.ndarray:
    """Energy (kWh) per quarter-hour of a meter with this profile and yearly consumption."""
    return profile_kw(load_profile, interval_starts_utc) * 0.25 * (yearly_kwh / PROFILE_ANNUAL_KWH)
