"""Erasure of one meter: a lake and a warehouse holding two meters in every layer; one is erased.

What remains is read straight from the files (pyarrow) and the warehouse (duckdb), never through
the erasure code: nothing of the erased meter anywhere, every row of the other meter intact.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from metrify import lake, redaction
from metrify.config import load_settings
from metrify.contracts import anomalies, readings, registry, substitutes
from metrify.privacy import erasure
from metrify.privacy.tasks import meter_id_from_conf
from metrify.quality.scores import SCORE_SCHEMA
from metrify.warehouse import duckdb_loader

GONE = "DE0000011011500000000000000000001"
STAYS = "DE0000011011500000000000000000002"
DAY = "2026-11-20"
START = datetime(2026, 11, 20, 5, 15, tzinfo=UTC)


def readings_table(meters: dict[str, int], hour: int = 5, schema: pa.Schema = readings.RAW_SCHEMA) -> pa.Table:
    """`count` quarter-hour readings per meter in one hour; kWh differ per meter and slot."""
    rows: list[dict[str, Any]] = []
    for n, (meter, count) in enumerate(meters.items()):
        for slot in range(count):
            ts = START.replace(hour=hour) + timedelta(minutes=15 * slot)
            rows.append(
                {
                    "meter_id": meter,
                    "reading_ts": ts,
                    "consumption_kwh": 0.1 * (n + 1) + 0.01 * slot,
                    "export_kwh": 0.0,
                    "voltage": 230.0,
                    "current": 1.0,
                    "power_factor": 0.95,
                    "frequency": 50.0,
                    "temperature": 5.0,
                    "humidity": 80.0,
                    "topic": "meter-readings",
                    "partition": 0,
                    "offset": len(rows),
                    "kafka_ts": ts,
                    "ingested_at": ts,
                    "delivered_copies": 1,
                    "corrected": False,
                    "reason": "impossible value: voltage",
                    "gated_at": ts,
                }
            )
    return pa.Table.from_pylist(rows, schema=schema)


def quarantine_table() -> pa.Table:
    def message(meter: str | None, body: bytes, offset: int) -> dict[str, Any]:
        return {
            "topic": "meter-readings",
            "partition": 0,
            "offset": offset,
            "kafka_ts": START,
            "key": None if meter is None else meter.encode(),
            "raw_value": body,
            "reason": "not JSON",
            "quarantined_at": START,
        }

    return pa.Table.from_pylist(
        [
            message(GONE, b'{"meter_id": "%s", "voltage": "x"}' % GONE.encode(), 1),
            message(None, b'{"meter_id":"%s","reading_ts":' % GONE.encode(), 2),  # no key, cut off
            message(STAYS, b'{"meter_id": "%s", "voltage": "x"}' % STAYS.encode(), 3),
            message(None, b"\xff\xfe garbage", 4),
        ],
        schema=readings.QUARANTINE_SCHEMA,
    )


def anomaly_table() -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"meter_id": m, "reading_ts": START, "anomaly_type": "spike", "severity": "warning", "score": 1.0,
             "detector": "zscore", "details": "{}"}
            for m in (GONE, STAYS, STAYS)
        ],
        schema=anomalies.METER_ANOMALY_SCHEMA,
    )  # fmt: skip


def score_table() -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"meter_id": m, "day": DAY, "readings": 96, "expected_readings": 96, "completeness": 1.0,
             "accuracy": 1.0, "consistency": 1.0, "timeliness": 1.0, "quality_score": 100.0,
             "quality_tier": "gold", "quality_action": "accept"}
            for m in (GONE, STAYS)
        ],
        schema=SCORE_SCHEMA,
    )  # fmt: skip


def substitutes_table() -> pa.Table:
    """Substitute values: two of the erased meter's quarter-hours, one of the other's."""
    return pa.Table.from_pylist(
        [
            {"meter_id": m, "business_date": START.date(), "interval_start": START + timedelta(minutes=15 * i),
             "reading_ts": START + timedelta(minutes=15 * (i + 1)), "substitute_kwh": 0.1, "method": "bdew_profile",
             "gap_reason": "no_reading", "computed_at": START}
            for i, m in enumerate((GONE, GONE, STAYS))
        ],
        schema=substitutes.SUBSTITUTE_SCHEMA,
    )  # fmt: skip


def registry_frame(meters: tuple[str, ...] = (GONE, STAYS)) -> pd.DataFrame:
    rows = [
        {"meter_id": m, "load_profile": "H25", "postal_code": "10115", "city": "Berlin", "region": "BE",
         "grid_operator": "50Hertz", "latitude": 52.5, "longitude": 13.4, "installed_date": None,
         "status": "active", "yearly_kwh": 3000.0, "pv_kwp": 0.0}
        for m in meters
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=registry.REGISTRY_SCHEMA.names)


def build_lake(root: Any) -> dict[str, str]:
    """Both meters in every layer; an hour holding only the erased meter; a grid file."""
    files = {
        "raw": f"raw/meter_readings/date={DAY}/hour=05/meter-readings-0-0-99.parquet",
        "raw_only_gone": f"raw/meter_readings/date={DAY}/hour=06/meter-readings-0-100-103.parquet",
        "validated": f"validated/meter_readings/date={DAY}/hour=05/validated.parquet",
        "quarantine": f"quarantine/meter_readings/date={DAY}/meter-readings-0-0-99.parquet",
        "gate": f"quarantine/meter_readings_gate/date={DAY}/hour=05/gate.parquet",
        "anomalies": f"anomalies/meter_readings/date={DAY}/meter_readings_anomalies.parquet",
        "scores": f"quality/meter_day_scores/date={DAY}/meter_day_scores.parquet",
        "grid": f"validated/grid_status/date={DAY}/validated.parquet",
        "substituted": f"substituted/meter_readings/date={DAY}/substitutes.parquet",
    }
    gate_schema = pa.unify_schemas(
        [readings.RAW_SCHEMA, pa.schema([("reason", pa.string()), ("gated_at", pa.timestamp("us", tz="UTC"))])]
    )
    tables = {
        "raw": readings_table({GONE: 4, STAYS: 4}),
        "raw_only_gone": readings_table({GONE: 4}, hour=6),
        "validated": readings_table({GONE: 3, STAYS: 4}, schema=readings.VALIDATED_SCHEMA),
        "quarantine": quarantine_table(),
        "gate": readings_table({GONE: 1, STAYS: 1}, schema=gate_schema),
        "anomalies": anomaly_table(),
        "scores": score_table(),
        "grid": pa.table({"operator_name": ["TenneT"], "reading_ts": [START], "load_factor": [0.5]}),
        "substituted": substitutes_table(),
    }
    for name, relative in files.items():
        lake.write_parquet(tables[name], root / relative)
    # the gate's verdict for hour 05, current for its raw files, quoting the meter in a sample row
    raw_files = lake.list_files(root / f"raw/meter_readings/date={DAY}/hour=05")
    marker = {
        "date": DAY,
        "hour": 5,
        "status": "passed",
        "rows": 8,
        "validated": 7,
        "quarantined": 2,
        "raw_files": raw_files,
        "raw_fingerprint": lake.fingerprint(root, raw_files),
        "failures": [{"expectation": "x", "sample_rows": [{"meter_id": GONE, "voltage": "190.0"}]}],
    }
    lake.write_json(marker, root / f"_quality/meter_readings/date={DAY}/hour=05.json")
    return files


def build_warehouse(settings: Any) -> None:
    with duckdb_loader.duckdb_session(None, settings) as db:
        duckdb_loader.sync(settings=settings, conn=db)
        duckdb_loader.load_registry_duckdb(registry_frame(), conn=db)
        db.execute("CREATE SCHEMA marts")
        db.execute(
            "CREATE TABLE marts.fct_meter_readings_hourly AS SELECT meter_id, date_trunc('hour', reading_ts) AS "
            "hour_start, count(*) AS reading_count, sum(consumption_kwh) AS kwh FROM raw.meter_readings GROUP BY ALL"
        )
        db.execute("CREATE VIEW marts.v_meters AS SELECT meter_id FROM raw.meter_registry")  # a view: left alone


def lake_rows(lake_dir: Path) -> dict[str, dict[str, Any]]:
    """Per lake file (relative path): rows of each meter and their kWh, read with pyarrow only."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(lake_dir.rglob("*.parquet")):
        table = pq.read_table(path)
        per: dict[str, Any] = {}
        for meter in (GONE, STAYS):
            if "meter_id" in table.column_names:
                mine = table.filter(pc.equal(table["meter_id"], meter))
            elif "raw_value" in table.column_names:
                body = [v or b"" for v in table["raw_value"].to_pylist()]
                keys = [k or b"" for k in table["key"].to_pylist()]
                mine = table.filter(
                    pa.array([meter.encode() in b or k == meter.encode() for b, k in zip(body, keys, strict=True)])
                )
            else:
                continue
            kwh = pc.sum(mine["consumption_kwh"]).as_py() if "consumption_kwh" in mine.column_names else None
            per[meter] = (mine.num_rows, kwh)
        if per:  # a file without meter ids (grid status) is checked by its bytes
            found[str(path.relative_to(lake_dir))] = per
    return found


