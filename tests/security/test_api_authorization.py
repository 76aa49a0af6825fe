"""The Airflow REST API refuses every call the project relies on that changes something, or reads
a secret, unless the caller is authenticated and holds the role for it; a refused call changes
nothing. Against the local stack (`metrify up`, SimpleAuthManager, one stack for the module).

Airflow 3.3's SimpleAuthManager roles, each including the one below (its `is_authorized_*`): viewer
reads DAGs, runs and logs but no connections and no variables; user may also change DAGs (trigger,
clear, backfill, pause); op may also manage connections, variables and pools; admin everything.
So each endpoint is called by the highest role that must still be refused (viewer for the DAG
endpoints, user for connections and variables) and every role below it, and with no token, a
garbage token, an unsigned token, an admin token forged with a wrong secret and an expired admin
token signed with the stack's real secret; each must get 401 or 403 (a role 403: its token was
accepted) and the metadata database must show no change. The least role allowed, and the
operator the README documents, must succeed and change what they were asked to, so the test can
fail.

The stack runs with every DAG paused and no feed (nothing scheduled, runs stay queued), with the
DAGs' deadline alerts: the cleared run's deadline is pending, which made clearing fail with HTTP
500 in Airflow 3.3.2 until `metrify.oncall.airflow_patches` (apache/airflow#70368).
"""

from __future__ import annotations

import secrets
import sqlite3
import time
import warnings
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
import requests

from tests.airflow_stack import token

STACK_OPTIONS = {"feed": False, "paused": True}

DAG = "warehouse_daily"  # paused: its triggered and backfilled runs stay queued
UNPAUSED_DAG = "release_quality_interval"  # schedule=None: unpausing it schedules nothing
CLEARED_RUN = "authz-clear-target"
SEED_CONN = {"connection_id": "authz_seed", "conn_type": "http", "host": "api.example", "login": "svc"}
SEED_CONN_PASSWORD = "seed-Password-7f3a91"
SEED_VAR = {"key": "authz_seed", "value": "seed-Value-5c2e08"}
PLANTED_CONN = {
    "connection_id": "authz_planted",
    "conn_type": "http",
    "host": "attacker.example",
    "password": "planted",
}
PLANTED_VAR = {"key": "authz_planted", "value": "planted"}

ROLES = ("viewer", "user", "op", "admin")  # SimpleAuthManager's order
ACCOUNT = {"viewer": "viewer", "user": "user", "op": "operator", "admin": "admin"}  # metrify_dev.stack.USERS
BAD_CREDENTIALS = ("no token", "garbage token", "unsigned token", "forged admin token", "expired admin token")


class Api:
    """The stack's URL, the callers' Authorization headers, an admin session and the metadata DB."""

    def __init__(self, stack: dict) -> None:
        self.url = stack["url"]
        self.db_path = stack["settings"].airflow_home / "airflow.db"
        admin = token(stack, "admin")
        self.headers: dict[str, dict[str, str]] = {
            role: {"Authorization": f"Bearer {token(stack, account)}"} for role, account in ACCOUNT.items()
        }
        claims = jwt.decode(admin, options={"verify_signature": False})
        header = jwt.get_unverified_header(admin)
        real_secret = (stack["settings"].airflow_home / "jwt_secret").read_text().strip()
        now = int(time.time())
        expired = {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}
        with warnings.catch_warnings():  # PyJWT warns that the stack's HMAC key is short for HS512
            warnings.simplefilter("ignore")
            self.resigned = jwt.encode(claims, real_secret, algorithm=header["alg"], headers={"kid": header["kid"]})
            forged = jwt.encode(
                claims, secrets.token_urlsafe(64), algorithm=header["alg"], headers={"kid": header["kid"]}
            )
            expired_token = jwt.encode(expired, real_secret, algorithm=header["alg"], headers={"kid": header["kid"]})
        unsigned = jwt.encode(claims, None, algorithm="none")
        self.headers |= {
            "no token": {},
            "garbage token": {"Authorization": "Bearer not-a-jwt"},
            "unsigned token": {"Authorization": f"Bearer {unsigned}"},
            "forged admin token": {"Authorization": f"Bearer {forged}"},
            "expired admin token": {"Authorization": f"Bearer {expired_token}"},
        }
        self.admin = requests.Session()
        self.admin.headers.update(self.headers["admin"])
        self.pristine: dict[str, Any] = {}

    def call(self, caller: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.url}{path}", headers=self.headers[caller], timeout=30, **kwargs)

    def as_admin(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 204), **kwargs: Any) -> Any:
        response = self.admin.request(method, f"{self.url}{path}", timeout=30, **kwargs)
        assert response.status_code in ok, f"admin {method} {path}: {response.status_code} {response.text}"
        return response

    def rows(self, sql: str, *args: Any) -> list[tuple]:
        """The metadata database, read-only (WAL: readers never block the stack's writers)."""
        with closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)) as db:
            return db.execute(sql, args).fetchall()


