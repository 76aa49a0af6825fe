"""The HTTP client against a real local server: retries, backoff, Retry-After, auth, timeouts, redaction."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from metrify.sources.http import (
    AuthError,
    ClientError,
    Endpoint,
    HttpClient,
    HttpError,
    RetriesExhausted,
    describe,
    parse_retry_after,
    redact,
)
from metrify_dev.fakes import FakeApi, FakeServer, Request, World
from tests.fake_apis import FAST

SECRET = "s3cr3t-key-0123456789"


class Scripted(FakeApi):
    """Answers with the scripted responses in order, then 200 "ok" forever."""

    name = "scripted"

    def __init__(self, script: list[tuple[int, dict[str, str], bytes]]):
        super().__init__(World(), SECRET)
        self.script = list(script)

    def handle(self, req: Request):
        if self.script:
            return self.script.pop(0)
        return 200, {"Content-Type": "text/plain"}, b"ok"


@pytest.fixture
def serve():
    servers: list[FakeServer] = []

    def start(script, **extra):
        server = FakeServer(Scripted(script)).start()
        servers.append(server)
        endpoint = Endpoint("test_api", server.url, secret=SECRET, extra={**FAST, **extra})
        sleeps: list[float] = []
        return server, HttpClient(endpoint, sleep=sleeps.append), sleeps

    yield start
    for server in servers:
        server.stop()


def test_5xx_then_success_retries_with_growing_backoff(serve) -> None:
    server, client, sleeps = serve([(503, {}, b"busy"), (502, {}, b"bad gateway")], backoff_base=0.1, backoff_max=10)
    response = client.get("/x", params={"appid": SECRET})
    assert response.text == "ok"
    assert client.calls == 3 and len(server.requests) == 3
    assert len(sleeps) == 2
    # exponential (0.1, 0.2) plus jitter in [0, 0.1]
    assert 0.1 <= sleeps[0] <= 0.2 and 0.2 <= sleeps[1] <= 0.3


def test_5xx_forever_gives_up_with_a_clear_redacted_message(serve) -> None:
    server, client, _ = serve([(503, {}, b"down")] * 5, attempts=3)
    with pytest.raises(RetriesExhausted) as info:
        client.get("/x", params={"securityToken": SECRET, "documentType": "A65"})
    message = str(info.value)
    assert "gave up after 3 attempts" in message and "HTTP 503" in message and "test_api" in message
    assert "documentType=A65" in message and SECRET not in message
    assert len(server.requests) == 3


def test_429_waits_for_retry_after_seconds(serve) -> None:
    _, client, sleeps = serve([(429, {"Retry-After": "7"}, b"slow down")])
    assert client.get("/x").status_code == 200
    assert sleeps == [7.0]


def test_429_retry_after_http_date_and_too_long_waits() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after("garbage") is None and parse_retry_after(None) is None


def test_429_asking_for_more_than_max_retry_after_fails_without_sleeping(serve) -> None:
    server, client, sleeps = serve([(429, {"Retry-After": "3600"}, b"")], max_retry_after=60)
    with pytest.raises(HttpError, match="asks to wait 3600 s"):
        client.get("/x")
    assert sleeps == [] and len(server.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_fail_at_once_naming_the_connection(serve, status: int) -> None:
    server, client, sleeps = serve([(status, {}, f"Invalid API key {SECRET}".encode())])
    with pytest.raises(AuthError) as info:
        client.get("/x", params={"appid": SECRET})
    message = str(info.value)
    assert f"HTTP {status}" in message and "Airflow connection 'test_api'" in message
    assert SECRET not in message, "the key leaked into the error message"
    assert len(server.requests) == 1 and sleeps == []


def test_other_4xx_is_not_retried(serve) -> None:
    server, client, _ = serve([(400, {}, b'{"cod":"400","message":"wrong latitude"}')])
    with pytest.raises(ClientError, match="wrong latitude"):
        client.get("/x")
    assert len(server.requests) == 1


def test_timeout_is_retried_then_succeeds() -> None:
    server = FakeServer(Scripted([])).start()
    try:
        server.inject("timeout", times=1, delay=1.5)
        sleeps: list[float] = []
        client = HttpClient(Endpoint("slow_api", server.url, extra={**FAST, "timeout": 0.5}), sleep=sleeps.append)
        assert client.get("/x").text == "ok"
        assert client.calls == 2 and len(sleeps) == 1
    finally:
        server.stop()


def test_timeouts_forever_fail_naming_the_timeout() -> None:
    server = FakeServer(Scripted([])).start()
    try:
        server.inject("timeout", times=None, delay=1.0)
        client = HttpClient(
            Endpoint("slow_api", server.url, secret=SECRET, extra={**FAST, "timeout": 0.3, "attempts": 2}),
            sleep=lambda s: None,
        )
        with pytest.raises(RetriesExhausted, match="timed out after 0.3 s") as info:
            client.get("/x", params={"appid": SECRET})
        assert SECRET not in str(info.value)
    finally:
        server.stop()


def test_connection_refused_is_retried_and_reported() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    client = HttpClient(
        Endpoint("gone_api", f"http://127.0.0.1:{port}", secret=SECRET, extra=FAST), sleep=lambda s: None
    )
    with pytest.raises(RetriesExhausted, match="could not connect") as info:
        client.get("/x", params={"token": SECRET})
    assert client.calls == 3 and SECRET not in str(info.value)


def test_redaction_and_endpoint_repr_hide_keys() -> None:
    params = {"securityToken": SECRET, "appid": SECRET, "lat": "52.5"}
    assert redact(params) == {"securityToken": "***", "appid": "***", "lat": "52.5"}
    endpoint = Endpoint.from_dict("owm", {"host": "api.example.org", "password": SECRET, "extra": '{"timeout": 3}'})
    assert endpoint.base_url == "https://api.example.org" and endpoint.setting("timeout", 30) == 3
    assert SECRET not in repr(endpoint) and SECRET not in describe(endpoint, "/w", params)
    local = Endpoint.from_dict("x", {"host": "127.0.0.1", "port": 8080, "schema": "http"})
    assert local.base_url == "http://127.0.0.1:8080"
