"""The meter registry: read from the operational PostgreSQL, copied into the warehouse.

The registry is owned by the metering operations system; the pipeline only reads it, through
the Airflow connection `postgres_default` (`METRIFY_REGISTRY_CONN_ID`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metrify import redaction
from metrify.config import load_settings
from metrify.warehouse.catalog import REGISTRY_COLUMNS, REGISTRY_TABLE

if TYPE_CHECKING:
    import pandas as pd


def read_registry(dsn: str | None = None, conn_id: str | None = None) -> pd.DataFrame:
    """The registry rows from PostgreSQL: through `dsn`, or the Airflow connection `conn_id`."""
    import pandas as pd
    import psycopg2

    names = [n for n, _ in REGISTRY_COLUMNS]
    query = f"SELECT {', '.join(names)} FROM {REGISTRY_TABLE} ORDER BY meter_id"
    if dsn is None:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        conn_id = conn_id or load_settings().registry_conn_id
        redaction.register_connection(conn_id)  # its password reaches no log or alert
        conn = PostgresHook(postgres_conn_id=conn_id).get_conn()
    else:
        conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return pd.DataFrame(cur.fetchall(), columns=names)
    finally:
        conn.close()