# -- what each call could change, read from the metadata database, and how to restore it --


def manual_runs(api: Api) -> Any:
    return api.rows("SELECT run_id FROM dag_run WHERE dag_id = ? AND run_type = 'manual' ORDER BY run_id", DAG)


def cleared_run(api: Api) -> Any:
    run = api.rows("SELECT state, clear_number FROM dag_run WHERE dag_id = ? AND run_id = ?", DAG, CLEARED_RUN)
    states = api.rows(
        "SELECT state, count(*) FROM task_instance WHERE dag_id = ? AND run_id = ? GROUP BY state", DAG, CLEARED_RUN
    )
    return run, sorted(states, key=str)


def finished_run(api: Api) -> None:
    """A run of DAG marked successful, its tasks done: what a clear would reset."""
    if not api.rows("SELECT 1 FROM dag_run WHERE dag_id = ? AND run_id = ?", DAG, CLEARED_RUN):
        api.as_admin("POST", f"/api/v2/dags/{DAG}/dagRuns", json={"logical_date": None, "dag_run_id": CLEARED_RUN})
    if cleared_run(api)[0][0][0] != "success":
        api.as_admin("PATCH", f"/api/v2/dags/{DAG}/dagRuns/{CLEARED_RUN}", json={"state": "success"})
    run, states = cleared_run(api)
    assert run[0][0] == "success" and states and None not in {s for s, _ in states}, (run, states)


def backfills(api: Api) -> Any:
    return (
        api.rows("SELECT id FROM backfill WHERE dag_id = ? ORDER BY id", DAG),
        api.rows("SELECT count(*) FROM dag_run WHERE dag_id = ? AND run_type = 'backfill'", DAG),
    )


def no_active_backfill(api: Api) -> None:
    for (backfill_id,) in api.rows("SELECT id FROM backfill WHERE dag_id = ? AND completed_at IS NULL", DAG):
        api.as_admin("PUT", f"/api/v2/backfills/{backfill_id}/cancel")


def paused(api: Api) -> Any:
    return api.rows("SELECT is_paused FROM dag WHERE dag_id = ?", UNPAUSED_DAG)


def unpaused(api: Api) -> None:
    if paused(api) != [(0,)]:
        api.as_admin("PATCH", f"/api/v2/dags/{UNPAUSED_DAG}", json={"is_paused": False})
    assert paused(api) == [(0,)]


def connection(conn_id: str) -> Callable[[Api], Any]:
    def read(api: Api) -> Any:
        return api.rows("SELECT * FROM connection WHERE conn_id = ?", conn_id)

    return read


def variable(key: str) -> Callable[[Api], Any]:
    def read(api: Api) -> Any:
        return api.rows("SELECT * FROM variable WHERE key = ?", key)

    return read


def seeded_connection(api: Api) -> None:
    """`authz_seed` as the admin created it (password included): recreated if anything changed it."""
    if api.pristine.get("conn") is None or connection(SEED_CONN["connection_id"])(api) != api.pristine["conn"]:
        api.as_admin("DELETE", f"/api/v2/connections/{SEED_CONN['connection_id']}", ok=(204, 404))
        api.as_admin("POST", "/api/v2/connections", json={**SEED_CONN, "password": SEED_CONN_PASSWORD})
        api.pristine["conn"] = connection(SEED_CONN["connection_id"])(api)


def seeded_variable(api: Api) -> None:
    if api.pristine.get("var") is None or variable(SEED_VAR["key"])(api) != api.pristine["var"]:
        api.as_admin("DELETE", f"/api/v2/variables/{SEED_VAR['key']}", ok=(204, 404))
        api.as_admin("POST", "/api/v2/variables", json=SEED_VAR)
        api.pristine["var"] = variable(SEED_VAR["key"])(api)


def no_planted_connection(api: Api) -> None:
    api.as_admin("DELETE", f"/api/v2/connections/{PLANTED_CONN['connection_id']}", ok=(204, 404))


def no_planted_variable(api: Api) -> None:
    api.as_admin("DELETE", f"/api/v2/variables/{PLANTED_VAR['key']}", ok=(204, 404))


