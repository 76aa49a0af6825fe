"""Fixtures of the security tests: a private lake and METRIFY_HOME."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def lake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A private `file://` lake and METRIFY_HOME."""
    from metrify import lake
    from metrify.config import load_settings

    monkeypatch.setenv("METRIFY_HOME", str(tmp_path / "metrify"))
    monkeypatch.setenv("METRIFY_LAKE_URL", (tmp_path / "lake").as_uri())
    return lake.lake_root(load_settings())
