"""The local stack (`metrify up`) as a fixture, shared by the browser and the security tests.

One stack per module (its environment changes are undone when the module ends): Kafka, the fake
APIs, the simulator feed and Airflow's API server, scheduler, DAG processor and triggerer, on a
free port, in a private METRIFY_HOME. Tasks get no retries here (METRIFY_TASK_RETRIES=0) so a
failure drill fails at once. A module sets `STACK_OPTIONS` to change what `metrify_dev.stack.up`
is called with, e.g. `{"feed": False, "paused": True}` for tests of the API that need no pipeline,
and `STACK_ENV` for more environment variables of the stack's processes.
Starting it takes about 1-2 minutes; nothing here needs a browser. Loaded by tests/conftest.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests

from metrify_dev.ports import free_port


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from metrify.config import load_settings
    from metrify_dev import stack as local_stack

    options = {"meters": 20, **getattr(request.module, "STACK_OPTIONS", {})}
    home = tmp_path_factory.mktemp("stack")
    overrides = {
        "METRIFY_HOME": str(home),
        "METRIFY_UI_PORT": str(free_port()),
        "METRIFY_TASK_RETRIES": "0",
        "METRIFY_ALERT_LOG": str(home / "alerts.log"),
        **getattr(request.module, "STACK_ENV", {}),
    }
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    settings = load_settings()
    try:
        info = local_stack.up(settings, **options)
        yield {**info, "home": home, "settings": settings}
    finally:
        local_stack.down(settings)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def token(stack: dict, user: str) -> str:
    """A JWT for `user` from the API server's /auth/token."""
    response = requests.post(
        f"{stack['url']}/auth/token", timeout=10, json={"username": user, "password": stack["passwords"][user]}
    )
    response.raise_for_status()
    return response.json()["access_token"]


def api(stack: dict, user: str = "admin") -> requests.Session:
    """A session calling the REST API as `user`."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token(stack, user)}"
    return session
