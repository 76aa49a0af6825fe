"""Fixtures of the integration tests: a private METRIFY_HOME per warehouse test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from metrify.config import environ_overrides


@pytest.fixture(scope="module")
def warehouse_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private METRIFY_HOME (lake, warehouse, postgres) shared by one test module."""
    home = tmp_path_factory.mktemp("metrify")
    with environ_overrides({"METRIFY_HOME": str(home), "METRIFY_LAKE_URL": None, "METRIFY_WAREHOUSE_PATH": None}):
        yield home