def warehouse_rows(path: Path) -> dict[str, dict[str, int]]:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as db:
        tables = db.execute(
            "SELECT table_schema, table_name FROM information_schema.columns WHERE column_name = 'meter_id'"
        ).fetchall()
        return {
            f"{s}.{t}": {
                m: db.execute(f'SELECT count(*) FROM "{s}"."{t}" WHERE meter_id = ?', [m]).fetchone()[0]
                for m in (GONE, STAYS)
            }
            for s, t in tables
        }


@pytest.fixture
def world(lake_root: Any) -> dict[str, Any]:
    settings = load_settings()
    files = build_lake(lake_root)
    build_warehouse(settings)
    registry_db = sqlite3.connect(":memory:")
    registry_db.execute("CREATE TABLE meter_registry (meter_id TEXT, postal_code TEXT, city TEXT)")
    registry_db.executemany(
        "INSERT INTO meter_registry VALUES (?, '10115', 'Berlin')", [(GONE,), (STAYS,), (STAYS + "9",)]
    )
    results = settings.gx_home / "meter_readings" / "gx" / "uncommitted" / "validations" / "run.json"
    results.parent.mkdir(parents=True)
    results.write_text(json.dumps({"partial_unexpected_list": [GONE, STAYS, GONE + "0"]}))
    return {
        "gx_results": results,
        "root": lake_root,
        "lake": Path(str(lake_root.path)),
        "settings": settings,
        "files": files,
        "registry": registry_db,
    }


