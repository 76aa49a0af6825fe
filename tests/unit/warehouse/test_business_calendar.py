"""One calendar for Python and dbt: quarter-hours per business day, 92 / 96 / 100."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pytest

from metrify.config import environ_overrides, load_settings
from metrify.warehouse import business_calendar, dbt_runner

SPRING_FORWARD, FALL_BACK, ORDINARY = date(2026, 3, 29), date(2026, 10, 25), date(2026, 6, 15)


def test_quarter_hours_in_local_day() -> None:
    assert business_calendar.quarter_hours_in_local_day(SPRING_FORWARD) == 92
    assert business_calendar.quarter_hours_in_local_day(FALL_BACK) == 100
    assert business_calendar.quarter_hours_in_local_day(ORDINARY) == 96
    # a UTC day (the quality tasks' meter-day) has no clock change
    assert {business_calendar.quarter_hours_in_day(d, "UTC") for d in (SPRING_FORWARD, FALL_BACK)} == {96}


def test_the_dbt_macro_and_the_python_calendar_agree(tmp_path) -> None:
    """The macro `quarter_hours_in_local_day`, compiled by dbt for DuckDB from the project's var
    `business_timezone`, gives the Python calendar's length for every day of 2026 and 2027."""
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(730)]
    sql = (
        "select cast(d as date) as day, {{ metrify.quarter_hours_in_local_day('cast(d as date)') }} as quarter_hours "
        "from generate_series(date '2026-01-01', date '2027-12-31', interval 1 day) as days(d) order by 1"
    )
    from dbt.cli.main import dbtRunner

    with environ_overrides({"METRIFY_HOME": str(tmp_path), "METRIFY_WAREHOUSE_PATH": None}):
        settings = load_settings()
        project = str(settings.dbt_dir)
        args = ["compile", "--inline", sql, "--project-dir", project, "--profiles-dir", project, "--target", "duckdb"]
        args += ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]
        with environ_overrides(dbt_runner.dbt_env("duckdb", settings)):
            result = dbtRunner().invoke(args)
    assert result.success, result.exception
    compiled = result.result.results[0].node.compiled_code
    assert "Europe/Berlin" in compiled  # from the var business_timezone
    found = dict(duckdb.connect().execute(compiled).fetchall())
    assert found == {d: business_calendar.quarter_hours_in_local_day(d) for d in days}
    assert (found[SPRING_FORWARD], found[FALL_BACK], found[ORDINARY]) == (92, 100, 96)


@pytest.mark.parametrize("day", [SPRING_FORWARD, FALL_BACK, ORDINARY])
def test_the_dbt_data_test_holds_the_same_three_days(day: date) -> None:
    """`dbt/tests/assert_quarter_hours_in_local_day.sql` (run on every build, both engines)
    checks the macro on the same days against the Python calendar's values."""
    text = (load_settings().dbt_dir / "tests" / "assert_quarter_hours_in_local_day.sql").read_text()
    assert f"(date '{day.isoformat()}', {business_calendar.quarter_hours_in_local_day(day)})" in text
