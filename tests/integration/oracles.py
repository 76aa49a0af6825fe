"""Independent expectations the integration tests compare the warehouse with."""

from __future__ import annotations

import numpy as np
import pandas as pd


def expected_hourly(frame: pd.DataFrame) -> pd.DataFrame:
    """Per UTC hour (interval start): distinct readings and kWh, the later delivery winning."""
    data = frame.copy()
    data["order"] = np.arange(len(data))
    data = data.sort_values("order").drop_duplicates(["meter_id", "reading_ts"], keep="last")
    hour = (pd.to_datetime(data["reading_ts"], utc=True) - pd.Timedelta(minutes=15)).dt.floor("h")
    return data.groupby(hour.dt.tz_localize(None)).agg(
        readings=("meter_id", "size"), consumption_kwh=("consumption_kwh", "sum")
    )
