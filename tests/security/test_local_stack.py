"""The local stack keeps its secrets private: secret files are 0600 (their folders 0700), the UI
listens on loopback unless told otherwise, and `metrify up` prints where the passwords are,
never the passwords."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from metrify.config import load_settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_jwt_secret_is_private(metrify_home) -> None:
    from metrify_dev import stack

    settings = load_settings()
    env = stack.stack_environment(settings)
    secret_file = settings.airflow_home / "jwt_secret"
    assert mode(secret_file) == 0o600
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == secret_file.read_text().strip()
    secret_file.chmod(0o644)  # left readable by an older version
    assert stack.stack_environment(settings)["AIRFLOW__API_AUTH__JWT_SECRET"] == secret_file.read_text().strip()
    assert mode(secret_file) == 0o600


def test_the_simple_auth_manager_writes_its_passwords_into_a_private_file(metrify_home, monkeypatch) -> None:
    """Airflow's SimpleAuthManager generates the passwords (opening the file with "a+"): the
    stack makes the file first, 0600, so the passwords land in a private file."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    from metrify_dev import stack

    settings = load_settings()
    env = stack.stack_environment(settings)
    path = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert path.parent == settings.airflow_home and mode(path) == 0o600
    for name in ("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"):
        monkeypatch.setenv(name, env[name])
    SimpleAuthManager().init()
    assert set(json.loads(path.read_text())) == {"admin", "operator", "user", "viewer"}
    assert mode(path) == 0o600
    assert stack.passwords(settings).keys() == {"admin", "operator", "user", "viewer"}


def test_kafka_tls_keys_are_private(tmp_path: Path) -> None:
    from metrify_dev import kafka_broker

    ca, keystore = kafka_broker.write_tls_files(tmp_path / "state" / "tls")
    assert mode(ca) == mode(keystore) == 0o600
    assert mode(keystore.parent) == 0o700, "the folder holding the private key is private too"


def test_the_api_server_listens_on_loopback_by_default(metrify_home, monkeypatch) -> None:
    from metrify_dev import stack

    monkeypatch.delenv("METRIFY_UI_HOST", raising=False)
    env = stack.stack_environment(load_settings())
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    monkeypatch.setenv("METRIFY_UI_HOST", "0.0.0.0")  # a developer who wants it on the network says so
    assert stack.stack_environment(load_settings())["AIRFLOW__API__HOST"] == "0.0.0.0"


def test_metrify_up_prints_the_passwords_file_not_the_passwords(
    metrify_home, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from metrify_dev import cli, stack

    settings = load_settings()
    secrets = {"admin": "Adm1nSecretPw99", "operator": "OpSecretPw4242x", "viewer": "ViewSecretPw777"}
    path = settings.airflow_home / "simple_auth_manager_passwords.json.generated"
    info = {
        "url": "http://127.0.0.1:8080",
        "kafka": "127.0.0.1:9092",
        "health": {},
        "passwords": secrets,
        "passwords_file": str(path),
    }
    monkeypatch.setattr(stack, "up", lambda **_: info)
    cli.main(["up"])
    out = capsys.readouterr()
    for password in secrets.values():
        assert password not in out.out + out.err
    assert str(path) in out.out
    assert "admin" in out.out and "viewer" in out.out
