"""Nothing secret or personal leaves through an alert: every alert kind (task failed, deadline
missed, too-late readings) is sent with known secrets and meter ids in play, through a failing
webhook whose URL holds a token, a working webhook, and e-mail; the alert log, the webhook
bodies, the e-mails and every log record are scanned for them."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socketserver
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from metrify.config import load_settings
from metrify.oncall import alerts
from metrify.quality.checkpoint import CheckpointOutcome, QualityGateError, failure_message

METER = "DE0000011011500000000000000000001"
OTHER_METER = "DE1000091011500000000000000000009"
SAMPLE_VALUE = "1234.5678"
WEBHOOK_TOKEN = "whk7Qx9Lm2Pz8Rt4Vb6Nc1Kd3"
QUERY_TOKEN = "qtok5Hf7Jk9Lm1Np3Qr5St7"
ENTSOE_TOKEN = "entsoe-secret-4f8a9b2c1d7e"
OWM_KEY = "owmkey9e8d7c6b5a4f3e2d1c"
OAUTH_SECRET = "oauth-client-secret-55aa66bb"
DB_PASSWORD = "pgpass77aa88bb"
PSEUDONYM_KEY = "test-pseudonym-key-0123456789abcdef"
SECRETS = (WEBHOOK_TOKEN, QUERY_TOKEN, ENTSOE_TOKEN, OWM_KEY, OAUTH_SECRET, DB_PASSWORD, PSEUDONYM_KEY)
PERSONAL = (METER, OTHER_METER, SAMPLE_VALUE)


class Webhook:
    """A local HTTP endpoint that records each body and answers with `status`."""

    def __init__(self, status: int) -> None:
        self.bodies: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.bodies.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0001/B0002/{WEBHOOK_TOKEN}"
        self.url += f"?token={QUERY_TOKEN}"


class SmtpSink(socketserver.ThreadingTCPServer):
    """Just enough SMTP for smtplib: every message's DATA is kept."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self) -> None:
        self.messages: list[str] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 sink ready\r\n")
                while line := self.rfile.readline():
                    command = line.decode(errors="replace").strip().upper()
                    if command.startswith(("EHLO", "HELO")):
                        self.wfile.write(b"250 sink\r\n")
                    elif command == "DATA":
                        self.wfile.write(b"354 end with .\r\n")
                        data = []
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data.append(chunk.decode(errors="replace"))
                        sink.messages.append("".join(data))
                        self.wfile.write(b"250 queued\r\n")
                    elif command == "QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:
                        self.wfile.write(b"250 ok\r\n")

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    yield sink
    sink.shutdown()
    sink.server_close()


@pytest.fixture
def channels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp: SmtpSink) -> dict[str, Any]:
    """Alert log, e-mail and (set per test) a webhook; secrets in the environment as production has them."""
    monkeypatch.setenv("METRIFY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("METRIFY_ALERT_LOG", str(tmp_path / "alerts.log"))
    monkeypatch.setenv("METRIFY_ALERT_EMAIL_TO", "oncall@example.invalid")
    monkeypatch.setenv("METRIFY_SMTP_HOST", f"127.0.0.1:{smtp.server_address[1]}")
    monkeypatch.setenv("METRIFY_PSEUDONYM_KEY", PSEUDONYM_KEY)
    monkeypatch.setenv("ENTSOE_API_TOKEN", ENTSOE_TOKEN)
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPENWEATHERMAP_API",
        json.dumps({"conn_type": "http", "host": "https://api.openweathermap.org", "password": OWM_KEY}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_NETZTRANSPARENZ_API",
        json.dumps({"conn_type": "http", "login": "client", "extra": {"client_secret": OAUTH_SECRET}}),
    )
    return {"log": tmp_path / "alerts.log", "smtp": smtp}


def failure_context(error: Exception, task_id: str = "gate") -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id="quality_meter_readings",
        task_id=task_id,
        map_index=3,
        run_id="scheduled__2026-11-23T03:00:00+00:00",
        try_number=1,
        log_url="http://localhost:8080/dags/quality_meter_readings/runs/x/tasks/gate?try_number=1&map_index=3",
    )
    return {"ti": ti, "exception": error}


def gate_failure() -> QualityGateError:
    """A real gate failure message with sample rows (meter ids and values)."""
    outcome = CheckpointOutcome(
        success=False,
        failures=[
            {
                "expectation": "expect_column_values_to_be_between",
                "column": "consumption_kwh",
                "severity": "critical",
                "kwargs": {"min_value": 0},
                "element_count": 400,
                "unexpected_count": 2,
                "unexpected_percent": 0.5,
                "suite": "meter_readings",
                "sample_rows": [
                    {"meter_id": METER, "reading_ts": "2026-11-16 05:00:00+00:00", "consumption_kwh": SAMPLE_VALUE},
                    {"meter_id": OTHER_METER, "reading_ts": "2026-11-16 05:15:00+00:00", "consumption_kwh": "-7"},
                ],
            }
        ],
    )
    return QualityGateError(failure_message("meter_readings", "2026-11-16 hour 05", outcome, 2, "/lake/q.parquet"))


def everything_sent(channels: dict[str, Any], webhook: Webhook | None, caplog: pytest.LogCaptureFixture) -> str:
    parts = [channels["log"].read_text() if channels["log"].exists() else ""]
    parts += webhook.bodies if webhook else []
    parts += channels["smtp"].messages
    parts += [caplog.text] + [r.getMessage() for r in caplog.records]
    return "\n".join(parts)


def assert_clean(sent: str) -> None:
    for secret in SECRETS:
        assert secret not in sent, f"secret {secret} left through an alert channel or log"
    for value in PERSONAL:
        assert value not in sent, f"personal value {value} left through an alert channel or log"


