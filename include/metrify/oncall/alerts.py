"""On-call alerts: task failures and missed deadlines, to a log file, a webhook and/or e-mail.

Channels come from the environment, so each deployment chooses its own without code changes:

    METRIFY_ALERT_LOG          JSON-lines file (default <METRIFY_HOME>/alerts.log; "" disables)
    METRIFY_ALERT_WEBHOOK_URL  POST {"text": ..., "alert": {...}}: a Slack/Teams incoming webhook
                               or any HTTP endpoint
    METRIFY_ALERT_EMAIL_TO     comma-separated recipients, sent through METRIFY_SMTP_HOST[:PORT]

Every alert names the DAG, task, run and try, carries the error's first lines, the log URL and
the RUNBOOK.md section to follow. Whatever the channel, an alert first passes one redaction step
(`metrify.redaction.redact`): secrets masked, URLs without credentials or tokens, meter ids as
pseudonyms, sample rows as a count. The log line saying an alert was sent carries the same text.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import requests
from airflow.sdk import BaseNotifier, Context

from metrify import redaction
from metrify.config import load_settings

log = logging.getLogger(__name__)

ERROR_LINES = 5  # lines of the error an alert quotes (after redaction)
# loggers that may write an alert's URL: urllib3 logs each request's path and query at DEBUG
REDACTED_LOGGERS = ("urllib3.connectionpool", __name__)

# Error text -> runbook section: the first match wins.
RUNBOOK_SECTIONS: tuple[tuple[str, str], ...] = (
    # specific phrases first: a gate failure's sample rows contain meter ids with "401"/"403" in them
    ("erasure of meter", "erasure-and-retention"),
    ("erase_meter", "erasure-and-retention"),
    ("lake retention", "erasure-and-retention"),
    ("not in the registry", "meter-not-in-the-registry"),
    ("quality gate", "quality-gate-failed"),
    ("too-late readings", "too-late-readings"),
    ("expectation", "quality-gate-failed"),
    ("has not published", "source-data-missing"),  # a polled source's intervals past its publication delay
    ("no record for", "source-data-missing"),
    ("kafka", "broker-down"),
    ("broker", "broker-down"),
    ("401", "api-key-expired"),
    ("403", "api-key-expired"),
    ("credentials", "api-key-expired"),
    ("reconciliation", "reconciliation-failed"),
    ("dbt", "warehouse-load-failed"),
    ("warehouse", "warehouse-load-failed"),
    ("snowflake", "warehouse-load-failed"),
)


def runbook_link(error_text: str) -> str:
    lowered = error_text.lower()
    section = next((s for needle, s in RUNBOOK_SECTIONS if needle in lowered), "triage")
    return f"{load_settings().runbook_url}#{section}"


def build_alert(kind: str, context: dict[str, Any]) -> dict[str, Any]:
    ti = context.get("ti") or context.get("task_instance")
    error = context.get("exception")
    error_text = f"{type(error).__name__}: {error}" if error else ""
    dag_run = context.get("dag_run")
    alert = {
        "kind": kind,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "map_index": getattr(ti, "map_index", None),
        "run_id": getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "error": "\n".join(error_text.splitlines()[:50]),  # redaction and trimming happen in `send`
        "log_url": getattr(ti, "log_url", None),
        "runbook": runbook_link(error_text or kind),
    }
    return alert


def alert_text(alert: dict[str, Any]) -> str:
    where = f"{alert['dag_id']}.{alert['task_id']}" if alert.get("task_id") else str(alert["dag_id"])
    if alert.get("map_index") not in (None, -1):
        where += f"[{alert['map_index']}]"
    lines = [f":rotating_light: {alert['kind']}: {where} (run {alert['run_id']}, try {alert['try_number']})"]
    if alert.get("error"):
        lines.append(alert["error"])
    if alert.get("log_url"):
        lines.append(f"log: {alert['log_url']}")
    lines.append(f"runbook: {alert['runbook']}")
    return "\n".join(lines)


def prepare(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert as it may leave: redacted (`metrify.redaction`), the error cut to ERROR_LINES lines."""
    clean: dict[str, Any] = redaction.redact(alert)
    if clean.get("error"):
        clean["error"] = "\n".join(str(clean["error"]).splitlines()[:ERROR_LINES])
    return clean


def send(alert: dict[str, Any]) -> list[str]:
    """Redact the alert, deliver it to every configured channel and log that it was sent; returns
    the channels used. Never raises."""
    settings = load_settings()
    redaction.install_log_filter(*REDACTED_LOGGERS)
    redaction.register_environment(settings)
    alert = prepare(alert)
    text = alert_text(alert)
    used = []
    log_path = settings.alert_log
    if log_path:
        try:
            os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
            with open(log_path, "a") as handle:
                handle.write(json.dumps(alert, default=str) + "\n")
            used.append("log")
        except OSError as exc:
            log.error("could not write alert log %s: %s", log_path, exc)
    webhook = settings.alert_webhook_url
    if webhook:
        try:
            requests.post(webhook, json={"text": text, "alert": alert}, timeout=10).raise_for_status()
            used.append("webhook")
        except requests.RequestException as exc:  # its text holds the webhook's URL: redacted
            log.error("alert webhook failed: %s", redaction.redact_text(f"{type(exc).__name__}: {exc}"))
    recipients = settings.alert_email_to
    if recipients:
        try:
            message = EmailMessage()
            message["Subject"] = text.splitlines()[0]
            message["From"] = settings.alert_email_from
            message["To"] = recipients
            message.set_content(text)
            host, _, port = settings.smtp_host.partition(":")
            with smtplib.SMTP(host, int(port or 25), timeout=10) as smtp:
                smtp.send_message(message)
            used.append("email")
        except (OSError, smtplib.SMTPException) as exc:
            log.error("alert e-mail failed: %s", redaction.redact_text(f"{type(exc).__name__}: {exc}"))
    log.error("alert sent (%s): %s", ", ".join(used) or "no channel", text)
    return used


class FailureNotifier(BaseNotifier):
    """An Airflow notifier for `on_failure_callback`: one alert per failed task try."""

    def __init__(self, kind: str = "task failed") -> None:
        super().__init__()
        self.kind = kind

    def notify(self, context: Context) -> None:
        send(build_alert(self.kind, dict(context)))


async def deadline_missed(**kwargs: Any) -> None:
    """AsyncCallback for DeadlineAlert: the DAG run has not finished in time."""
    context = kwargs.get("context") or {}
    dag_run = context.get("dag_run") or {}
    alert = {
        "kind": "deadline missed",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dag_id": kwargs.get("dag_id") or (dag_run.get("dag_id") if isinstance(dag_run, dict) else None),
        "task_id": None,
        "map_index": None,
        "run_id": dag_run.get("run_id") if isinstance(dag_run, dict) else None,
        "try_number": None,
        "error": kwargs.get("message", "the run did not finish within its deadline"),
        "log_url": None,
        "runbook": f"{load_settings().runbook_url}#deadline-missed",
    }
    send(alert)
