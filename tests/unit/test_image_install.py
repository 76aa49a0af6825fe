"""The image, built step by step from the Dockerfile without a Docker engine (none runs here).

The Dockerfile's instructions are read, not retyped, and replayed in a temporary root standing in
for the image's `/`: every `/opt/...` path becomes `<root>/opt/...`.

* The base image is a fresh virtual environment of this Python (3.11, the tag's) with
  `AIRFLOW_HOME=/opt/airflow`, the official image's.
* `COPY` copies from the checkout what the build context holds (`.dockerignore` applied).
* `ENV` sets the variables every later step, and the checks, run with.
* `RUN pip install -r <requirements>`: offline, the pins come from the dev virtualenv, where each
  must be installed at exactly its pinned version; only those distributions (and the build
  backend the package's pyproject.toml requires) are linked into a layer the image's environment
  sees. Nothing of the local stack (`metrify_dev`, the test tools) is in it.
* Every other `RUN` runs as written, with `/bin/sh -c`: `pip install --no-deps /opt/metrify` for
  real (offline: no index, and the build backend from the requirements layer rather than an
  isolated build environment, which would download it), then the dbt manifest build.

Then, in that environment: `metrify` imports from the image's site-packages, not the checkout;
`metrify_dev` is absent; the settings' paths lie under `/opt/airflow` (from the ENV, and from
Airflow's home without it), never in site-packages or the checkout; and every DAG file imports
without errors, the warehouse DAGs rendered by Cosmos from the manifest the image built.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from tests import REPO_ROOT, dockerfile

# What the official apache/airflow image sets for every step after FROM.
BASE_IMAGE_ENV = {"AIRFLOW_HOME": "/opt/airflow"}
# Offline: a step that reached for the network would fail at once instead of downloading.
OFFLINE = {"PIP_NO_INDEX": "1", "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}

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


class Image:
    """The Dockerfile replayed under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.layer = root / "requirements-layer"
        self.env: dict[str, str] = {}
        self.log: list[str] = []
        self.copied_manifests: list[Path] = []  # dbt manifests the build context brought along

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def remap(self, text: str) -> str:
        """`/opt/...` in a value or command -> `<root>/opt/...`."""
        return re.sub(r"(?<![\w./-])/opt/", f"{self.root}/opt/", text)

    def step_env(self) -> dict[str, str]:
        return {
            "PATH": f"{self.venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(self.root / "home" / "airflow"),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",  # never write into the dev virtualenv the layer links to
            **OFFLINE,
            **self.env,
        }

    # --- the instructions ---------------------------------------------------------------------

    def from_(self, args: str) -> None:
        tag = re.fullmatch(r"apache/airflow:[\w.]+-python(\d+)\.(\d+)", args)
        assert tag, f"not the official Airflow image: FROM {args}"
        assert sys.version_info[:2] == (int(tag[1]), int(tag[2])), f"the image runs Python {tag[1]}.{tag[2]}"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(self.venv)], check=True)
        self.layer.mkdir()
        site = Path(sysconfig.get_paths(vars={"base": str(self.venv), "platbase": str(self.venv)})["purelib"])
        (site / "image-requirements-layer.pth").write_text(f"{self.layer}\n")
        self.link("pip")  # the base image's pip, and its command
        pip = self.venv / "bin" / "pip"
        pip.write_text(
            f"#!{self.venv / 'bin' / 'python'}\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n"
        )
        pip.chmod(0o755)
        self.env.update({k: self.remap(v) for k, v in BASE_IMAGE_ENV.items()})
        self.path("/opt/airflow").mkdir(parents=True)

    def copy(self, args: str) -> None:
        sources, dest = dockerfile.copy_arguments(args)
        patterns = dockerfile.ignore_patterns()

        def ignore(folder: str, names: list[str]) -> list[str]:
            relative = PurePosixPath(Path(folder).relative_to(REPO_ROOT).as_posix())
            return [name for name in names if dockerfile.ignored(relative / name, patterns)]

        for source in sources:
            origin, target = REPO_ROOT / source, self.path(dest)
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=ignore, dirs_exist_ok=True)
                self.copied_manifests += target.rglob("manifest.json")
            else:
                target = target / origin.name if dest.endswith("/") else target
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)

    def env_(self, args: str) -> None:
        self.env.update({k: self.remap(v) for k, v in dockerfile.env_assignments(args).items()})

    def run(self, args: str) -> None:
        command = self.remap(args)
        requirements = re.fullmatch(r"pip install (?:--no-cache-dir )?-r (\S+)", command)
        if requirements:
            self.install_requirements(Path(requirements[1]))
            return
        if re.match(r"pip install .*--no-deps (\S+)$", command):
            # the build backend the package's pyproject.toml names, from the requirements layer
            project = Path(command.split()[-1]) / "pyproject.toml"
            for requirement in tomllib.loads(project.read_text())["build-system"]["requires"]:
                self.link(re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0])
            env = {**self.step_env(), "PIP_NO_BUILD_ISOLATION": "0"}  # pip's spelling of --no-build-isolation
        else:
            env = self.step_env()
        started = time.perf_counter()
        done = subprocess.run(
            ["/bin/sh", "-c", command], env=env, cwd=self.path("/opt/airflow"), capture_output=True, text=True
        )
        self.log.append(f"RUN {args}: {time.perf_counter() - started:.1f} s")
        assert done.returncode == 0, f"RUN {args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    # --- the requirements layer ---------------------------------------------------------------

    def install_requirements(self, requirements: Path) -> None:
        """Each pin of the copied requirements file, taken from the dev virtualenv (offline) if it
        holds exactly that version, linked into the layer the image's environment sees."""
        wrong = {}
        for line in requirements.read_text().splitlines():
            pin = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==(\S+)", line)
            if pin:
                installed = self.link(pin[1])
                if installed != pin[2]:
                    wrong[pin[1]] = f"pinned {pin[2]}, installed {installed}"
        assert not wrong, f"the dev virtualenv does not hold requirements.txt's pins: {wrong}"

    def link(self, name: str) -> str:
        """Link one distribution's top-level files (package folders, modules, dist-info) from the
        dev virtualenv into the layer; returns its version."""
        distribution = importlib.metadata.distribution(name)
        site = Path(str(distribution.locate_file("")))
        for top in {Path(str(f)).parts[0] for f in distribution.files or []}:
            source = site / top
            if top.endswith(".pth") or top == ".." or not source.exists() or (self.layer / top).exists():
                continue
            (self.layer / top).symlink_to(source)
        return distribution.version


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Image, dict, float]:
    started = time.perf_counter()
    image = Image(tmp_path_factory.mktemp("image"))
    steps = dockerfile.instructions()
    handlers = {"FROM": image.from_, "COPY": image.copy, "ENV": image.env_, "RUN": image.run}
    for op, args in steps:
        if op == "USER":
            continue
        assert op in handlers, f"the test does not model the Dockerfile instruction {op}"
        handlers[op](args)
    done = subprocess.run(
        [str(image.venv / "bin" / "python"), "-c", PROBE, str(image.path("/opt/airflow/dags"))],
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
