"""Clearing a task of a run with a pending deadline works in Airflow 3.3.0-3.3.2
(`metrify.oncall.airflow_patches`): the API server and the CLI load this plugin."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from metrify.oncall.airflow_patches import patch_clearing_with_deadlines

patch_clearing_with_deadlines()


class MetrifyAirflowPatches(AirflowPlugin):
    name = "metrify_airflow_patches"
