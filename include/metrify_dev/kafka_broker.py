"""A real single-node Apache Kafka 4.x broker (KRaft, broker+controller in one JVM) on loopback.

For tests, the local stack and benchmarks. The broker jars come from Maven Central through a
small POM kept beside this module and are cached under `<home>/kafka-dist/<version>/libs`; the
broker's data, configuration, TLS material and log live under `<home>/kafka-broker/`.

Clients connect the way production does: SASL_SSL with SCRAM-SHA-512 (a self-signed CA and
server certificate in PEM, made at first start). `connection_extra()` is the librdkafka
configuration a client needs, i.e. the extra of an Airflow Kafka connection.

    broker = KafkaBroker(Path(".metrify"))
    broker.up()                      # reuses a running broker
    broker.create_topic("meter-readings")
    Producer(broker.connection_extra())
    broker.restart()                 # same data, same address
    broker.stop()

Command line: `python -m metrify_dev.kafka_broker up|down|status|restart --home DIR`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from metrify.file_lock import exclusive
from metrify_dev import ports

KAFKA_VERSION = "4.4.0"
KAFKA_ARTIFACT = "org.apache.kafka:kafka_2.13"
DEFAULT_PARTITIONS = 12
SASL_MECHANISM = "SCRAM-SHA-512"
SECURITY_PROTOCOL = "SASL_SSL"
USERNAME = "metrify"
HOST = "127.0.0.1"
NODE_ID = 1
OFFSETS_PARTITIONS = 12  # offsets.topic.num.partitions
# Errors of a group coordinator that is still loading after a (re)start: retried while waiting.
_COORDINATOR_NOT_READY = {
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
}

POM = Path(__file__).with_name("kafka_broker_pom.xml")
# Named in full so that Maven needs no plugin-prefix lookup (and the result is reproducible).
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
INSTALL_HINT = "apt-get install openjdk-17-jre-headless maven"
HEAP_OPTS = ["-Xmx512m", "-Xms256m"]
# The JVM options Apache's kafka-run-class.sh uses for the broker, less JMX and GC logging.
JVM_OPTS = [
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
]
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"

# Popen objects of brokers started by this process, kept so that they are reaped, not leaked.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class KafkaBrokerError(RuntimeError):
    """The broker could not be resolved, started, stopped or used; the message says what to do."""


class BrokerState(TypedDict):
    """What a running broker publishes in `<home>/kafka-broker/state.json`."""

    pid: int
    kafka_version: str
    cluster_id: str
    bootstrap: str
    controller: str
    security_protocol: str
    sasl_mechanism: str
    sasl_username: str
    ssl_ca_location: str
    connection_extra: dict[str, str]
    state_dir: str
    log_file: str
    started_at: float
    start_seconds: float
    timings: dict[str, float]


# ---------------------------------------------------------------------------------------------
# Classpath (Maven)


def _java() -> str:
    """The `java` executable ($JAVA_HOME first), or a clear error naming what to install."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise KafkaBrokerError(f"`java` not found on PATH: the Kafka broker needs a Java 17+ runtime ({INSTALL_HINT})")
    return found


