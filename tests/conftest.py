"""Shared fixtures. In CI (CI=true) a missing prerequisite fails the test instead of skipping it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metrify_dev import kafka_mock

# Airflow reads its configuration once, at first import: point it at a throw-away home so the
# tests never touch ~/airflow or the developer's .metrify/airflow.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="metrify-test-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
# every test's own Airflow home gets a copy of the first migrated metadata DB (`ensure_db`)
os.environ["METRIFY_AIRFLOW_DB_TEMPLATE"] = str(_AIRFLOW_HOME / "migrated-template.db")

pytest_plugins = ["pytester", "tests.skip_rule", "tests.airflow_stack"]

# `make test` runs the suite on two xdist workers. Each module is one unit of work (its module
# fixtures are set up once); these modules, each running a whole Airflow stack (scheduler, API
# server, executor), share one unit, scheduled first, so two stacks never compete for the cores.
ONE_STACK_AT_A_TIME = (
    "tests/browser/test_airflow_ui.py",
    "tests/integration/test_production_run.py",
    "tests/integration/test_backfill_cli.py",
    "tests/security/test_api_authorization.py",
)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's module-by-module scheduling, with the Airflow-stack modules as one unit."""
    from xdist.scheduler import LoadScopeScheduling

    class ModulesAndOneStackAtATime(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "airflow-stacks" if module in ONE_STACK_AT_A_TIME else module

    return ModulesAndOneStackAtATime(config, log)


@pytest.fixture
def metrify_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private METRIFY_HOME (lake, broker state, Airflow home) for one test."""
    home = tmp_path / "metrify"
    monkeypatch.setenv("METRIFY_HOME", str(home))
    monkeypatch.delenv("METRIFY_LAKE_URL", raising=False)
    return home


@pytest.fixture(scope="session")
def dbt_manifest() -> Path:
    """dbt/target/manifest.json, written by `dbt parse` once per session (not once per test):
    the tests that render the Cosmos DAGs share it, as the DAG processor and the workers do."""
    from metrify.warehouse.dbt_runner import build_manifest

    return build_manifest()


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


@pytest.fixture(scope="session")
def real_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Apache Kafka broker (KRaft, SASL_SSL/SCRAM) for the session; clients connect with
    `real_broker.connection_extra()`, as a production Airflow connection's extra would read."""
    import shutil

    from metrify_dev import kafka_broker
    from tests import REPO_ROOT
    from tests.skip_rule import require

    require(
        shutil.which("java") is not None and shutil.which("mvn") is not None,
        f"the Kafka broker needs java and mvn ({kafka_broker.INSTALL_HINT})",
    )
    broker = kafka_broker.KafkaBroker(
        tmp_path_factory.mktemp("kafka-real"), dist_home=REPO_ROOT / ".metrify" / "kafka-dist"
    )
    broker.up()
    yield broker
    broker.stop()


@pytest.fixture(autouse=True)
def fresh_object_stores() -> Iterator[None]:
    """Airflow keeps one object store per connection id for the life of a process: after each
    test it is dropped, so a test that points `aws_default` at its own S3 server never writes
    through the store an earlier test attached (the production-shaped run's, for one)."""
    yield
    import sys

    store = sys.modules.get("airflow.sdk.io.store")
    if store is not None:
        store._STORE_CACHE.clear()
