"""Every setting and connection id of the pipeline, read from the environment in one place.

Each value has an embedded default, so `make run` works on a fresh clone; production overrides
the same names (README, "Configuration"). Call `load_settings()` at run time, never at import:
tests and the local stack change the environment between calls.

Paths default to the source checkout only when the package runs from one (the editable dev
install: `<repo>/.metrify`, `<repo>/dbt`). Installed (the image installs it into site-packages)
there is no checkout: `METRIFY_HOME` and `METRIFY_DBT_DIR` then default to `$AIRFLOW_HOME/metrify`
and `$AIRFLOW_HOME/dbt` (the image sets both explicitly, under /opt/airflow).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from metrify import validate


def _source_checkout() -> Path | None:
    """The repository this module runs from (`<repo>/include/metrify/config.py`, the editable dev
    install), or None when the package is installed: site-packages holds no checkout."""
    here = Path(__file__).resolve()
    root = here.parents[2]
    if here.parents[1].name == "include" and (root / "dbt" / "dbt_project.yml").is_file():
        return root
    return None


SOURCE_CHECKOUT = _source_checkout()

# Airflow connection ids: each can be renamed by the environment variable next to it.
KAFKA_CONN_ID = ("METRIFY_KAFKA_CONN_ID", "kafka_default")
LAKE_CONN_ID = ("METRIFY_LAKE_CONN_ID", "aws_default")
REGISTRY_CONN_ID = ("METRIFY_REGISTRY_CONN_ID", "postgres_default")
SNOWFLAKE_CONN_ID = ("METRIFY_SNOWFLAKE_CONN_ID", "snowflake_default")
DUCKDB_CONN_ID = ("METRIFY_DUCKDB_CONN_ID", "metrify_duckdb")
SOURCE_CONN_IDS = {
    "entsoe": ("METRIFY_ENTSOE_CONN_ID", "entsoe_api"),
    "gridradar": ("METRIFY_GRIDRADAR_CONN_ID", "gridradar_api"),
    "dwd": ("METRIFY_BRIGHTSKY_CONN_ID", "brightsky_api"),
    "openweathermap": ("METRIFY_OPENWEATHERMAP_CONN_ID", "openweathermap_api"),
}
# Airflow pool every DuckDB warehouse task queues in (DuckDB allows one writing process).
DUCKDB_POOL = "duckdb_warehouse"

WAREHOUSE_TARGETS = ("duckdb", "snowflake")

# How many days each lake layer keeps its `date=` partitions (DAG `apply_retention`, daily):
# `METRIFY_RETENTION_DAYS_<LAYER>`; 0 keeps the layer forever. Raw readings must outlive the
# late-data lookback (the gate judges late hours again from raw: the default grows with a longer
# `METRIFY_LATE_LOOKBACK_DAYS`, a shorter setting is refused); validated readings are the
# warehouse's source of record and kept until an operator sets a limit; substitute values complete
# the validated record's daily totals (flagged) and are kept as long as it.
RETENTION_DEFAULTS = {
    "raw": 90,
    "quarantine": 90,
    "validated": 0,
    "substituted": 0,
    "anomalies": 365,
    "quality": 365,
    "forecast": 365,
}
# Days of validated history the day-ahead load forecast reads per series (DAG `forecast_load`).
FORECAST_HISTORY_DAYS = 56
DBT_EXECUTION_MODES = ("local", "watcher")


class _Environment:
    """Reads settings from a mapping of environment variables (default: the process's)."""

    def __init__(self, environ: Mapping[str, str] | None) -> None:
        self.environ = os.environ if environ is None else environ

    def get(self, name: str, default: str) -> str:
        """The variable's value; `default` when it is unset or empty."""
        return self.environ.get(name) or default

    def raw(self, name: str, default: str) -> str:
        """The variable's value as set (an empty value stays empty, e.g. to switch a channel off)."""
        return self.environ.get(name, default)

    def days(self, name: str, default: str) -> int:
        """A positive whole number of days."""
        value = self.get(name, default)
        if not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"{name} must be a positive whole number of days, got {value!r}")
        return int(value)

    def retention(self, layer: str, default: int) -> int:
        """`METRIFY_RETENTION_DAYS_<LAYER>`: a whole number of days, 0 for "keep forever"."""
        name = f"METRIFY_RETENTION_DAYS_{layer.upper()}"
        value = self.get(name, str(default)).strip()
        if not value.isdigit():
            raise ValueError(f"{name} must be a whole number of days (0 keeps {layer}/ forever), got {value!r}")
        return int(value)

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.get(name, default).lower()
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        return value