def both(*functions: Callable[[Api], Any]) -> Callable[[Api], Any]:
    return lambda api: tuple(function(api) for function in functions)


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    least_role: str  # the least role allowed; every role below it must be refused
    arrange: Callable[[Api], Any] = lambda api: None  # the state the call would change, restored
    state: Callable[[Api], Any] = lambda api: None  # that state, from the metadata database
    body: Any = None
    params: dict[str, str] = field(default_factory=dict)
    secret: str | None = None  # a read: must appear in no refused response

    def call(self, api: Api, caller: str) -> requests.Response:
        return api.call(caller, self.method, self.path, json=self.body, params=self.params)


ENDPOINTS = (
    Endpoint(
        "trigger a DAG run",
        "POST",
        f"/api/v2/dags/{DAG}/dagRuns",
        "user",
        state=manual_runs,
        body={"logical_date": None},
    ),
    Endpoint(
        "clear task instances",
        "POST",
        f"/api/v2/dags/{DAG}/clearTaskInstances",
        "user",
        arrange=finished_run,
        state=cleared_run,
        body={"dry_run": False, "dag_run_id": CLEARED_RUN, "only_failed": False, "reset_dag_runs": True},
    ),
    Endpoint(
        "create a backfill",
        "POST",
        "/api/v2/backfills",
        "user",
        arrange=no_active_backfill,
        state=backfills,
        body={
            "dag_id": DAG,
            "from_date": "2026-11-20T00:00:00Z",
            "to_date": "2026-11-21T00:00:00Z",
            "max_active_runs": 1,
            "reprocess_behavior": "completed",
        },
    ),
    Endpoint(
        "pause a DAG",
        "PATCH",
        f"/api/v2/dags/{UNPAUSED_DAG}",
        "user",
        arrange=unpaused,
        state=paused,
        body={"is_paused": True},
    ),
    Endpoint(
        "pause DAGs by pattern",
        "PATCH",
        "/api/v2/dags",
        "user",
        arrange=unpaused,
        state=paused,
        body={"is_paused": True},
        params={"dag_id_pattern": UNPAUSED_DAG},
    ),
    Endpoint(
        "create a connection",
        "POST",
        "/api/v2/connections",
        "op",
        arrange=no_planted_connection,
        state=connection(PLANTED_CONN["connection_id"]),
        body=PLANTED_CONN,
    ),
    Endpoint(
        "update a connection",
        "PATCH",
        f"/api/v2/connections/{SEED_CONN['connection_id']}",
        "op",
        arrange=seeded_connection,
        state=connection(SEED_CONN["connection_id"]),
        body={**SEED_CONN, "host": "attacker.example", "password": "planted"},
    ),
    Endpoint(
        "delete a connection",
        "DELETE",
        f"/api/v2/connections/{SEED_CONN['connection_id']}",
        "op",
        arrange=seeded_connection,
        state=connection(SEED_CONN["connection_id"]),
    ),
    Endpoint(
        "create and delete connections in bulk",
        "PATCH",
        "/api/v2/connections",
        "op",
        arrange=both(seeded_connection, no_planted_connection),
        state=both(connection(SEED_CONN["connection_id"]), connection(PLANTED_CONN["connection_id"])),
        body={
            "actions": [
                {"action": "create", "entities": [PLANTED_CONN]},
                {"action": "delete", "entities": [SEED_CONN["connection_id"]]},
            ]
        },
    ),
    Endpoint(
        "read a connection",
        "GET",
        f"/api/v2/connections/{SEED_CONN['connection_id']}",
        "op",
        arrange=seeded_connection,
        secret=SEED_CONN_PASSWORD,
    ),
    Endpoint(
        "list connections", "GET", "/api/v2/connections", "op", arrange=seeded_connection, secret=SEED_CONN_PASSWORD
    ),
    Endpoint(
        "create a variable",
        "POST",
        "/api/v2/variables",
        "op",
        arrange=no_planted_variable,
        state=variable(PLANTED_VAR["key"]),
        body=PLANTED_VAR,
    ),
    Endpoint(
        "update a variable",
        "PATCH",
        f"/api/v2/variables/{SEED_VAR['key']}",
        "op",
        arrange=seeded_variable,
        state=variable(SEED_VAR["key"]),
        body={**SEED_VAR, "value": "planted"},
    ),
    Endpoint(
        "delete a variable",
        "DELETE",
        f"/api/v2/variables/{SEED_VAR['key']}",
        "op",
        arrange=seeded_variable,
        state=variable(SEED_VAR["key"]),
    ),
    Endpoint(
        "create and delete variables in bulk",
        "PATCH",
        "/api/v2/variables",
        "op",
        arrange=both(seeded_variable, no_planted_variable),
        state=both(variable(SEED_VAR["key"]), variable(PLANTED_VAR["key"])),
        body={
            "actions": [
                {"action": "create", "entities": [PLANTED_VAR]},
                {"action": "delete", "entities": [SEED_VAR["key"]]},
            ]
        },
    ),
    Endpoint(
        "read a variable",
        "GET",
        f"/api/v2/variables/{SEED_VAR['key']}",
        "op",
        arrange=seeded_variable,
        secret=SEED_VAR["value"],
    ),
    Endpoint("list variables", "GET", "/api/v2/variables", "op", arrange=seeded_variable, secret=SEED_VAR["value"]),
)