def test_erasing_a_meter_leaves_none_of_its_rows_and_all_of_the_others(world: dict[str, Any]) -> None:
    settings, root, files, home = world["settings"], world["root"], world["files"], world["lake"]
    lake_before, wh_before = lake_rows(home), warehouse_rows(settings.warehouse_path)
    # the world holds both meters in every layer and warehouse table
    layers_with_gone = {p.split("/")[0] + "/" + p.split("/")[1] for p, m in lake_before.items() if m[GONE][0]}
    assert layers_with_gone == {
        "raw/meter_readings",
        "validated/meter_readings",
        "quarantine/meter_readings",
        "quarantine/meter_readings_gate",
        "anomalies/meter_readings",
        "quality/meter_day_scores",
        "substituted/meter_readings",
    }
    assert all(counts[GONE] and counts[STAYS] for counts in wh_before.values() if counts), wh_before
    assert {
        "raw.meter_readings",
        "raw.meter_anomalies",
        "raw.meter_registry",
        "raw.substituted_readings",
        "marts.fct_meter_readings_hourly",
    } <= {t for t, c in wh_before.items() if c[GONE]}
    grid_bytes = (home / files["grid"]).read_bytes()

    report = erasure.erase_meter(
        GONE, requested_by="dpo@example.org", run_id="manual__1", registry_cursor=world["registry"].cursor(),
        registry_placeholder="?",
    )  # fmt: skip

    lake_after, wh_after = lake_rows(home), warehouse_rows(settings.warehouse_path)
    # nothing of the erased meter, anywhere in the lake
    assert {p: m[GONE] for p, m in lake_after.items() if m[GONE][0]} == {}
    assert files["raw_only_gone"] not in lake_after  # nothing else was in it: removed
    # every row of the other meter intact, in count and kWh, file by file
    assert {p: m[STAYS] for p, m in lake_after.items()} == {
        p: m[STAYS] for p, m in lake_before.items() if p != files["raw_only_gone"]
    }
    assert (home / files["grid"]).read_bytes() == grid_bytes  # no meter ids: untouched
    # the warehouse: no row of the erased meter, every row of the other; the view still works
    assert {t: c[GONE] for t, c in wh_after.items() if c[GONE]} == {}
    assert {t: c[STAYS] for t, c in wh_after.items()} == {t: c[STAYS] for t, c in wh_before.items()}
    # the registry: only the erased meter's row (not one whose id merely starts with the same)
    assert sorted(r[0] for r in world["registry"].execute("SELECT meter_id FROM meter_registry")) == [
        STAYS,
        STAYS + "9",
    ]

    # the gate's marker: scrubbed, and still current for the rewritten raw files
    marker_text = (home / f"_quality/meter_readings/date={DAY}/hour=05.json").read_text()
    marker = json.loads(marker_text)
    assert GONE not in marker_text and redaction.pseudonym(GONE) in marker_text
    assert marker["raw_fingerprint"] == lake.fingerprint(root, lake.list_files(root / marker["raw_files"][0]))
    assert (marker["rows"], marker["validated"], marker["quarantined"]) == (4, 4, 1)  # the other meter's

    # Great Expectations results: the id replaced, a longer id that starts with it left alone
    assert json.loads(world["gx_results"].read_text())["partial_unexpected_list"] == [
        redaction.pseudonym(GONE),
        STAYS,
        GONE + "0",
    ]

    # the audit record: the pseudonym, who, which run, counts; never the id
    audits = list((home / "_audit" / "erasures").glob("*.json"))
    assert len(audits) == 1
    text = audits[0].read_text()
    assert GONE not in text and "0000000000000001" not in text
    audit = json.loads(text)
    assert audit["meter_pseudonym"] == redaction.pseudonym(GONE) == report.meter_pseudonym
    assert audit["requested_by"] == "dpo@example.org" and audit["run_id"] == "manual__1"
    assert audit["started_at"] and audit["finished_at"] and audit["status"] == "complete"
    assert audit["lake_rows_by_layer"] == {
        "raw/meter_readings": 8,
        "validated/meter_readings": 3,
        "quarantine/meter_readings": 2,
        "quarantine/meter_readings_gate": 1,
        "anomalies/meter_readings": 1,
        "quality/meter_day_scores": 1,
        "substituted/meter_readings": 2,
    }
    assert audit["warehouse_tables"]["raw.substituted_readings"] == 2
    assert {f["path"]: f["rows_removed"] for f in audit["lake_files"]}[files["raw"]] == 4
    assert audit["warehouse_tables"]["raw.meter_readings"] == wh_before["raw.meter_readings"][GONE]
    assert audit["registry_rows"] == 1 and audit["gx_files_scrubbed"] == 1

    # erasing again removes nothing and says so
    again = erasure.erase_meter(GONE, requested_by="dpo@example.org")
    assert again.lake_files == [] and not any(again.warehouse_tables.values())


