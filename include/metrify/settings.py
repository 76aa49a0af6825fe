"""Where things live and what they are called, read from the environment.

Every value has an embedded default, so `make run` works on a fresh clone; production
overrides the same names (see README, "Configuration").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


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

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def simulator_dir(self) -> Path:
        return self.home / "simulator"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"


def load_settings() -> Settings:
    home = Path(_env("METRIFY_HOME", str(PROJECT_ROOT / ".metrify"))).resolve()
    return Settings(
        home=home,
        lake_url=_env("METRIFY_LAKE_URL", (home / "lake").as_uri()),
        lake_conn_id=_env("METRIFY_LAKE_CONN_ID", "aws_default"),
        meter_topic=_env("METRIFY_METER_TOPIC", "meter-readings"),
        kafka_conn_id=_env("METRIFY_KAFKA_CONN_ID", "kafka_default"),
        consumer_group=_env("METRIFY_CONSUMER_GROUP", "metrify-ingest"),
        batch_size=int(_env("METRIFY_BATCH_SIZE", "100000")),
    )
