"""Settings read from the environment in one place."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from metrify.config import load_settings
from tests import REPO_ROOT


def test_the_late_lookback_defaults_to_35_days_and_can_be_set() -> None:
    assert load_settings({}).late_lookback_days == 35
    assert load_settings({"METRIFY_LATE_LOOKBACK_DAYS": "90"}).late_lookback_days == 90


@pytest.mark.parametrize("value", ["0", "-3", "five"])
def test_a_late_lookback_that_is_not_a_positive_number_of_days_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="METRIFY_LATE_LOOKBACK_DAYS must be a positive whole number of days"):
        load_settings({"METRIFY_LATE_LOOKBACK_DAYS": value})


def test_a_source_checkout_keeps_its_state_and_dbt_project_in_the_checkout() -> None:
    """The editable dev install: `make run` works on a fresh clone without any setting."""
    settings = load_settings({})
    assert settings.home == REPO_ROOT / ".metrify"
    assert settings.dbt_dir == REPO_ROOT / "dbt"
    assert settings.dbt_manifest == REPO_ROOT / "dbt" / "target" / "manifest.json"


INSTALLED_DEFAULTS = """
import json, metrify.config as config
s = config.load_settings()
print(json.dumps({"module": config.__file__, "home": str(s.home), "dbt_dir": str(s.dbt_dir),
                  "warehouse_path": str(s.warehouse_path), "lake_url": s.lake_url, "alert_log": s.alert_log}))
"""


@pytest.mark.parametrize("airflow_home", ["set", "unset"])
def test_installed_the_defaults_never_point_into_the_package_or_a_checkout(tmp_path: Path, airflow_home: str) -> None:
    """Installed (the image: `pip install --no-deps`, non-editable) the package lies in
    site-packages: without METRIFY_HOME/METRIFY_DBT_DIR its paths default to Airflow's home
    ($AIRFLOW_HOME/metrify, $AIRFLOW_HOME/dbt, where the image puts the dbt project), never to
    folders next to site-packages or to the checkout it was built from."""
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    shutil.copytree(REPO_ROOT / "include" / "metrify", site / "metrify", ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "opt" / "airflow" if airflow_home == "set" else tmp_path / "user" / "airflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METRIFY_", "AIRFLOW_HOME", "PYTHON"))}
    env.update(PYTHONPATH=str(site), HOME=str(tmp_path / "user"), PYTHONDONTWRITEBYTECODE="1")
    if airflow_home == "set":
        env["AIRFLOW_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-c", INSTALLED_DEFAULTS], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    paths = json.loads(done.stdout)
    assert Path(paths.pop("module")).is_relative_to(site)
    assert paths["home"] == str(home / "metrify") and paths["dbt_dir"] == str(home / "dbt"), paths
    for name, value in paths.items():
        value = value.removeprefix("file://")
        assert Path(value).is_relative_to(home), f"{name} = {value} is not under {home}"
        assert not Path(value).is_relative_to(REPO_ROOT), f"{name} = {value} lies in the checkout"
