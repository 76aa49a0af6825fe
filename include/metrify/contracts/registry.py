"""The `meter_registry` contract: the operational registry (PostgreSQL) the warehouse copies.

Load-profile classes follow BDEW 2025: H25 households, G25 businesses, L25 farms, P25
households with PV, and WP households with a heat pump or electric heating (temperature-dependent).
"""

from __future__ import annotations

import pyarrow as pa

TABLE = "meter_registry"
REGISTRY_SCHEMA = pa.schema(
    [
        ("meter_id", pa.string()),
        ("load_profile", pa.string()),
        ("postal_code", pa.string()),
        ("city", pa.string()),
        ("region", pa.string()),
        ("grid_operator", pa.string()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("installed_date", pa.date32()),
        ("status", pa.string()),
        ("yearly_kwh", pa.float64()),
        ("pv_kwp", pa.float64()),
    ]
)
LOAD_PROFILES = ("H25", "G25", "L25", "P25", "WP")