def refused_cases() -> list[Any]:
    return [
        pytest.param(endpoint, caller, id=f"{endpoint.name}-{caller}")
        for endpoint in ENDPOINTS
        for caller in (*BAD_CREDENTIALS, *ROLES[: ROLES.index(endpoint.least_role)])
    ]


def allowed_cases() -> list[Any]:
    """The least role allowed and, where it is higher, the operator (the README's role for all of it)."""
    return [
        pytest.param(endpoint, role, id=f"{endpoint.name}-{role}")
        for endpoint in ENDPOINTS
        for role in dict.fromkeys((endpoint.least_role, "op"))
    ]


@pytest.fixture(scope="module")
def api(stack: dict) -> Api:
    api = Api(stack)
    deadline = time.monotonic() + 180
    while {DAG, UNPAUSED_DAG} - {dag_id for (dag_id,) in api.rows("SELECT dag_id FROM dag")}:
        assert time.monotonic() < deadline, f"DAGs not parsed: {api.as_admin('GET', '/api/v2/importErrors').text}"
        time.sleep(2)
    return api


@pytest.mark.parametrize(("endpoint", "caller"), refused_cases())
def test_refused_and_nothing_changes(api: Api, endpoint: Endpoint, caller: str) -> None:
    endpoint.arrange(api)
    before = endpoint.state(api)
    response = endpoint.call(api, caller)
    expected = {401, 403} if caller in BAD_CREDENTIALS else {403}  # a role's token itself is valid
    assert response.status_code in expected, (
        f"{caller} may {endpoint.name}: {endpoint.method} {endpoint.path} answered "
        f"{response.status_code} {response.text[:300]}"
    )
    after = endpoint.state(api)
    assert after == before, f"a refused {caller} changed the state ({endpoint.name}): {before} -> {after}"
    if endpoint.secret:
        assert endpoint.secret not in response.text


@pytest.mark.parametrize(("endpoint", "role"), allowed_cases())
def test_allowed_for_its_role_and_does_what_it_says(api: Api, endpoint: Endpoint, role: str) -> None:
    endpoint.arrange(api)
    before = endpoint.state(api)
    response = endpoint.call(api, role)
    assert response.status_code in {200, 201, 204}, (
        f"{role} may {endpoint.name} but {endpoint.method} {endpoint.path} answered "
        f"{response.status_code} {response.text[:300]}"
    )
    if endpoint.method != "GET":
        after = endpoint.state(api)
        assert after != before, f"{role}'s {endpoint.name} answered {response.status_code} but changed nothing"
    if endpoint.name.endswith("in bulk"):
        assert all(not result["errors"] for result in response.json().values() if result), response.text
    if endpoint.name == "read a connection":
        assert response.json()["login"] == SEED_CONN["login"]
    if endpoint.secret == SEED_CONN_PASSWORD:
        assert SEED_CONN_PASSWORD not in response.text, "no role reads a connection's password through the API"
    if endpoint.name == "read a variable":
        assert response.json()["value"] == SEED_VAR["value"]


def test_the_refused_tokens_fail_only_for_what_is_wrong_with_them(api: Api) -> None:
    """The admin claims re-signed with the stack's secret are accepted: the forged and the expired
    token are refused for their signature and their age, not for a claim this test got wrong."""
    accepted = requests.get(f"{api.url}/api/v2/dags", headers={"Authorization": f"Bearer {api.resigned}"}, timeout=30)
    assert accepted.status_code == 200, accepted.text
    assert api.call("expired admin token", "GET", "/api/v2/dags").json() == {"detail": "Token Expired"}


def test_a_viewer_reads_dags_and_an_anonymous_caller_reads_nothing(api: Api) -> None:
    assert api.call("viewer", "GET", "/api/v2/dags").status_code == 200
    assert api.call("no token", "GET", "/api/v2/dags").status_code == 401
