"""docker-compose.yaml has no default secret and publishes no admin port: it refuses to start
until every secret is set, and only the API server is reachable, on loopback by default."""

from __future__ import annotations

import re

import pytest
import yaml

from tests import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yaml"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|JWT|PRIVATE_KEY|ACCESS_KEY|_KEY$")
WELL_KNOWN_DEFAULTS = ("minioadmin", "change-me", "airflow:airflow@", '"password": "airflow"', "changeit")
REQUIRED_SECRETS = {
    "AIRFLOW__API_AUTH__JWT_SECRET": "AIRFLOW_JWT_SECRET",
    "AIRFLOW__CORE__FERNET_KEY": "AIRFLOW_FERNET_KEY",
    "METRIFY_PSEUDONYM_KEY": "METRIFY_PSEUDONYM_KEY",
}


def compose_problems(text: str) -> list[str]:
    """Every default credential and published admin port in a compose file's text."""
    problems = []
    for match in re.finditer(r"\$\{(\w+)(:?-)([^}]*)\}", text):
        name, default = match.group(1), match.group(3)
        if SECRET_NAME.search(name) and default:
            problems.append(f"${{{name}}} defaults to {default!r}: a secret must be required (${{{name}:?...}})")
    for literal in WELL_KNOWN_DEFAULTS:
        if literal in text:
            problems.append(f"well-known default credential {literal!r}")
    services = yaml.safe_load(text)["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            if name != "airflow-apiserver":
                problems.append(f"{name} publishes port {port}: only the API server may be reachable")
            elif not re.match(r"^(127\.0\.0\.1|\$\{\w+:-127\.0\.0\.1\}):", str(port)):
                problems.append(f"{name} publishes {port} on every interface: bind it to loopback by default")
    environment = next(s for s in services.values() if "AIRFLOW__CORE__EXECUTOR" in s.get("environment", {}))[
        "environment"
    ]
    for key, variable in REQUIRED_SECRETS.items():
        if not re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", str(environment.get(key, ""))):
            problems.append(f"{key} must come from ${{{variable}:?...}} (required, no default)")
    return problems


def test_compose_has_no_default_secret_and_no_published_admin_port() -> None:
    assert compose_problems(COMPOSE.read_text()) == []


@pytest.mark.parametrize(
    "edit, found",
    [
        (("${AIRFLOW_JWT_SECRET:?", "${AIRFLOW_JWT_SECRET:-change-me-in-production}${X:?"), "change-me"),
        (('"${AIRFLOW_UI_BIND:-127.0.0.1}:8080:8080"', '"8080:8080"'), "on every interface"),
        (("    command: server /data\n", '    command: server /data\n    ports: ["9001:9001"]\n'), "minio publishes"),
        (("${REDIS_PASSWORD:?set REDIS_PASSWORD}@", "${REDIS_PASSWORD:-redis}@"), "REDIS_PASSWORD"),
    ],
)
def test_the_check_finds_each_kind_of_problem(edit: tuple[str, str], found: str) -> None:
    text = COMPOSE.read_text()
    assert edit[0] in text
    assert any(found in problem for problem in compose_problems(text.replace(edit[0], edit[1], 1)))