@pytest.mark.parametrize(
    "bad",
    [
        "x' OR '1'='1",
        f"{STAYS}' OR meter_id <> '",
        "DE1; DROP TABLE raw.meter_readings; --",
        "../../etc/passwd",
        "%",
        "",
        " " + GONE,
        "D" * 65,
        None,
        ["DE1"],
    ],
)
def test_something_that_is_not_a_meter_id_is_refused_before_anything_is_touched(
    world: dict[str, Any], bad: Any
) -> None:
    home = world["lake"]
    before = lake_rows(home), warehouse_rows(world["settings"].warehouse_path)
    with pytest.raises(ValueError, match="meter_id must be a meter id"):
        erasure.erase_meter(
            bad, requested_by="someone", registry_cursor=world["registry"].cursor(), registry_placeholder="?"
        )
    assert (lake_rows(home), warehouse_rows(world["settings"].warehouse_path)) == before
    assert not (home / "_audit").exists()
    assert world["registry"].execute("SELECT count(*) FROM meter_registry").fetchone()[0] == 3


def test_the_dag_conf_is_checked_with_a_clear_error() -> None:
    assert meter_id_from_conf({}, {"meter_id": GONE}) == GONE
    with pytest.raises(ValueError, match="needs the meter id in the run's conf"):
        meter_id_from_conf({"meter_id": ""}, {})
    with pytest.raises(ValueError, match=r"erase_meter refused the run's conf: meter_id must be a meter id.*nothing"):
        meter_id_from_conf({}, {"meter_id": "1' OR '1'='1"})


