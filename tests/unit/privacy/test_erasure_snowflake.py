"""The warehouse erasure's SQL on the Snowflake dialect (fakesnow): same statements, `%s` binds,
upper-case names found through `information_schema`, views left alone."""

from __future__ import annotations

import fakesnow
import pytest
import snowflake.connector

from metrify.privacy import erasure
from metrify.warehouse import catalog

GONE, STAYS = "DE0000011011500000000000000000001", "DE0000011011500000000000000000002"


def test_erasure_on_snowflake_removes_the_meter_from_every_base_table() -> None:
    with fakesnow.patch():
        conn = snowflake.connector.connect(database="METRIFY", schema="RAW")
        cursor = conn.cursor()
        cursor.execute("CREATE SCHEMA IF NOT EXISTS METRIFY.MARTS")
        cursor.execute("CREATE TABLE METRIFY.RAW.METER_READINGS (METER_ID VARCHAR, CONSUMPTION_KWH FLOAT)")
        cursor.execute("CREATE TABLE METRIFY.MARTS.DIM_METERS (METER_ID VARCHAR, CITY VARCHAR)")
        cursor.execute("CREATE TABLE METRIFY.MARTS.GRID (OPERATOR_NAME VARCHAR)")
        # the substituted layer's raw table, as the production loader creates it
        subs = catalog.SOURCES["substituted_readings"]
        cursor.execute(catalog.create_table_sql(subs.table, subs.all_columns, catalog.SNOWFLAKE, "METRIFY.RAW"))
        cursor.execute(
            f"INSERT INTO METRIFY.RAW.SUBSTITUTED_READINGS (METER_ID, SUBSTITUTE_KWH) VALUES ('{GONE}', 0.5), "
            f"('{STAYS}', 0.25), ('{GONE}', 0.5), ('{GONE}', 0.5)"
        )
        cursor.execute("CREATE VIEW METRIFY.MARTS.V_METERS AS SELECT METER_ID FROM METRIFY.MARTS.DIM_METERS")
        cursor.execute(
            f"INSERT INTO METRIFY.RAW.METER_READINGS VALUES ('{GONE}', 1.0), ('{STAYS}', 2.0), ('{GONE}', 3.0)"
        )
        cursor.execute(f"INSERT INTO METRIFY.MARTS.DIM_METERS VALUES ('{GONE}', 'Berlin'), ('{STAYS}', 'Köln')")

        assert erasure.erase_warehouse(cursor, GONE, "%s") == {
            "MARTS.DIM_METERS": 1,
            "RAW.METER_READINGS": 2,
            "RAW.SUBSTITUTED_READINGS": 3,
        }
        assert cursor.execute("SELECT METER_ID FROM METRIFY.RAW.SUBSTITUTED_READINGS").fetchall() == [(STAYS,)]

        assert cursor.execute("SELECT * FROM METRIFY.RAW.METER_READINGS").fetchall() == [(STAYS, 2.0)]
        assert cursor.execute("SELECT * FROM METRIFY.MARTS.V_METERS").fetchall() == [(STAYS,)]
        with pytest.raises(ValueError, match="meter_id must be a meter id"):
            erasure.erase_warehouse(cursor, f"{STAYS}' OR '1'='1", "%s")
        assert cursor.execute("SELECT count(*) FROM METRIFY.MARTS.DIM_METERS").fetchone() == (1,)
        conn.close()
