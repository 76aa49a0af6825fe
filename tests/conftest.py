"""Shared fixtures. In CI (CI=true) a missing prerequisite fails the test instead of skipping it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from metrify_dev import kafka_mock

# Airflow reads its configuration once, at first import: point it at a throw-away home so the
# tests never touch ~/airflow or the developer's .metrify/airflow.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="metrify-test-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip with a clear reason on a developer machine; fail in CI, where nothing may skip."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def metrify_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private METRIFY_HOME (lake, broker state, Airflow home) for one test."""
    home = tmp_path / "metrify"
    monkeypatch.setenv("METRIFY_HOME", str(home))
    monkeypatch.delenv("METRIFY_LAKE_URL", raising=False)
    return home


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One embedded Kafka broker (a real Kafka-protocol server on loopback) for the session."""
    from metrify.config import environ_overrides, load_settings

    home = tmp_path_factory.mktemp("broker")
    with environ_overrides({"METRIFY_HOME": str(home)}):
        settings = load_settings()
        info = kafka_mock.up(settings)
    yield {**info, "home": home, "settings": settings}
    kafka_mock.down(settings)