def test_the_dag_param_pattern_is_the_validators() -> None:
    from metrify import validate

    source = (Path(__file__).resolve().parents[3] / "dags" / "erase_meter.py").read_text()
    assert f'pattern=r"^{validate.METER_ID_PATTERN}$"' in source
    assert readings.METER_ID_MAX_LEN == 64 and validate.meter_id("D" * 64, "m")


def test_the_dag_task_body_erases_and_names_a_failure_by_pseudonym(world: dict[str, Any]) -> None:
    from metrify.privacy import tasks

    record = tasks.erase(GONE, "operator", "manual__2", erase_in_registry=False)
    assert GONE not in json.dumps(record) and record["registry_rows"] is None
    assert record["lake_rows_removed"] == 18 and record["warehouse_rows_removed"] > 0  # 2 of them substitutes

    # a warehouse that cannot be opened: the task fails naming the meter by its pseudonym only
    world["settings"].warehouse_path.unlink()
    world["settings"].warehouse_path.mkdir()
    with pytest.raises(RuntimeError, match=r"erasure of meter meter~[0-9a-f]{16} failed") as failed:
        tasks.erase(STAYS, "operator", "manual__3", erase_in_registry=False)
    assert STAYS not in str(failed.value)
    records = [json.loads(p.read_text()) for p in (world["lake"] / "_audit" / "erasures").glob("*.json")]
    assert sorted(r["status"] for r in records) == ["complete", "failed"]
    failed_record = next(r for r in records if r["status"] == "failed")
    assert failed_record["run_id"] == "manual__3" and "IOException" in failed_record["error"]
    assert failed_record["lake_rows_removed"] > 0  # what it erased before the failure is listed
    assert STAYS not in json.dumps(failed_record)


def test_the_erasure_task_deletes_the_meter_from_the_postgresql_registry(metrify_home, monkeypatch) -> None:
    """The registry as production holds it: PostgreSQL (the embedded server), reached by the task
    through `postgres_default` and the provider's hook, read back with psycopg2."""
    import psycopg2

    from metrify.privacy import tasks
    from metrify_dev import postgres

    lookalike = STAYS + "9"  # starts like a kept id: must stay
    settings = load_settings()
    connection = postgres.seed_registry(registry_frame((GONE, STAYS, lookalike)), settings)
    monkeypatch.setenv(f"AIRFLOW_CONN_{settings.registry_conn_id.upper()}", json.dumps(connection))
    uri = postgres.start_registry_db(settings)
    try:
        record = tasks.erase(GONE, "dpo@example.org", "manual__registry")
        assert record["registry_rows"] == 1 and GONE not in json.dumps(record)
        with psycopg2.connect(uri) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT meter_id FROM {registry.TABLE} ORDER BY meter_id")
            assert [r[0] for r in cur.fetchall()] == [STAYS, lookalike]
        assert tasks.erase(GONE, "dpo@example.org", "manual__again")["registry_rows"] == 0  # a retry is harmless
    finally:
        postgres.stop_registry_db(settings)