@dataclass(frozen=True)
class Settings:
    """Runtime settings. Build with `load_settings()` so the environment is read at call time."""

    home: Path
    lake_url: str
    lake_conn_id: str
    meter_topic: str
    kafka_conn_id: str
    consumer_group: str
    batch_size: int
    batch_bytes: int
    late_lookback_days: int
    registry_conn_id: str
    snowflake_conn_id: str
    duckdb_conn_id: str
    source_conn_ids: dict[str, str]
    warehouse_target: str
    warehouse_path: Path
    warehouse_parallelism: int
    dbt_dir: Path
    dbt_execution_mode: str
    task_retries: int
    deadline_alerts: bool
    weather_cities: str
    grid_repoll_hours: float
    weather_repoll_hours: float
    alert_log: str
    alert_webhook_url: str = field(repr=False)  # a credential: never in a repr
    alert_email_to: str
    alert_email_from: str
    smtp_host: str
    runbook_url: str
    pseudonym_key: str = field(repr=False)  # keys the meter pseudonyms of alerts (metrify.redaction)
    # days each lake layer keeps its date= partitions; 0: forever (`RETENTION_DEFAULTS`)
    retention_days: dict[str, int] = field(default_factory=lambda: dict(RETENTION_DEFAULTS))

    @property
    def late_lookback(self) -> timedelta:
        """How old a reading may be when it is ingested; older ones are quarantined as too late."""
        return timedelta(days=self.late_lookback_days)

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def simulator_dir(self) -> Path:
        return self.home / "simulator"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def gx_home(self) -> Path:
        return self.home / "gx"

    @property
    def dbt_manifest(self) -> Path:
        return self.dbt_dir / "target" / "manifest.json"

    @property
    def warehouse_pool(self) -> str:
        """DuckDB allows one writing process: its tasks queue in a one-slot pool."""
        return DUCKDB_POOL if self.warehouse_target == "duckdb" else "default_pool"


def default_locations(environ: Mapping[str, str] | None = None) -> tuple[Path, Path]:
    """Where METRIFY_HOME and METRIFY_DBT_DIR point when unset: the checkout's `.metrify` and
    `dbt/` in a checkout; installed, `metrify/` and `dbt/` in Airflow's home (`$AIRFLOW_HOME`,
    Airflow's default `~/airflow`; /opt/airflow in the image, where the Dockerfile puts `dbt/`)."""
    if SOURCE_CHECKOUT is not None:
        return SOURCE_CHECKOUT / ".metrify", SOURCE_CHECKOUT / "dbt"
    airflow_home = Path(_Environment(environ).get("AIRFLOW_HOME", "~/airflow")).expanduser()
    return airflow_home / "metrify", airflow_home / "dbt"