def java_major_version(java: str | None = None) -> int:
    """The major version of the Java runtime (17 for 17.0.15)."""
    java = java or _java()
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise KafkaBrokerError(f"could not read the Java version from `{java} -version`: {out!r}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _maven_says(line: str) -> bool:
    """False for Maven's empty and boilerplate error lines (help links, -e/-X hints)."""
    text = re.sub(r"^\[(ERROR|WARNING|INFO)\]\s*", "", line).strip()
    boilerplate = ("To see the full", "Re-run Maven", "For more information", "[Help 1] http")
    return bool(text) and not text.startswith(boilerplate)


def resolve_classpath(dist_home: Path, version: str = KAFKA_VERSION) -> Path:
    """The folder of the broker's jars, `<dist_home>/<version>/libs`, resolved once with Maven.

    A later call finds the folder and returns at once (no Maven run).
    """
    libs = dist_home / version / "libs"
    if libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")):
        return libs
    with exclusive(dist_home / f".{version}.lock"):  # another process may be resolving them now
        if libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")):
            return libs
        return _resolve_jars(version, dist_home, libs)


def _resolve_jars(version: str, dist_home: Path, libs: Path) -> Path:
    mvn = shutil.which("mvn")
    if not mvn:
        raise KafkaBrokerError(
            f"`mvn` not found on PATH: Maven resolves the Kafka {version} broker jars from "
            f"Maven Central on first use ({INSTALL_HINT})"
        )
    _java()  # fail on a missing java before a long download
    partial = dist_home / version / "libs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(POM), f"-Dkafka.version={version}",
        f"{DEPENDENCY_PLUGIN}:copy-dependencies", "-DincludeScope=runtime",
        f"-DoutputDirectory={partial}",
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired as exc:
        raise KafkaBrokerError(
            f"Maven did not resolve {KAFKA_ARTIFACT}:{version} within 15 minutes (a slow or unreachable Maven Central?)"
        ) from exc
    if done.returncode != 0 or not any(partial.glob("kafka_2.13-*.jar")):
        output = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr).strip()
        said = "\n".join(line for line in output.splitlines() if _maven_says(line))
        if re.search(r"Could not find artifact|Failure to find|was not found in", said):
            why = f"no such artifact on Maven Central (is {version} a released Kafka version?)"
        elif re.search(
            r"Could not transfer|Unknown ?host|Network is unreachable|offline|"
            r"Connection (refused|timed out)|No plugin found",
            said,
        ):
            why = "Maven Central is not reachable (offline?) and the jars are not in the local Maven repository (~/.m2)"
        else:
            why = "see Maven's output"
        raise KafkaBrokerError(
            f"Maven could not resolve {KAFKA_ARTIFACT}:{version} and its dependencies: {why}. "
            f"Command: {' '.join(cmd)}\nMaven said:\n{said}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    return libs


# ---------------------------------------------------------------------------------------------
# Files: TLS, server.properties, log4j2


def _random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not starting '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def write_tls_files(tls_dir: Path) -> tuple[Path, Path]:
    """Make a self-signed CA and a server certificate for 127.0.0.1/localhost, in PEM.

    Returns (ca.pem, server keystore PEM: PKCS#8 key + certificate chain).
    """
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    until = now + dt.timedelta(days=3650)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "metrify local Kafka CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    tls_dir.mkdir(parents=True, exist_ok=True)
    tls_dir.chmod(0o700)  # it holds the broker's private key
    ca_path = tls_dir / "ca.pem"
    keystore = tls_dir / "server-keystore.pem"
    _write_private(ca_path, ca_cert.public_bytes(pem))
    _write_private(
        keystore,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + cert.public_bytes(pem)
        + ca_cert.public_bytes(pem),
    )
    return ca_path, keystore


def _properties(values: dict[str, object]) -> str:
    lines = ["# Written by metrify_dev.kafka_broker at every start; edits are overwritten."]
    for key, value in values.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        lines.append(f"{key}={text.replace(chr(92), chr(92) * 2)}")
    return "\n".join(lines) + "\n"


def _log4j2_file_config(log_file: Path) -> str:
    """log4j2 (properties format): INFO to a size-rolled file, as the broker's only log."""
    return f"""\
status = warn
name = metrify-kafka-broker
# Kafka logs its own shutdown from a JVM shutdown hook: keep log4j2 alive for it.
shutdownHook = disable
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.filePattern = {log_file}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
"""


# log4j2 for the storage tool: warnings and errors to stderr.
LOG4J2_TOOL_CONFIG = """\
status = warn
name = metrify-kafka-tools
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
"""


def _java_string_hash(text: str) -> int:
    """Java's String.hashCode() (for BMP text)."""
    value = 0
    for char in text:
        value = (31 * value + ord(char)) & 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


def coordinator_probe_groups(partitions: int = OFFSETS_PARTITIONS) -> list[str]:
    """One group id per __consumer_offsets partition (Kafka: abs(hashCode) % partitions)."""
    found: dict[int, str] = {}
    index = 0
    while len(found) < partitions:
        group = f"metrify-ready-probe-{index}"
        code = _java_string_hash(group)
        found.setdefault((0 if code == -(1 << 31) else abs(code)) % partitions, group)
        index += 1
    return [found[p] for p in sorted(found)]


def _pid_alive(pid: int) -> bool:
    """True if the process runs (not a zombie); reaps it if this process started it."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)
            return False
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _is_our_broker(pid: int, config: Path) -> bool:
    """True if `pid` is a live kafka.Kafka JVM started with this state folder's config."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid
    return BROKER_MAIN.encode() in cmdline and str(config).encode() in cmdline


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not written)"


