"""The local Airflow commands: `dags test` parses the DAG's own file, and a fresh metadata database
is copied from the session's migrated one instead of migrated again."""

from __future__ import annotations

from pathlib import Path

import pytest

from metrify.config import load_settings
from metrify_dev import airflow_env
from metrify_dev.airflow_env import DB_TEMPLATE_ENV, ensure_db, with_dag_file


def test_dags_test_parses_only_the_dag_file() -> None:
    dag_file = str(airflow_env.REPO_ROOT / "dags" / "transform.py")
    assert with_dag_file(("dags", "test", "transform")) == ("dags", "test", "transform", "-f", dag_file)
    assert with_dag_file(("dags", "test", "transform", "-c", "{}")) == (
        "dags",
        "test",
        "transform",
        "-c",
        "{}",
        "-f",
        dag_file,
    )
    # a file given, a DAG without a file of its name, or another command: unchanged
    assert with_dag_file(("dags", "test", "transform", "-f", "x.py")) == ("dags", "test", "transform", "-f", "x.py")
    assert with_dag_file(("dags", "test", "no_such_dag")) == ("dags", "test", "no_such_dag")
    assert with_dag_file(("dags", "list")) == ("dags", "list")


def test_a_new_metadata_database_is_copied_from_the_template(
    metrify_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "template.db"
    template.write_bytes(b"migrated")
    monkeypatch.setenv(DB_TEMPLATE_ENV, str(template))

    def no_migration(*args: str, **kwargs: object) -> None:
        raise AssertionError(f"airflow {' '.join(args)} ran although the template exists")

    monkeypatch.setattr(airflow_env, "airflow", no_migration)
    settings = load_settings()
    ensure_db(settings)
    assert (settings.airflow_home / "airflow.db").read_bytes() == b"migrated"


def test_the_first_migration_writes_the_template(
    metrify_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "templates" / "template.db"
    monkeypatch.setenv(DB_TEMPLATE_ENV, str(template))
    calls: list[tuple[str, ...]] = []

    def fake_airflow(*args: str, settings: object = None, **kwargs: object) -> None:
        calls.append(args)
        if args[:2] == ("db", "migrate"):
            (load_settings().airflow_home / "airflow.db").write_bytes(b"freshly migrated")

    monkeypatch.setattr(airflow_env, "airflow", fake_airflow)
    ensure_db(load_settings())
    assert [c[:2] for c in calls] == [("db", "migrate"), ("pools", "set")]
    assert template.read_bytes() == b"freshly migrated"


WRITE_THROUGH_AIRFLOW = """
from airflow import settings
from sqlalchemy import text
settings.configure_orm()
print("ready", flush=True)
with settings.engine.begin() as connection:
    connection.execute(text("CREATE TABLE written_while_locked (x int)"))
"""


def test_a_command_beside_the_scheduler_waits_out_a_lock_longer_than_sqlites_default(
    metrify_home: Path, tmp_path: Path
) -> None:
    """A scheduler's transaction can hold the metadata database for more than SQLite's default 5 s
    on a loaded machine; `airflow backfill create` beside it then failed with `database is locked`."""
    import sqlite3
    import subprocess
    import sys
    import time

    database = tmp_path / "airflow.db"
    env = airflow_env.patient_command_environment(
        {**airflow_env.environment(load_settings()), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{database}"}
    )
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")  # as Airflow leaves its database
    holder.execute("BEGIN IMMEDIATE")  # the write lock a scheduler's transaction holds
    child = subprocess.Popen(
        [sys.executable, "-c", WRITE_THROUGH_AIRFLOW],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    time.sleep(7)  # longer than SQLite's default busy timeout
    holder.execute("ROLLBACK")
    _, errors = child.communicate(timeout=120)
    assert child.returncode == 0, errors[-2000:]
    assert holder.execute("SELECT count(*) FROM written_while_locked").fetchone() == (0,)