def retention_days(env: _Environment, late_lookback_days: int) -> dict[str, int]:
    """Each layer's retention; raw must outlive the late-data lookback (else a late reading's
    hour could not be judged again)."""
    defaults = {**RETENTION_DEFAULTS, "raw": max(RETENTION_DEFAULTS["raw"], late_lookback_days + 2)}
    days = {layer: env.retention(layer, default) for layer, default in defaults.items()}
    if 0 < days["raw"] <= late_lookback_days + 1:
        raise ValueError(
            f"METRIFY_RETENTION_DAYS_RAW ({days['raw']}) must be 0 (keep forever) or more than "
            f"METRIFY_LATE_LOOKBACK_DAYS + 1 ({late_lookback_days + 1}): the gate judges late hours from raw/"
        )
    return days


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of `environ` (default: this process's environment, read now)."""
    env = _Environment(environ)
    default_home, default_dbt_dir = default_locations(env.environ)
    home = Path(env.get("METRIFY_HOME", str(default_home))).resolve()
    late_lookback_days = env.days("METRIFY_LATE_LOOKBACK_DAYS", "35")
    return Settings(
        home=home,
        lake_url=env.get("METRIFY_LAKE_URL", (home / "lake").as_uri()),
        lake_conn_id=env.get(*LAKE_CONN_ID),
        # a folder of the lake's _state/ and part of every raw file name: a Kafka topic name only
        meter_topic=validate.topic(env.get("METRIFY_METER_TOPIC", "meter-readings"), "METRIFY_METER_TOPIC"),
        kafka_conn_id=env.get(*KAFKA_CONN_ID),
        consumer_group=env.get("METRIFY_CONSUMER_GROUP", "metrify-ingest"),
        batch_size=int(env.get("METRIFY_BATCH_SIZE", "100000")),
        # message bytes per batch: with one batch reading and one publishing, a drain holds about
        # twice this (plus Arrow and Parquet buffers); files stay below object stores' single-PUT size
        batch_bytes=int(env.get("METRIFY_BATCH_BYTES", str(64 * 2**20))),
        # older readings are quarantined at ingestion ("too late: ..."), where on-call hears of them
        late_lookback_days=late_lookback_days,
        registry_conn_id=env.get(*REGISTRY_CONN_ID),
        snowflake_conn_id=env.get(*SNOWFLAKE_CONN_ID),
        duckdb_conn_id=env.get(*DUCKDB_CONN_ID),
        source_conn_ids={source: env.get(*spec) for source, spec in SOURCE_CONN_IDS.items()},
        warehouse_target=env.choice("METRIFY_WAREHOUSE_TARGET", "duckdb", WAREHOUSE_TARGETS),
        warehouse_path=Path(env.get("METRIFY_WAREHOUSE_PATH", str(home / "warehouse.duckdb"))),
        warehouse_parallelism=int(env.get("METRIFY_WAREHOUSE_PARALLELISM", "8")),
        dbt_dir=Path(env.get("METRIFY_DBT_DIR", str(default_dbt_dir))),
        # WATCHER: chosen by measurement (`python -m metrify_dev.bench.transform_modes`)
        dbt_execution_mode=env.choice("METRIFY_DBT_EXECUTION_MODE", "watcher", DBT_EXECUTION_MODES),
        task_retries=int(env.get("METRIFY_TASK_RETRIES", "3")),
        deadline_alerts=env.get("METRIFY_DEADLINE_ALERTS", "on") != "off",
        weather_cities=env.raw("METRIFY_WEATHER_CITIES", "").strip(),
        # How far back a scheduled polling run re-polls, so late publications land (see
        # `metrify.sources.tasks`): ENTSO-E's 1 h delay plus 2 h; DWD's 2 h delay plus 4 h.
        grid_repoll_hours=float(env.get("METRIFY_GRID_REPOLL_HOURS", "3")),
        weather_repoll_hours=float(env.get("METRIFY_WEATHER_REPOLL_HOURS", "6")),
        alert_log=env.raw("METRIFY_ALERT_LOG", str(home / "alerts.log")),
        alert_webhook_url=env.raw("METRIFY_ALERT_WEBHOOK_URL", ""),
        alert_email_to=env.raw("METRIFY_ALERT_EMAIL_TO", ""),
        alert_email_from=env.get("METRIFY_ALERT_EMAIL_FROM", "metrify-alerts@localhost"),
        smtp_host=env.get("METRIFY_SMTP_HOST", "localhost"),
        runbook_url=env.get("METRIFY_RUNBOOK_URL", "RUNBOOK.md"),  # or the runbook's URL in your repository host
        # empty: a random key generated once into <METRIFY_HOME>/pseudonym.key (metrify.redaction)
        pseudonym_key=env.raw("METRIFY_PSEUDONYM_KEY", ""),
        retention_days=retention_days(env, late_lookback_days),
    )


@contextmanager
def environ_overrides(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for a block, then restore what was there."""
    saved = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
