"""The package layout's rules: production never imports the local stack, DAG files import only
their own family, and no module reaches into another's private names."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import metrify
from tests import REPO_ROOT

INCLUDE = REPO_ROOT / "include"
DAGS = REPO_ROOT / "dags"
# What every DAG file may import besides Airflow and the standard library: the assets, the
# on-call defaults and the shared vocabulary (contracts); plus the task bodies of its family
# (a tuple: the forecast DAG also renders its warehouse models with the Cosmos configuration).
SHARED = ("metrify.assets", "metrify.oncall.defaults", "metrify.contracts")
FAMILY: dict[str, str | tuple[str, ...]] = {
    "apply_retention.py": "metrify.privacy",
    "erase_meter.py": "metrify.privacy",
    "forecast_load.py": ("metrify.forecast", "metrify.warehouse.cosmos_config"),
    "ingest_meter_readings.py": "metrify.ingest",
    "ingest_grid_status.py": "metrify.sources",
    "ingest_weather.py": "metrify.sources",
    "ingest_weather_forecast.py": "metrify.sources",
    "quality_meter_readings.py": "metrify.quality",
    "quality_sources.py": "metrify.quality",
    "release_quality_interval.py": "metrify.quality",
    "transform.py": "metrify.warehouse",
    "warehouse_daily.py": "metrify.warehouse",
}


def imported_modules(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import statement in a file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def production_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(metrify.__path__, "metrify."))


def test_every_production_module_imports_with_the_dev_package_absent() -> None:
    """Each module of `metrify` imports in a fresh interpreter where `metrify_dev` cannot be found."""
    check = textwrap.dedent(
        """
        import importlib, importlib.abc, sys

        class NoDevPackage(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "metrify_dev" or name.startswith("metrify_dev."):
                    raise ModuleNotFoundError(f"{name} is not part of the production image")
                return None

        sys.meta_path.insert(0, NoDevPackage())
        for name in sys.argv[1:]:
            importlib.import_module(name)
        assert not [m for m in sys.modules if m.startswith("metrify_dev")]
        print("imported", len(sys.argv) - 1)
        """
    )
    modules = production_modules()
    assert len(modules) > 40
    done = subprocess.run([sys.executable, "-c", check, *modules], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"imported {len(modules)}"


def test_the_dev_package_blocker_catches_an_import_of_the_dev_package(tmp_path: Path) -> None:
    """The check above can fail: a production-side module importing `metrify_dev` is refused."""
    check = textwrap.dedent(
        """
        import importlib.abc, sys

        class NoDevPackage(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "metrify_dev" or name.startswith("metrify_dev."):
                    raise ModuleNotFoundError(name)
                return None

        sys.meta_path.insert(0, NoDevPackage())
        import metrify_dev.simulator
        """
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "ModuleNotFoundError: metrify_dev" in done.stderr


@pytest.mark.parametrize("path", sorted((INCLUDE / "metrify").rglob("*.py")), ids=lambda p: p.name)
def test_production_code_never_names_the_dev_package(path: Path) -> None:
    names = [module for module, _ in imported_modules(path)]
    assert not [n for n in names if n == "metrify_dev" or n.startswith("metrify_dev.")], path


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_a_dag_file_imports_only_its_family_assets_and_oncall_defaults(name: str) -> None:
    family = FAMILY[name]
    allowed = (*SHARED, *((family,) if isinstance(family, str) else family))
    for module, _ in imported_modules(DAGS / name):
        if module.split(".")[0] in ("metrify", "metrify_dev", "tests"):
            assert module.startswith(allowed), f"{name} imports {module}; allowed: {allowed}"
        else:
            assert module.split(".")[0] in ("airflow", "pendulum", "datetime", "typing", "__future__"), (name, module)


def test_every_dag_file_has_a_family() -> None:
    assert sorted(p.name for p in DAGS.glob("*.py")) == sorted(FAMILY)


@pytest.mark.parametrize(
    "path", sorted([*INCLUDE.rglob("*.py"), *DAGS.glob("*.py")]), ids=lambda p: str(p.relative_to(REPO_ROOT))
)
def test_no_module_imports_another_modules_private_names(path: Path) -> None:
    for module, names in imported_modules(path):
        if module.startswith("metrify"):
            private = [n for n in names if n.startswith("_") and n != "__future__"]
            assert not private, f"{path.name} imports private {private} from {module}"