# ---------------------------------------------------------------------------------------------
# The broker


class KafkaBroker:
    """One single-node KRaft broker+controller whose state lives under `home`."""

    def __init__(
        self,
        home: Path,
        version: str = KAFKA_VERSION,
        partitions: int = DEFAULT_PARTITIONS,
        dist_home: Path | None = None,
    ) -> None:
        self.home = Path(home).resolve()
        self.version = version
        self.partitions = partitions
        self.dist_home = Path(dist_home).resolve() if dist_home else self.home / "kafka-dist"
        self.state_dir = self.home / "kafka-broker"
        self.setup_file = self.state_dir / "setup.json"
        self.state_file = self.state_dir / "state.json"
        self.pid_file = self.state_dir / "broker.pid"
        self.config_file = self.state_dir / "server.properties"
        self.log_file = self.state_dir / "broker.log"
        self.console_file = self.state_dir / "console.log"
        self.data_dir = self.state_dir / "data"

    # -- public API ---------------------------------------------------------------------------

    def up(self, timeout: float = 120.0) -> BrokerState:
        """The running broker's state; starts it (resolving jars, formatting) if none runs.

        `timeout` bounds the wait for the started JVM to answer (not the Maven download).
        """
        with self._lock():
            state = self.read()
            return state if state is not None else self._start(timeout)

    def start(self, timeout: float = 120.0) -> BrokerState:
        """Start the broker; an error if one already runs under this home."""
        with self._lock():
            if self.read() is not None:
                raise KafkaBrokerError(f"a broker already runs under {self.state_dir}: use up()")
            return self._start(timeout)

    def stop(self, timeout: float = 30.0, kill: bool = False) -> bool:
        """SIGTERM the broker, SIGKILL after `timeout` s; False if none was running.

        `kill=True` sends SIGKILL at once: a crash, as far as Kafka can tell.
        """
        with self._lock():
            return self._stop(timeout, kill)

    def restart(self, timeout: float = 120.0, kill: bool = False) -> BrokerState:
        """Stop (if running; SIGKILL if `kill`) and start again: same data, cluster id, ports."""
        with self._lock():
            self._stop(kill=kill)
            return self._start(timeout)

    def read(self) -> BrokerState | None:
        """The published state of the running broker, or None (no broker, or it died)."""
        try:
            state: BrokerState = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return state if _is_our_broker(int(state["pid"]), self.config_file) else None

    def status(self) -> dict[str, Any] | None:
        """read() plus `answers`: whether the broker serves a metadata request now."""
        state = self.read()
        if state is None:
            return None
        try:
            self._admin().list_topics(timeout=5)
            answers = True
        except KafkaException:
            answers = False
        return {**state, "answers": answers}

    def connection_extra(self) -> dict[str, str]:
        """librdkafka config for a client: bootstrap, SASL_SSL/SCRAM credentials and the CA.

        Exactly what goes into an Airflow Kafka connection's extra. Known once the broker has
        been started the first time (the address and password are kept across restarts).
        """
        setup = self._read_setup()
        if setup is None:
            raise KafkaBrokerError(f"no broker set up under {self.state_dir} yet: start it first (up())")
        return {
            "bootstrap.servers": f"{HOST}:{setup['client_port']}",
            "security.protocol": SECURITY_PROTOCOL,
            "sasl.mechanisms": SASL_MECHANISM,
            "sasl.username": setup["username"],
            "sasl.password": setup["password"],
            "ssl.ca.location": str(self.state_dir / "tls" / "ca.pem"),
        }

    def create_topic(self, name: str, partitions: int | None = None, timeout: float = 30.0) -> int:
        """Create `name` with `partitions` (default: the broker's) partitions; returns the count.

        Idempotent: an existing topic with the same count is fine; a different count is an error.
        """
        partitions = partitions or self.partitions
        if self.read() is None:
            raise KafkaBrokerError(f"no broker running under {self.state_dir}: up() first")
        admin = self._admin()
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        try:
            futures[name].result(timeout=timeout + 5)
        except KafkaException as exc:
            err = exc.args[0]
            if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise KafkaBrokerError(f"could not create topic {name!r}: {err}") from exc
        deadline = time.monotonic() + timeout
        while True:
            topic = admin.list_topics(topic=name, timeout=timeout).topics.get(name)
            ready = topic is not None and topic.error is None and all(p.leader >= 0 for p in topic.partitions.values())
            if ready or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if topic is None or topic.error is not None:
            raise KafkaBrokerError(f"topic {name!r} not in the broker's metadata after creating it")
        if len(topic.partitions) != partitions:
            raise KafkaBrokerError(
                f"topic {name!r} already exists with {len(topic.partitions)} partitions, not the "
                f"{partitions} requested: delete it or ask for {len(topic.partitions)}"
            )
        return partitions

    # -- internals ----------------------------------------------------------------------------

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock on this state folder (one up/stop/restart at a time)."""
        return exclusive(self.state_dir / ".lock")

    def _admin(self) -> AdminClient:
        return AdminClient({**self.connection_extra(), "log_level": 2})

    def _read_setup(self) -> dict[str, Any] | None:
        try:
            setup: dict[str, Any] = json.loads(self.setup_file.read_text())
        except (OSError, ValueError):
            return None
        return setup

    def _ensure_setup(self) -> dict[str, Any]:
        """Ports, cluster id, credentials and TLS files: made at first start, kept after."""
        tls = self.state_dir / "tls"
        if not ((tls / "ca.pem").is_file() and (tls / "server-keystore.pem").is_file()):
            write_tls_files(tls)
        setup = self._read_setup()
        if setup is not None:
            return setup
        client_port = ports.free_port(HOST)
        controller_port = ports.free_port(HOST, exclude={client_port})
        setup = {
            "kafka_version": self.version,
            "cluster_id": _random_cluster_id(),
            "client_port": client_port,
            "controller_port": controller_port,
            "username": USERNAME,
            "password": secrets.token_urlsafe(24),
        }
        _write_private(self.setup_file, json.dumps(setup, indent=2).encode())
        return setup

    def _server_properties(self, setup: dict[str, Any]) -> dict[str, object]:
        tls = self.state_dir / "tls"
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{setup["username"]}" password="{setup["password"]}";'
        )
        client, controller = setup["client_port"], setup["controller_port"]
        return {
            "node.id": NODE_ID,
            "process.roles": "broker,controller",
            "controller.quorum.bootstrap.servers": f"{HOST}:{controller}",
            "listeners": f"CLIENT://{HOST}:{client},CONTROLLER://{HOST}:{controller}",
            "advertised.listeners": f"CLIENT://{HOST}:{client}",
            "listener.security.protocol.map": "CLIENT:SASL_SSL,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "CLIENT",
            # SASL_SSL + SCRAM-SHA-512 for clients and the broker itself; users are in the
            # cluster metadata (added when the storage is formatted).
            "sasl.enabled.mechanisms": SASL_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SASL_MECHANISM,
            "listener.name.client.scram-sha-512.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": tls / "server-keystore.pem",
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": tls / "ca.pem",
            "ssl.client.auth": "none",
            "log.dirs": self.data_dir,
            "num.partitions": self.partitions,
            "auto.create.topics.enable": True,
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            "offsets.topic.replication.factor": 1,
            "offsets.topic.num.partitions": OFFSETS_PARTITIONS,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "transaction.state.log.num.partitions": 12,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            # After a crash the controller waits this long before the restarted broker may
            # register again (default 9 s).
            "broker.session.timeout.ms": 4000,
            "broker.heartbeat.interval.ms": 1000,
            "num.network.threads": 2,
            "num.io.threads": 4,
            "num.recovery.threads.per.data.dir": 1,
            "background.threads": 4,
            "log.segment.bytes": 32 * 1024 * 1024,
            "log.retention.hours": 24,
            "log.retention.check.interval.ms": 60_000,
            "log.index.size.max.bytes": 1024 * 1024,
        }

    def _start(self, timeout: float) -> BrokerState:
        begun = time.monotonic()
        java = _java()
        major = java_major_version(java)
        if major < 17:
            raise KafkaBrokerError(f"Kafka {self.version} needs Java 17+, `{java}` is Java {major} ({INSTALL_HINT})")
        timings: dict[str, float] = {}
        libs = resolve_classpath(self.dist_home, self.version)
        timings["resolve_s"] = round(time.monotonic() - begun, 2)
        setup = self._ensure_setup()
        for port in (setup["client_port"], setup["controller_port"]):
            if not ports.is_free(port, HOST):
                raise KafkaBrokerError(
                    f"port {HOST}:{port}, kept for this broker since its first start, is in use "
                    f"by another process: free it, or stop the broker and remove "
                    f"{self.state_dir} to start afresh on new ports"
                )
        # Private: the broker's own SCRAM password is in its JAAS line.
        _write_private(self.config_file, _properties(self._server_properties(setup)).encode())
        log4j = self.state_dir / "log4j2.properties"
        log4j.write_text(_log4j2_file_config(self.log_file))
        classpath = f"{libs}/*"
        if not (self.data_dir / "meta.properties").is_file():
            formatting = time.monotonic()
            self._format(java, classpath, setup)
            timings["format_s"] = round(time.monotonic() - formatting, 2)
        cmd = [
            java, *HEAP_OPTS, *JVM_OPTS,
            f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={self.state_dir}",
            "-cp", classpath, BROKER_MAIN, str(self.config_file),
        ]  # fmt: skip
        with open(self.console_file, "ab") as console:
            console.write(f"--- start {dt.datetime.now().isoformat(timespec='seconds')}\n".encode())
            console.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=self.state_dir,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _CHILDREN[proc.pid] = proc
        self.pid_file.write_text(str(proc.pid))
        try:
            spawned = time.monotonic()
            timings["jvm_to_metadata_s"] = round(self._wait_ready(proc.pid, timeout), 2)
            timings["jvm_to_groups_s"] = round(time.monotonic() - spawned, 2)
        except BaseException:
            self._kill(proc.pid, 10.0)
            raise
        extra = self.connection_extra()
        state: BrokerState = {
            "pid": proc.pid,
            "kafka_version": self.version,
            "cluster_id": setup["cluster_id"],
            "bootstrap": extra["bootstrap.servers"],
            "controller": f"{HOST}:{setup['controller_port']}",
            "security_protocol": SECURITY_PROTOCOL,
            "sasl_mechanism": SASL_MECHANISM,
            "sasl_username": setup["username"],
            "ssl_ca_location": extra["ssl.ca.location"],
            "connection_extra": extra,
            "state_dir": str(self.state_dir),
            "log_file": str(self.log_file),
            "started_at": time.time(),
            "start_seconds": round(time.monotonic() - begun, 2),
            "timings": timings,
        }
        _write_private(self.state_file, json.dumps(state, indent=2).encode())
        return state

    def _format(self, java: str, classpath: str, setup: dict[str, Any]) -> None:
        """Format the KRaft storage once: standalone controller quorum, SCRAM user added."""
        tool_log4j = self.state_dir / "log4j2-tools.properties"
        tool_log4j.write_text(LOG4J2_TOOL_CONFIG)
        scram = f"{SASL_MECHANISM}=[name={setup['username']},password={setup['password']}]"
        cmd = [
            java, "-Xmx256m", f"-Dlog4j2.configurationFile={tool_log4j}", "-cp", classpath,
            STORAGE_TOOL_MAIN, "format", "--config", str(self.config_file),
            "--cluster-id", setup["cluster_id"], "--standalone", "--add-scram", scram,
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            said = (done.stdout + done.stderr).replace(setup["password"], "***").strip()
            raise KafkaBrokerError(
                f"formatting the Kafka storage in {self.data_dir} failed (exit {done.returncode}):\n{said}"
            )

    def _wait_ready(self, pid: int, timeout: float) -> float:
        """Block until the broker answers metadata requests over SASL_SSL and group requests.

        Group coordinators load their __consumer_offsets partitions only after the broker
        answers: an OffsetFetch for one group per partition waits for all of them, so that
        committed() right after a restart does not fail with NOT_COORDINATOR. Returns the
        seconds until the first metadata answer.
        """
        began = time.monotonic()
        errors: list[str] = []
        config: dict[str, Any] = {
            **self.connection_extra(),
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 500,
            "log_level": 0,
            "error_cb": lambda err: errors.append(str(err)),
        }
        admin = AdminClient(config)
        deadline = time.monotonic() + timeout
        while True:
            if not _pid_alive(pid):
                raise KafkaBrokerError(
                    f"the Kafka broker (pid {pid}) exited during start-up. Last lines of "
                    f"{self.log_file}:\n{_tail(self.log_file)}\n"
                    f"and of {self.console_file}:\n{_tail(self.console_file, 10)}"
                )
            try:
                admin.list_topics(timeout=1.0)
                break
            except KafkaException as exc:
                errors.append(str(exc))
            if time.monotonic() > deadline:
                raise KafkaBrokerError(
                    f"the Kafka broker (pid {pid}) did not answer a metadata request within "
                    f"{timeout:.0f} s (last client error: {errors[-1] if errors else 'none'}). "
                    f"Last lines of {self.log_file}:\n{_tail(self.log_file)}"
                )
            time.sleep(0.2)
        answered = time.monotonic() - began
        for group in coordinator_probe_groups():
            self._wait_coordinator(pid, group, deadline, timeout)
        return answered

    def _wait_coordinator(self, pid: int, group: str, deadline: float, timeout: float) -> None:
        """Block until the coordinator of `group` answers an OffsetFetch (committed()).

        A Consumer, not AdminClient.list_consumer_group_offsets: with confluent-kafka 2.16.1 the
        latter crashes the interpreter (SIGSEGV in librdkafka's rd_kafka_cgrp_op, librdkafka
        issue #5040) when the coordinator answers NOT_COORDINATOR, as it does after a restart.
        """
        consumer = Consumer(
            {**self.connection_extra(), "group.id": group, "log_level": 0,
             "enable.auto.commit": False}
        )  # fmt: skip
        last = ""
        try:
            while True:
                try:
                    consumer.committed([TopicPartition("__consumer_offsets", 0)], timeout=2)
                    return
                except KafkaException as exc:
                    err = exc.args[0]
                    if not (isinstance(err, KafkaError) and err.code() in _COORDINATOR_NOT_READY):
                        raise KafkaBrokerError(f"the Kafka broker (pid {pid}) failed an OffsetFetch: {err}") from exc
                    last = str(err)
                if time.monotonic() > deadline or not _pid_alive(pid):
                    raise KafkaBrokerError(
                        f"the Kafka broker (pid {pid}) answers metadata but its group "
                        f"coordinator was not ready within {timeout:.0f} s (last error: {last}). "
                        f"Last lines of {self.log_file}:\n{_tail(self.log_file)}"
                    )
                time.sleep(0.1)
        finally:
            consumer.close()

    def _stop(self, timeout: float = 30.0, kill: bool = False) -> bool:
        pids: list[int] = []
        for source in (self.state_file, self.pid_file):
            try:
                text = source.read_text()
                pids.append(int(json.loads(text)["pid"]) if source.suffix == ".json" else int(text))
            except (OSError, ValueError, KeyError):
                continue
        stopped = False
        for pid in dict.fromkeys(pids):
            if _is_our_broker(pid, self.config_file):
                self._kill(pid, 0.0 if kill else timeout)
                stopped = True
        self.state_file.unlink(missing_ok=True)
        self.pid_file.unlink(missing_ok=True)
        return stopped

    @staticmethod
    def _kill(pid: int, timeout: float) -> None:
        """SIGTERM the broker's process group, SIGKILL it if it outlives `timeout` s (0: at once)."""
        steps = [(signal.SIGTERM, timeout)] if timeout > 0 else []
        for sig, wait in [*steps, (signal.SIGKILL, 10.0)]:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass
            except PermissionError:
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not _pid_alive(pid):
                    return
                time.sleep(0.1)
        if _pid_alive(pid):
            raise KafkaBrokerError(f"the Kafka broker (pid {pid}) survived SIGKILL")


# ---------------------------------------------------------------------------------------------
# Command line


def _describe(state: Mapping[str, Any]) -> str:
    return (
        f"Kafka {state['kafka_version']} (KRaft, single node) pid {state['pid']} "
        f"at {state['bootstrap']} ({state['security_protocol']}/{state['sasl_mechanism']}, "
        f"user {state['sasl_username']}, CA {state['ssl_ca_location']})\n"
        f"  log: {state['log_file']}\n  state: {state['state_dir']}"
    )


def main(argv: list[str] | None = None) -> int:
    """`up|down|status|restart --home DIR [--partitions N] [--topic NAME]...`."""
    parser = argparse.ArgumentParser(
        prog="python -m metrify_dev.kafka_broker",
        description="A local single-node Kafka 4.x broker (KRaft, SASL_SSL/SCRAM-SHA-512).",
    )
    parser.add_argument("command", choices=["up", "down", "status", "restart"])
    parser.add_argument(
        "--home", type=Path, default=os.environ.get("METRIFY_HOME"),
        help="state folder (default: $METRIFY_HOME)",
    )  # fmt: skip
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS)
    parser.add_argument("--topic", action="append", default=[], help="create this topic (repeat)")
    parser.add_argument("--kafka-version", default=KAFKA_VERSION, help="from Maven Central")
    parser.add_argument("--kill", action="store_true", help="restart: SIGKILL (a crash)")
    args = parser.parse_args(argv)
    if args.home is None:
        parser.error("--home DIR is required (or set METRIFY_HOME)")
    broker = KafkaBroker(args.home, version=args.kafka_version, partitions=args.partitions)
    try:
        if args.command == "down":
            before = broker.read()
            if not broker.stop():
                print(f"no broker running under {args.home}")
            elif before is not None:
                print(f"stopped Kafka pid {before['pid']} at {before['bootstrap']}")
            else:
                print(f"stopped an unpublished broker under {args.home}")
            return 0
        if args.command == "status":
            status = broker.status()
            if status is None:
                print(f"no broker running under {args.home}")
                return 1
            print(_describe(status))
            print(f"  answers metadata requests: {status['answers']}")
            return 0 if status["answers"] else 1
        running = broker.read() if args.command == "up" else None
        state = running or (broker.up() if args.command == "up" else broker.restart(kill=args.kill))
        print(_describe(state))
        if running is not None:
            print(f"  already running (up {time.time() - state['started_at']:.0f} s)")
        else:
            steps = ", ".join(f"{k[:-2]} {v} s" for k, v in state["timings"].items())
            print(f"  started in {state['start_seconds']} s ({steps})")
        for topic in args.topic:
            count = broker.create_topic(topic, args.partitions)
            print(f"  topic {topic}: {count} partitions")
        print("connection extra: " + json.dumps(broker.connection_extra()))
        return 0
    except KafkaBrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
