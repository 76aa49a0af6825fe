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
