"""No telemetry unless asked: dbt through metrify's runner, Great Expectations through
metrify.quality and Cosmos through the transform DAG run with every outbound connection and
name lookup recorded (loopback allowed, anything else refused and recorded); none may leave."""

from __future__ import annotations

import importlib.util
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from tests import REPO_ROOT

LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")
SWITCHES = ("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "DBT_SEND_ANONYMOUS_USAGE_STATS", "GX_ANALYTICS_ENABLED")


@pytest.fixture
def outbound(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every non-loopback destination a connect or a DNS lookup asked for (each is refused)."""
    seen: list[str] = []
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def is_local(host: Any) -> bool:
        return not isinstance(host, str) or host.startswith(LOOPBACK) or host.startswith("/")

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if self.family != socket.AF_UNIX and not is_local(host):
            seen.append(f"connect {address}")
            raise ConnectionRefusedError(f"outbound connection to {address} refused by the test")
        return connect(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not is_local(host):
            seen.append(f"dns {host}")
            raise socket.gaierror(f"name lookup of {host} refused by the test")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    for name in (*SWITCHES, "DO_NOT_TRACK", "SCARF_NO_ANALYTICS"):
        monkeypatch.delenv(name, raising=False)  # the defaults, as in a fresh container
    yield seen


def test_dbt_through_metrifys_runner_sends_no_usage_stats(outbound, metrify_home) -> None:
    from metrify.warehouse import dbt_runner

    manifest = dbt_runner.build_manifest()  # `dbt parse`, as `make` runs it
    assert manifest.exists()
    assert outbound == [], f"dbt reached out: {outbound}"


def test_great_expectations_context_and_checkpoint_send_nothing(outbound, metrify_home, tmp_path: Path) -> None:
    from metrify.quality.checkpoint import run_suites
    from metrify.quality.expectations import Expect

    frame = pd.DataFrame({"voltage": [229.0, 231.5, 230.2]})
    suite = [
        Expect("ExpectColumnValuesToBeBetween", {"column": "voltage", "min_value": 207, "max_value": 253}, "critical")
    ]
    outcome = run_suites({"voltage": (suite, frame)}, gx_home=tmp_path / "gx", build_docs=True, run_name="t")
    assert outcome.success
    assert outbound == [], f"Great Expectations reached out: {outbound}"
    config = (tmp_path / "gx" / "gx" / "great_expectations.yml").read_text()
    assert "analytics_enabled: false" in config, "the file context records analytics as off"


def _cosmos_transform_dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    from metrify.config import load_settings
    from metrify.warehouse import dbt_runner

    if not load_settings().dbt_manifest.exists():
        dbt_runner.build_manifest()
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "transform.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["transform"]


def test_cosmos_dag_runs_emit_no_usage_metrics(outbound, monkeypatch) -> None:
    import cosmos.settings
    from cosmos import telemetry
    from cosmos.listeners import dag_run_listener

    monkeypatch.setattr(cosmos.settings, "enable_telemetry", True)  # Cosmos's own default
    dag = _cosmos_transform_dag()
    run = SimpleNamespace(dag_id=dag.dag_id, get_dag=lambda: dag, dag_hash="x")
    dag_run_listener.on_dag_run_success(dag_run=run, msg="")
    dag_run_listener.on_dag_run_failed(dag_run=run, msg="")
    assert not telemetry.should_emit()
    assert outbound == [], f"Cosmos reached out: {outbound}"


def test_the_plugin_switches_cosmos_telemetry_off_in_every_airflow_component(outbound, monkeypatch) -> None:
    """The scheduler and API server run Cosmos's listeners and views but never import metrify's
    DAG code: the project's Airflow plugin switches telemetry off there."""
    import cosmos.settings

    monkeypatch.setattr(cosmos.settings, "enable_telemetry", True)
    path = REPO_ROOT / "plugins" / "metrify_telemetry.py"
    assert path.exists(), "no plugin switches telemetry off for the scheduler and API server"
    spec = importlib.util.spec_from_file_location("metrify_telemetry_plugin", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "metrify_telemetry_plugin", module)
    spec.loader.exec_module(module)
    assert cosmos.settings.enable_telemetry is False


def test_asking_for_telemetry_is_respected(monkeypatch) -> None:
    import cosmos.settings

    from metrify import telemetry

    monkeypatch.setenv("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "True")
    monkeypatch.setattr(cosmos.settings, "enable_telemetry", True)
    telemetry.telemetry_off()
    assert cosmos.settings.enable_telemetry is True


def test_the_local_stack_switches_telemetry_off(metrify_home) -> None:
    from metrify_dev.airflow_env import environment

    env = environment()
    assert {name: env[name] for name in SWITCHES} == dict.fromkeys(SWITCHES, "False")
    assert env["DO_NOT_TRACK"] == "1" and env["SCARF_NO_ANALYTICS"] == "true"
