"""The image, built step by step from the Dockerfile without a Docker engine (none runs here),
by `metrify_dev.image` (the production-shaped run builds its image with the same code).

The Dockerfile's instructions are read, not retyped, and replayed in a temporary root standing in
for the image's `/`: every `/opt/...` path becomes `<root>/opt/...`. Offline here: the pinned
requirements come from uv's cache (which `make` filled installing .venv) and a step that reached
for the network would fail at once. `pip install --no-deps /opt/metrify` is a real,
non-editable install; then the Dockerfile's RUN step builds the dbt manifest.

Then, in that environment: `metrify` imports from the image's site-packages, not the checkout;
`metrify_dev` is absent; the settings' paths lie under `/opt/airflow` (from the ENV, and from
Airflow's home without it), never in site-packages or the checkout; and every DAG file imports
without errors, the warehouse DAGs rendered by Cosmos from the manifest the image built.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from metrify_dev.image import Image
from tests import REPO_ROOT

PROBE = r"""
import json, os, sys
import metrify, metrify.config
from metrify.config import load_settings
try:
    import metrify_dev
    dev = metrify_dev.__file__
except ModuleNotFoundError:
    dev = None
from airflow.dag_processing.dagbag import DagBag

def paths(s):
    return {"home": str(s.home), "dbt_dir": str(s.dbt_dir), "dbt_manifest": str(s.dbt_manifest),
            "warehouse_path": str(s.warehouse_path), "gx_home": str(s.gx_home),
            "lake_url": s.lake_url, "alert_log": s.alert_log}

bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "metrify": metrify.__file__,
    "metrify_dev": dev,
    "source_checkout": str(getattr(metrify.config, "SOURCE_CHECKOUT", "absent")),
    "settings": paths(load_settings()),
    "settings_without_env": paths(load_settings({k: v for k, v in os.environ.items() if not k.startswith("METRIFY_")})),
    "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "dags": {dag_id: {"file": dag.fileloc, "tasks": sorted(dag.task_ids)} for dag_id, dag in bag.dags.items()},
}))
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Image, dict, float]:
    started = time.perf_counter()
    image = Image(tmp_path_factory.mktemp("image"), offline=True).build()
    done = subprocess.run(
        [image.executable("python"), "-c", PROBE, str(image.path("/opt/airflow/dags"))],
        env=image.step_env(),
        cwd=image.path("/opt/airflow"),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    seconds = time.perf_counter() - started
    print(f"image replayed and probed in {seconds:.1f} s: " + "; ".join(image.log))
    return image, json.loads(done.stdout.strip().splitlines()[-1]), seconds


def test_metrify_is_imported_from_the_image_site_packages_without_the_local_stack(image) -> None:
    image, probe, _ = image
    module = Path(probe["metrify"])
    assert module.is_relative_to(image.venv) and "site-packages" in module.parts, module
    assert not module.is_relative_to(REPO_ROOT), f"metrify imported from the checkout: {module}"
    assert probe["source_checkout"] == "None", probe["source_checkout"]
    assert probe["metrify_dev"] is None, f"the local stack is in the image: {probe['metrify_dev']}"


@pytest.mark.parametrize("which", ["settings", "settings_without_env"])
def test_every_path_lies_under_the_image_airflow_home(image, which) -> None:
    """With the Dockerfile's ENV, and without METRIFY_* at all (Airflow's home then decides)."""
    image, probe, _ = image
    paths = probe[which]
    assert paths["home"] == str(image.path("/opt/airflow/metrify")), paths
    assert paths["dbt_dir"] == str(image.path("/opt/airflow/dbt")), paths
    site = image.venv / "lib"
    for name, value in paths.items():
        path = Path(value.removeprefix("file://"))
        assert path.is_relative_to(image.path("/opt/airflow")), f"{name} = {path}"
        assert not path.is_relative_to(site) and not path.is_relative_to(REPO_ROOT), f"{name} = {path}"


def test_the_manifest_is_built_in_the_image_without_phoning_home(image) -> None:
    """Built by a RUN step of the Dockerfile, not copied from the checkout, with every model."""
    image, probe, _ = image
    assert not image.copied_manifests, f"the build context carried dbt output into the image: {image.copied_manifests}"
    path = Path(probe["settings"]["dbt_manifest"])
    assert path.exists(), f"the image has no dbt manifest at {path}: no RUN step builds it"
    manifest = json.loads(path.read_text())
    assert manifest["metadata"]["send_anonymous_usage_stats"] is False
    models = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert models == {p.stem for p in (REPO_ROOT / "dbt" / "models").rglob("*.sql")}
    assert not image.path("/opt/airflow/metrify/logs").exists(), "the build left dbt's logs in the image"


def test_every_dag_file_imports_in_the_image(image) -> None:
    image, probe, seconds = image
    assert probe["import_errors"] == {}, probe["import_errors"]
    files = {p.name for p in image.path("/opt/airflow/dags").glob("*.py") if not p.name.startswith("_")}
    assert files == {p.name for p in (REPO_ROOT / "dags").glob("*.py") if not p.name.startswith("_")}
    assert {Path(d["file"]).name for d in probe["dags"].values()} == files, "a DAG file defines no DAG"
    for dag_id in ("transform", "warehouse_daily"):  # Cosmos rendered the dbt models from the manifest
        tasks = probe["dags"][dag_id]["tasks"]
        assert "dbt.fct_meter_readings_hourly.run" in tasks and "dbt.dbt_producer_watcher" in tasks, dag_id
    assert seconds < 120, f"replaying the image took {seconds:.0f} s"
