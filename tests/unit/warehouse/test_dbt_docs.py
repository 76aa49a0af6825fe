"""Model descriptions become table comments on both engines: keep them to text fakesnow can store."""

from __future__ import annotations

from pathlib import Path

import yaml

from metrify.config import load_settings


def model_descriptions(models: Path) -> dict[str, str]:
    """Each model's description from the project's YAML files."""
    found: dict[str, str] = {}
    for path in sorted(models.rglob("*.yml")):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            found[model["name"]] = model.get("description", "")
    return found


def test_model_descriptions_have_no_ascii_apostrophe() -> None:
    """dbt-snowflake writes `comment on table ... is $$<description>$$`; fakesnow (the test
    suite's Snowflake) hangs on a description holding an ASCII apostrophe (seen: 15 minutes on
    "the day's"), so descriptions use the typographic one (’)."""
    descriptions = model_descriptions(load_settings().dbt_dir / "models")
    assert len(descriptions) >= 16
    assert not {name: text for name, text in descriptions.items() if "'" in text}
