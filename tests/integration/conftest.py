import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def metrify_home(tmp_path_factory):
    """A private METRIFY_HOME (lake, warehouse, postgres) for one test module."""
    home = tmp_path_factory.mktemp("metrify")
    saved = {k: os.environ.get(k) for k in ("METRIFY_HOME", "METRIFY_LAKE_URL", "METRIFY_WAREHOUSE_PATH")}
    os.environ["METRIFY_HOME"] = str(home)
    os.environ.pop("METRIFY_LAKE_URL", None)
    os.environ.pop("METRIFY_WAREHOUSE_PATH", None)
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
