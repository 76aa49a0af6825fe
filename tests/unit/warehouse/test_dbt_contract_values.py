"""The dbt project's accepted values follow the contracts: a class added in Python (a new load
profile) must reach every dbt test of that column, or the warehouse build fails on its first row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from metrify.config import load_settings
from metrify.contracts.registry import LOAD_PROFILES


def accepted_values(models: Path, column: str) -> Iterator[tuple[str, list[Any]]]:
    """(model, values) of every `accepted_values` test on `column` in the project's YAML files."""
    for path in sorted(models.rglob("*.yml")):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            for col in model.get("columns", []):
                if col["name"] != column:
                    continue
                for test in col.get("data_tests", []):
                    if isinstance(test, dict) and "accepted_values" in test:
                        yield model["name"], test["accepted_values"]["arguments"]["values"]


def test_every_load_profile_test_accepts_exactly_the_contract_classes() -> None:
    found = dict(accepted_values(load_settings().dbt_dir / "models", "load_profile"))
    assert len(found) >= 3, found  # staging registry, dim_meters, the daily metrics
    wrong = {model: values for model, values in found.items() if sorted(values) != sorted(LOAD_PROFILES)}
    assert not wrong, f"accepted load profiles differ from metrify.contracts.registry.LOAD_PROFILES: {wrong}"


def source_accepted_values(models: Path, table: str, column: str) -> list[Any]:
    """The `accepted_values` of `column` of the source table `table` in the project's YAML files."""
    for path in sorted(models.rglob("*.yml")):
        for source in (yaml.safe_load(path.read_text()) or {}).get("sources", []):
            for tab in (t for t in source.get("tables", []) if t["name"] == table):
                for col in (c for c in tab.get("columns", []) if c["name"] == column):
                    for test in col.get("data_tests", []):
                        if isinstance(test, dict) and "accepted_values" in test:
                            return list(test["accepted_values"]["arguments"]["values"])
    return []


def test_substitute_methods_and_gap_reasons_follow_the_contract() -> None:
    """A substitution method or gap reason added in Python reaches the dbt tests of the layer."""
    from metrify.contracts.substitutes import GAP_REASONS
    from metrify.substitution.method import METHODS

    models = load_settings().dbt_dir / "models"
    assert sorted(source_accepted_values(models, "substituted_readings", "method")) == sorted(METHODS)
    assert sorted(source_accepted_values(models, "substituted_readings", "gap_reason")) == sorted(GAP_REASONS)
    assert {m: sorted(v) for m, v in accepted_values(models, "substitution_method")} == {
        "stg_substituted_readings": sorted(METHODS)
    }
