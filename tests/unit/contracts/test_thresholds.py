"""Each contract and threshold is defined once: the dbt project reads the same values as vars."""

from __future__ import annotations

import yaml

from metrify.config import load_settings
from metrify.contracts import grid, readings, registry, thresholds, weather
from metrify.warehouse.business_calendar import BUSINESS_TIMEZONE
from metrify.warehouse.catalog import REGISTRY_COLUMNS, SOURCES, VERDICT_COLUMNS


def dbt_vars() -> dict:
    return yaml.safe_load((load_settings().dbt_dir / "dbt_project.yml").read_text())["vars"]


def test_dbt_vars_are_the_en50160_bands_of_the_contract() -> None:
    found = dbt_vars()
    assert (found["voltage_min"], found["voltage_max"]) == thresholds.VOLTAGE_BAND_V
    assert (found["frequency_min"], found["frequency_max"]) == thresholds.FREQUENCY_NORMAL_HZ


def test_dbt_business_timezone_is_the_calendars() -> None:
    assert dbt_vars()["business_timezone"] == BUSINESS_TIMEZONE


def test_the_warehouse_loads_the_contract_columns_with_the_contract_types() -> None:
    assert [c for c, _ in SOURCES["grid_status"].columns] == list(grid.CONTRACT_COLUMNS)
    assert [c for c, _ in SOURCES["weather"].columns] == list(weather.CONTRACT_COLUMNS)
    readings_columns = [c for c, _ in SOURCES["meter_readings"].columns]
    assert readings_columns[: len(readings.PAYLOAD_SCHEMA)] == readings.PAYLOAD_SCHEMA.names
    assert dict(SOURCES["meter_readings"].columns)["reading_ts"] == "ts"
    assert [c for c, _ in REGISTRY_COLUMNS] == registry.REGISTRY_SCHEMA.names


def test_the_contract_columns_exist_in_the_landed_schemas() -> None:
    assert set(grid.CONTRACT_COLUMNS) <= set(grid.GRID_SCHEMA.names)
    assert set(weather.CONTRACT_COLUMNS) <= set(weather.WEATHER_SCHEMA.names)


def test_dbt_sources_name_only_columns_the_warehouse_loads() -> None:
    """Every column the dbt sources document exists in the raw table the loader creates."""
    sources = yaml.safe_load((load_settings().dbt_dir / "models" / "staging" / "_sources.yml").read_text())
    loaded = {name: {c for c, _ in source.all_columns} for name, source in SOURCES.items()}
    loaded["meter_registry"] = {c for c, _ in REGISTRY_COLUMNS} | {"_loaded_at"}
    loaded["quality_verdicts"] = {c for c, _ in VERDICT_COLUMNS} | {"_loaded_at"}
    checked = 0
    for source in sources["sources"]:
        for table in source.get("tables", []):
            for column in table.get("columns", []):
                assert column["name"] in loaded[table["name"]], (table["name"], column["name"])
                checked += 1
    assert checked > 0
