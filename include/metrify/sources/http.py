"""A small, robust HTTP client for the polling DAGs (grid operators, weather services).

Every call has a timeout. Timeouts, connection errors and 5xx answers are retried with
exponential backoff and jitter (`tenacity`); a 429 waits for the server's `Retry-After`;
401/403 fail at once with a message naming the Airflow connection to fix. Error messages and
log lines never contain a secret: query parameters that carry keys (`securityToken`, `appid`,
...) are redacted, and the original `requests` exception (whose text holds the full URL) is
not chained.

Endpoints come from Airflow connections (`Endpoint.from_airflow`) in tasks, or from the plain
dicts the fake servers return (`Endpoint.from_dict`) in tests. Client tuning lives in the
connection's extra: `timeout`, `connect_timeout`, `attempts`, `backoff_base`, `backoff_max`,
`max_retry_after` (seconds).
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

log = logging.getLogger(__name__)

SECRET_PARAMS = frozenset(
    {"securitytoken", "appid", "token", "apikey", "api_key", "key", "client_secret", "access_token", "password"}
)
RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


class HttpError(RuntimeError):
    """A request failed; the message names the connection and a redacted URL."""

    def __init__(self, message: str, *, conn_id: str, status: int | None = None, body: str | None = None):
        super().__init__(message)
        self.conn_id = conn_id
        self.status = status
        self.body = body


class AuthError(HttpError):
    """401/403: the credentials in the Airflow connection are wrong, expired or lack rights."""


class TransientError(HttpError):
    """Timeout, connection error or 5xx: worth retrying."""


class RateLimitedError(TransientError):
    """429: retry after `retry_after` seconds."""

    def __init__(
        self, message: str, *, conn_id: str, retry_after: float | None, status: int = 429, body: str | None = None
    ):
        super().__init__(message, conn_id=conn_id, status=status, body=body)
        self.retry_after = retry_after


class RetriesExhausted(HttpError):
    """Every attempt timed out, failed to connect, or got 5xx/429."""


class ClientError(HttpError):
    """Another 4xx: the request itself is wrong (or the source says: no data)."""


@dataclass(frozen=True)
class Endpoint:
    """Where a source lives and how to authenticate: the contents of one Airflow connection."""

    conn_id: str
    base_url: str
    login: str | None = None
    secret: str | None = field(default=None, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, conn_id: str, conn: Mapping[str, Any]) -> Endpoint:
        """From an Airflow connection as a dict (the `AIRFLOW_CONN_*` JSON form)."""
        extra = conn.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra.strip() else {}
        return cls(
            conn_id=conn_id,
            base_url=_base_url(conn.get("host"), conn.get("schema"), conn.get("port")),
            login=conn.get("login") or None,
            secret=conn.get("password") or None,
            extra=dict(extra),
        )

    @classmethod
    def from_airflow(cls, conn_id: str) -> Endpoint:
        """Read the Airflow connection `conn_id` (inside a task) and mask its secrets in logs."""
        from airflow.sdk import Connection

        from metrify import redaction

        conn = Connection.get(conn_id)
        extra = conn.extra_dejson or {}
        redaction.register_connection_values(conn.password, extra)
        if not conn.host:
            raise ValueError(
                f"Airflow connection '{conn_id}' has no host: set it to the API's base URL "
                f"(see docs/grid-and-weather.md)"
            )
        return cls(
            conn_id=conn_id,
            base_url=_base_url(conn.host, conn.schema, conn.port),
            login=conn.login or None,
            secret=conn.password or None,
            extra=dict(extra),
        )

    def setting(self, name: str, default: float) -> float:
        value = self.extra.get(name)
        return default if value is None or value == "" else float(value)


def _base_url(host: str | None, schema: str | None, port: int | None) -> str:
    host = (host or "").strip().rstrip("/")
    if "://" in host:
        return host
    scheme = schema if schema in ("http", "https") else "https"
    return f"{scheme}://{host}{f':{port}' if port else ''}"


def redact(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The query parameters with every key-like value replaced by `***`."""
    return {k: ("***" if k.lower() in SECRET_PARAMS else v) for k, v in (params or {}).items()}


