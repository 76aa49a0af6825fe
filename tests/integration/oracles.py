"""Independent expectations the integration tests compare the warehouse with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def _per_hour(frame: pd.DataFrame) -> pd.DataFrame:
    hour = (pd.to_datetime(frame["reading_ts"], utc=True) - pd.Timedelta(minutes=15)).dt.floor("h")
    return frame.groupby(hour.dt.tz_localize(None)).agg(
        readings=("meter_id", "size"), consumption_kwh=("consumption_kwh", "sum")
    )


def expected_hourly(frame: pd.DataFrame) -> pd.DataFrame:
    """Per UTC hour (interval start): distinct readings and kWh, the later delivery winning."""
    data = frame.copy()
    data["order"] = np.arange(len(data))
    data = data.sort_values("order").drop_duplicates(["meter_id", "reading_ts"], keep="last")
    return _per_hour(data)


def validated_hourly(lake_dir: Path) -> pd.DataFrame:
    """Per UTC hour (interval start): readings and kWh in the local lake's validated/meter_readings
    files as they are, found on disk and read with pyarrow (not through the lake or the warehouse
    code)."""
    files = sorted((lake_dir / "validated" / "meter_readings").rglob("*.parquet"))
    columns = ["meter_id", "reading_ts", "consumption_kwh"]
    return _per_hour(pa.concat_tables([pq.read_table(f, columns=columns) for f in files]).to_pandas())
