"""Fixtures of the unit tests: the fake grid and weather APIs, and a private lake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_apis import DAY, FAST, NOW


@pytest.fixture(scope="module")
def fakes() -> Iterator[Any]:
    """The fake APIs (ENTSO-E, gridradar, Bright Sky, OpenWeatherMap, netztransparenz) on loopback."""
    from metrify_dev.fakes import start_fakes

    stack = start_fakes(seed=42, anchor=DAY, client_extra=FAST, now=lambda: NOW)
    yield stack
    stack.stop()


@pytest.fixture
def clean_fakes(fakes: Any) -> Iterator[Any]:
    """The fake APIs with no fault switched on, before and after the test."""
    for server in fakes.servers.values():
        server.clear()
    yield fakes
    for server in fakes.servers.values():
        server.clear()


@pytest.fixture
def lake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A private `file://` lake and METRIFY_HOME."""
    from metrify import lake
    from metrify.config import load_settings

    monkeypatch.setenv("METRIFY_HOME", str(tmp_path / "metrify"))
    monkeypatch.setenv("METRIFY_LAKE_URL", (tmp_path / "lake").as_uri())
    return lake.lake_root(load_settings())
