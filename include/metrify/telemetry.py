"""No usage telemetry unless asked: Cosmos, dbt and Great Expectations default to off here.

Each of them would report usage to its vendor by default: astronomer-cosmos sends usage metrics
from its DAG-run and task listeners and its docs view (`cosmos.settings.enable_telemetry`, read
from `AIRFLOW__COSMOS__ENABLE_TELEMETRY`); dbt-core sends anonymous usage events on every
invocation (`DBT_SEND_ANONYMOUS_USAGE_STATS`; the project also sets the `flags:` entry in
`dbt/dbt_project.yml`); Great Expectations reads `GX_ANALYTICS_ENABLED` and the context's
`analytics_enabled`. `telemetry_off()` sets each variable to off unless it is already set (so
asking for telemetry is setting it to true), and switches Cosmos's loaded setting to match. It
runs where metrify builds Cosmos configs, runs dbt and creates a GX context, and from the Airflow
plugin `plugins/metrify_telemetry.py` in components that never import those (scheduler, API server).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

#: Each tool's switch and the value that turns it off.
TELEMETRY_OFF = {
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    "GX_ANALYTICS_ENABLED": "False",
}
TRUE = ("1", "t", "true", "y", "yes", "on")


def asked_for(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment explicitly switches telemetry variable `name` on."""
    return (os.environ if environ is None else environ).get(name, "").strip().lower() in TRUE


def telemetry_off() -> None:
    """Switch every tool's usage telemetry off in this process, unless the environment asks for it."""
    for name, value in TELEMETRY_OFF.items():
        if not os.environ.get(name):
            os.environ[name] = value
    cosmos_settings: Any = sys.modules.get("cosmos.settings")  # loaded already: its value was read at import
    if cosmos_settings is not None:
        cosmos_settings.enable_telemetry = asked_for("AIRFLOW__COSMOS__ENABLE_TELEMETRY")