def describe(endpoint: Endpoint, path: str, params: Mapping[str, Any] | None) -> str:
    """A loggable description of a request: base URL, path and redacted query."""
    query = urlencode(redact(params))
    return f"{endpoint.base_url}{path}{'?' + query if query else ''}"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class HttpClient:
    """Requests against one endpoint with timeouts, retries and clear, secret-free errors."""

    def __init__(
        self, endpoint: Endpoint, session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep
    ):
        self.endpoint = endpoint
        self.session = session or requests.Session()
        self.sleep = sleep
        self.timeout = (endpoint.setting("connect_timeout", 5.0), endpoint.setting("timeout", 30.0))
        self.attempts = int(endpoint.setting("attempts", 4))
        self.backoff_base = endpoint.setting("backoff_base", 1.0)
        self.backoff_max = endpoint.setting("backoff_max", 30.0)
        self.max_retry_after = endpoint.setting("max_retry_after", 120.0)
        self.calls = 0  # HTTP requests actually sent (for tests and logs)

    def get(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        accept: tuple[int, ...] = (200,),
    ) -> requests.Response:
        return self.request("GET", path, params=params, headers=headers, accept=accept)

    def post(
        self,
        path: str,
        data: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        accept: tuple[int, ...] = (200,),
    ) -> requests.Response:
        return self.request("POST", path, params=params, data=data, headers=headers, accept=accept)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        accept: tuple[int, ...] = (200,),
    ) -> requests.Response:
        """Send with retries; return the response if its status is in `accept`, else raise."""
        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.attempts)),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            sleep=self.sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(method, path, params, data, headers, accept)
        except TransientError as exc:
            raise RetriesExhausted(
                f"gave up after {self.attempts} attempts: {exc}", conn_id=exc.conn_id, status=exc.status, body=exc.body
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return error.retry_after
        return wait_exponential_jitter(multiplier=self.backoff_base, max=self.backoff_max, jitter=self.backoff_base)(
            state
        )

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("attempt %d/%d failed: %s; retrying in %.1f s", state.attempt_number, self.attempts, error, wait)

    def _once(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        data: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        accept: tuple[int, ...],
    ) -> requests.Response:
        where = f"{method} {describe(self.endpoint, path, params)} (connection '{self.endpoint.conn_id}')"
        conn_id = self.endpoint.conn_id
        self.calls += 1
        try:
            response = self.session.request(
                method,
                self.endpoint.base_url + path,
                params=params,
                data=data,
                headers=dict(headers or {}),
                timeout=self.timeout,
            )
        except requests.Timeout:
            raise TransientError(f"{where} timed out after {self.timeout[1]:g} s", conn_id=conn_id) from None
        except requests.ConnectionError as exc:
            kind = type(exc).__name__
            raise TransientError(
                f"{where} could not connect ({kind}); is the host right and the service up?", conn_id=conn_id
            ) from None
        except requests.RequestException as exc:
            raise HttpError(f"{where} failed: {type(exc).__name__}", conn_id=conn_id) from None
        status = response.status_code
        if status in accept:
            return response
        full = response.text[:100_000] if response.text else ""
        if self.endpoint.secret:
            full = full.replace(self.endpoint.secret, "***")
        body = _snippet(full)
        if status in (401, 403):
            raise AuthError(
                f"{where} was refused with HTTP {status}: the credentials are wrong, expired or lack access. "
                f"Fix the key/token in Airflow connection '{conn_id}' (password or extra) and clear the task. "
                f"Server said: {body}",
                conn_id=conn_id,
                status=status,
                body=full,
            )
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None and retry_after > self.max_retry_after:
                raise HttpError(
                    f"{where} is rate limited (HTTP 429) and asks to wait {retry_after:.0f} s, more than "
                    f"max_retry_after={self.max_retry_after:.0f} s; failing so that Airflow retries later",
                    conn_id=conn_id,
                    status=status,
                    body=full,
                )
            raise RateLimitedError(
                f"{where} is rate limited (HTTP 429, Retry-After {retry_after})",
                conn_id=conn_id,
                retry_after=retry_after,
                body=full,
            )
        if status in RETRYABLE_STATUS:
            raise TransientError(f"{where} answered HTTP {status}: {body}", conn_id=conn_id, status=status, body=full)
        raise ClientError(f"{where} answered HTTP {status}: {body}", conn_id=conn_id, status=status, body=full)


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")