def test_a_gate_failure_alert_carries_pseudonyms_and_counts_only(channels, caplog) -> None:
    webhook = Webhook(200)
    os.environ["METRIFY_ALERT_WEBHOOK_URL"] = webhook.url
    try:
        caplog.set_level(logging.DEBUG)
        alerts.FailureNotifier().notify(failure_context(gate_failure()))
    finally:
        del os.environ["METRIFY_ALERT_WEBHOOK_URL"]
    sent = everything_sent(channels, webhook, caplog)
    assert_clean(sent)
    assert len(webhook.bodies) == 1 and len(channels["smtp"].messages) == 1
    body = json.loads(webhook.bodies[0])
    assert "quality gate FAILED for meter_readings interval 2026-11-16 hour 05" in body["text"]
    assert "2 sample row(s) withheld" in body["text"]
    logged = json.loads(channels["log"].read_text().splitlines()[-1])
    assert logged["runbook"].endswith("#quality-gate-failed")
    # a meter named elsewhere in an error becomes its stable pseudonym
    from metrify import redaction

    alerts.FailureNotifier().notify(failure_context(RuntimeError(f"duplicate reading for meter_id={METER}")))
    again = json.loads(channels["log"].read_text().splitlines()[-1])
    assert redaction.pseudonym(METER) in again["error"] and METER not in again["error"]
    assert redaction.pseudonym(METER) == redaction.pseudonym(METER) != redaction.pseudonym(OTHER_METER)


def test_a_failing_webhook_never_logs_its_url(channels, caplog) -> None:
    webhook = Webhook(500)
    os.environ["METRIFY_ALERT_WEBHOOK_URL"] = webhook.url
    try:
        caplog.set_level(logging.DEBUG)
        error = RuntimeError(
            f"GET https://api.openweathermap.org/data/2.5/weather?appid={OWM_KEY}&lat=52.5 failed; "
            f"registry postgresql://metrify:{DB_PASSWORD}@db:5432/registry unreachable; token {ENTSOE_TOKEN}; "
            f"oauth {OAUTH_SECRET}; hook {webhook.url}"
        )
        used = alerts.send(alerts.build_alert("task failed", failure_context(error, "land_weather")))
    finally:
        del os.environ["METRIFY_ALERT_WEBHOOK_URL"]
    assert used == ["log", "email"]
    assert any("alert webhook failed" in r.getMessage() for r in caplog.records)
    assert_clean(everything_sent(channels, webhook, caplog))
    # the refused URL form too: nothing listens on port 9
    os.environ["METRIFY_ALERT_WEBHOOK_URL"] = f"http://127.0.0.1:9/services/T1/B2/{WEBHOOK_TOKEN}?token={QUERY_TOKEN}"
    try:
        alerts.send(alerts.build_alert("task failed", failure_context(RuntimeError("boom"))))
    finally:
        del os.environ["METRIFY_ALERT_WEBHOOK_URL"]
    assert_clean(everything_sent(channels, webhook, caplog))


def test_deadline_and_too_late_alerts_pass_the_same_redaction(channels, caplog) -> None:
    from metrify.ingest import tasks as ingest_tasks

    webhook = Webhook(200)
    os.environ["METRIFY_ALERT_WEBHOOK_URL"] = webhook.url
    try:
        caplog.set_level(logging.DEBUG)
        asyncio.run(alerts.deadline_missed(dag_id="transform", message=f"late; see {webhook.url} meter {METER}"))
        ti = failure_context(RuntimeError("x"), "reconcile")["ti"]
        reports = [{"topic": "meter-readings", "partition": 0, "too_late": 3}]
        ingest_tasks.alert_too_late(reports, {"ti": ti}, load_settings())
    finally:
        del os.environ["METRIFY_ALERT_WEBHOOK_URL"]
    assert len(webhook.bodies) == 2 and len(channels["smtp"].messages) == 2
    assert_clean(everything_sent(channels, webhook, caplog))


def test_every_secret_the_project_reads_is_registered_with_airflows_masker(channels, monkeypatch) -> None:
    from airflow.sdk.log import redact as airflow_redact

    from metrify import redaction

    monkeypatch.setenv("METRIFY_ALERT_WEBHOOK_URL", f"https://hooks.example.invalid/services/T1/B2/{WEBHOOK_TOKEN}")
    alerts.send(alerts.build_alert("task failed", failure_context(RuntimeError("boom"))))
    for secret in (WEBHOOK_TOKEN, ENTSOE_TOKEN, OWM_KEY, OAUTH_SECRET, PSEUDONYM_KEY):
        assert secret not in str(airflow_redact(f"a task log line with {secret} in it")), secret
    redaction.register_connection_values("kafka-sasl-pass-123", {"sasl.password": "sasl-extra-secret-9"})
    for secret in ("kafka-sasl-pass-123", "sasl-extra-secret-9"):
        assert secret not in str(airflow_redact(f"librdkafka said {secret}")), secret


def test_the_pseudonym_key_defaults_to_a_private_generated_file(tmp_path, monkeypatch) -> None:
    from metrify import redaction

    monkeypatch.setenv("METRIFY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("METRIFY_PSEUDONYM_KEY", raising=False)
    first = redaction.pseudonym(METER)
    key_file = load_settings().home / "pseudonym.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert redaction.pseudonym(METER) == first, "stable while the key file stays"
    monkeypatch.setenv("METRIFY_PSEUDONYM_KEY", PSEUDONYM_KEY)
    assert redaction.pseudonym(METER) != first, "the configured key decides"
