"""Usage telemetry off in every Airflow component (`metrify.telemetry`).

Cosmos's listeners and docs view run in the scheduler and the API server too, which never import
metrify's DAG code; Airflow loads this plugin in each component.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from metrify.telemetry import telemetry_off

telemetry_off()


class MetrifyTelemetryOff(AirflowPlugin):
    name = "metrify_telemetry_off"
