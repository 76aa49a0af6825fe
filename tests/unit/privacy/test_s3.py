"""Erasure and retention on an `s3://` lake (moto's S3 server, through `aws_default`): the same
code path as the local lake."""

from __future__ import annotations

from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from metrify import lake
from metrify.config import load_settings
from metrify.privacy import erasure
from metrify.privacy.retention import apply_retention
from tests.unit.privacy.test_erasure import GONE, STAYS, build_lake
from tests.unit.test_lake_s3 import s3_endpoint, s3_lake  # noqa: F401  (fixtures)


def meter_counts(root: Any) -> dict[str, dict[str, int]]:
    """Rows per meter in each lake file, read with pyarrow from the bucket."""
    found = {}
    for path in lake.list_files(root):
        with root.fs.open(path, "rb") as handle:
            table = pq.read_table(handle)
        if "meter_id" in table.column_names:
            found[path] = {m: pc.sum(pc.equal(table["meter_id"], m)).as_py() or 0 for m in (GONE, STAYS)}
        elif "raw_value" in table.column_names:
            bodies = [v or b"" for v in table["raw_value"].to_pylist()]
            found[path] = {m: sum(m.encode() in b for b in bodies) for m in (GONE, STAYS)}
    return found


def test_erasure_and_retention_on_s3(s3_lake: str) -> None:  # noqa: F811
    root = lake.lake_root(load_settings())
    assert root.protocol == "s3"
    build_lake(root)
    before = meter_counts(root)
    assert sum(c[GONE] for c in before.values()) == 18  # 2 of them substitute values

    report = erasure.erase_meter(GONE, requested_by="dpo")

    after = meter_counts(root)
    assert sum(c[GONE] for c in after.values()) == 0
    assert {p: c[STAYS] for p, c in after.items()} == {p: c[STAYS] for p, c in before.items() if c[STAYS]}
    assert sum(f.rows_removed for f in report.lake_files) == 18
    assert lake.list_files(root / "_audit" / "erasures", suffix=".json")

    lake.write_parquet(
        pa.table({"x": [1]}), lake.partition_path(root, "raw", "grid_status", date="2020-01-01") / "a.parquet"
    )
    removed = apply_retention(load_settings(), today=date(2026, 11, 26))
    assert [p.path for p in removed.removed] == ["raw/grid_status/date=2020-01-01"]
    assert not lake.list_files(root / "raw" / "grid_status")
