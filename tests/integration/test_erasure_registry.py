"""Erasure in the operational registry as production holds it: PostgreSQL (the embedded server),
reached by the task through `postgres_default` and the provider's hook, read back with psycopg2."""

from __future__ import annotations

import json

import pandas as pd
import psycopg2

from metrify.config import load_settings
from metrify.contracts import registry
from metrify.privacy import tasks
from metrify_dev import postgres

GONE = "DE0000011011500000000000000000001"
STAYS = "DE0000011011500000000000000000002"
LOOKALIKE = STAYS + "9"  # starts like a kept id: must stay


def _registry(meters: list[str]) -> pd.DataFrame:
    rows = [
        {"meter_id": m, "load_profile": "H25", "postal_code": "10115", "city": "Berlin", "region": "BE",
         "grid_operator": "50Hertz", "latitude": 52.5, "longitude": 13.4, "installed_date": None,
         "status": "active", "yearly_kwh": 3000.0, "pv_kwp": 0.0}
        for m in meters
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=registry.REGISTRY_SCHEMA.names)


def test_the_erasure_task_deletes_the_meter_from_the_postgresql_registry(metrify_home, monkeypatch) -> None:
    settings = load_settings()
    connection = postgres.seed_registry(_registry([GONE, STAYS, LOOKALIKE]), settings)
    monkeypatch.setenv(f"AIRFLOW_CONN_{settings.registry_conn_id.upper()}", json.dumps(connection))
    uri = postgres.start_registry_db(settings)
    try:
        record = tasks.erase(GONE, "dpo@example.org", "manual__registry")
        assert record["registry_rows"] == 1 and GONE not in json.dumps(record)
        with psycopg2.connect(uri) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT meter_id FROM {registry.TABLE} ORDER BY meter_id")
            assert [r[0] for r in cur.fetchall()] == [STAYS, LOOKALIKE]
        assert tasks.erase(GONE, "dpo@example.org", "manual__again")["registry_rows"] == 0  # a retry is harmless
    finally:
        postgres.stop_registry_db(settings)
