"""Every Airflow Asset of the pipeline: the lake layers and the warehouse, by `metrify://` URI.

Producers name them in `outlets`, consumers in `schedule`; the URIs are defined here only.
"""

from __future__ import annotations

from airflow.sdk import Asset

RAW_METER_READINGS = Asset("metrify://lake/raw/meter_readings")
RAW_GRID_STATUS = Asset("metrify://lake/raw/grid_status")
RAW_WEATHER = Asset("metrify://lake/raw/weather")
VALIDATED_METER_READINGS = Asset("metrify://lake/validated/meter_readings")
VALIDATED_GRID_STATUS = Asset("metrify://lake/validated/grid_status")
VALIDATED_WEATHER = Asset("metrify://lake/validated/weather")
WAREHOUSE_MARTS = Asset("metrify://warehouse/marts")
WAREHOUSE_METRICS = Asset("metrify://warehouse/metrics")
RAW_WEATHER_FORECAST = Asset("metrify://lake/raw/weather_forecast")
LOAD_FORECAST = Asset("metrify://lake/forecast/load_forecast")
