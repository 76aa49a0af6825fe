"""What must not leave the platform: secrets and meter ids. One redaction step for every alert.

`redact(value)` is the step every outbound alert passes through (alert log line, webhook body,
e-mail and the log line saying it was sent), in this order:

1. **sample rows** (`    sample: {...}` lines of a gate failure) become one line with their count;
2. **secrets** the project knows are replaced by `***`: the values of secret-looking environment
   variables (`*_PASSWORD`, `*_TOKEN`, `*_API_KEY`, `*_SECRET*`, `METRIFY_ALERT_WEBHOOK_URL`,
   `METRIFY_PSEUDONYM_KEY`, ...), passwords and secret extras of `AIRFLOW_CONN_*` connections, and
   every secret registered while the process read a connection (`register_connection_values`);
3. **URLs** lose their credentials (`user:password@`), token-like path segments and the values of
   secret-looking query parameters (`token`, `key`, `sig`, `appid`, ...);
4. **meter ids** (`meter_id=...`, `'meter_id': '...'`, and bare German metering-point ids
   `DE` + 31 characters) become a stable pseudonym `meter~<16 hex>`: an HMAC-SHA256 of the id under
   `METRIFY_PSEUDONYM_KEY`. Unset, a random key is generated once into
   `<METRIFY_HOME>/pseudonym.key` (mode 0600): stable on that host, different on another; set the
   variable (from the secrets backend) wherever several hosts alert. `python -m metrify.redaction
   pseudonym <meter_id>...` prints the pseudonyms under the configured key.

`register(...)` also hands each secret to Airflow's secret masker (`airflow.sdk.log.mask_secret`),
so task logs mask it too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets as random_secrets
import sys
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

from metrify.config import Settings, load_settings

log = logging.getLogger(__name__)

PSEUDONYM_PREFIX = "meter~"
MASK = "***"
# environment variable names whose values are secrets
SECRET_ENV_NAME = re.compile(
    r"PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API_?KEY|PRIVATE_KEY|FERNET_KEY|PSEUDONYM_KEY|WEBHOOK_URL|CREDENTIALS"
)
# connection extra keys whose values are secrets (`sasl.password`, `private_key_content`, ...)
SECRET_FIELD = re.compile(r"password|passwd|passphrase|secret|token|api_?key|private_key|credentials|key\.pem", re.I)
# query parameters whose values are secrets (`appid`, `securityToken`, `X-Amz-Signature`, ...)
SECRET_PARAM = re.compile(r"token|key|secret|sig|password|passwd|pwd|auth|credential|appid|code|session|jwt", re.I)
# values never masked: too short, or words any text holds
MIN_SECRET_LENGTH = 5
NOT_SECRETS = frozenset({"airflow", "admin", "postgres", "password", "secret", "true", "false", "none", "null"})

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>(){}\[\]]+")
_TOKEN = re.compile(r"[A-Za-z0-9_~.-]{20,}")
_PATH_TOKEN = re.compile(r"[A-Za-z0-9_~.@=-]{20,}")  # a path segment holding a key (Slack, Teams webhooks)
_SAMPLE_LINE = re.compile(r"^\s*sample: .*$", re.M)
_KEYED_METER = re.compile(r"(?P<key>['\"]?meter_?id['\"]?\s*[:=]\s*['\"]?)(?P<id>[A-Za-z0-9._-]+)", re.I)
_METERING_POINT = re.compile(r"\bDE[0-9A-Z]{31}\b")

_registered: set[str] = set()
_connections_seen: set[str] = set()
_process_key: bytes | None = None


# --------------------------------------------------------------------------- secrets


def _worth_masking(value: Any) -> bool:
    return isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH and value.lower() not in NOT_SECRETS


def url_secrets(url: str) -> list[str]:
    """The secret parts of a URL: the whole URL, its password, its path and its query values."""
    if not url:
        return []
    parts = urlsplit(url)
    found = [url, parts.password or "", parts.path if len(parts.path) >= 8 else "", parts.query]
    found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    found += [segment for segment in parts.path.split("/") if _TOKEN.fullmatch(segment)]
    return [f for f in found if _worth_masking(f)]


def connection_secrets(password: str | None, extra: Mapping[str, Any] | None) -> list[str]:
    """A connection's password and the values of its secret-looking extra keys."""
    found = [password or ""]
    for key, value in (extra or {}).items():
        if SECRET_FIELD.search(str(key)) and value:
            found.append(value if isinstance(value, str) else json.dumps(value))
    return [f for f in found if _worth_masking(f)]


def _connection_from_env(value: str) -> list[str]:
    """Secrets of an `AIRFLOW_CONN_*` value (JSON or URI form)."""
    text = value.strip()
    if text.startswith("{"):
        try:
            conn = json.loads(text)
        except ValueError:
            return [text]
        extra = conn.get("extra") or {}
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except ValueError:
                extra = {}
        return connection_secrets(conn.get("password"), extra if isinstance(extra, dict) else {})
    return url_secrets(text)[1:]  # the URI form: its password and query values, not the whole URI


def environment_secrets(environ: Mapping[str, str] | None = None) -> set[str]:
    """Secrets in the environment: secret-looking variables, connections, passwords in URLs."""
    environ = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in environ.items():
        if not value:
            continue
        if name.startswith("AIRFLOW_CONN_"):
            found.update(_connection_from_env(value))
        elif SECRET_ENV_NAME.search(name.upper()):
            found.update(url_secrets(value) if "://" in value else [value] if _worth_masking(value) else [])
        elif "://" in value and "@" in value:
            found.update(s for s in url_secrets(value)[1:2] if s)  # a password inside a URL
    return found


def register(*values: str | None) -> None:
    """Remember secrets for `redact` and hand them to Airflow's secret masker (task logs)."""
    fresh = [v for v in values if isinstance(v, str) and _worth_masking(v) and v not in _registered]
    if not fresh:
        return
    from airflow.sdk.log import mask_secret

    for value in fresh:
        _registered.add(value)
        mask_secret(value)


def register_connection_values(password: str | None, extra: Mapping[str, Any] | None) -> None:
    """Register a connection's password and secret extras (call where a connection is read)."""
    register(*connection_secrets(password, extra))


def register_connection(conn_id: str) -> None:
    """Read connection `conn_id` once per process and register its secrets; a connection that
    does not exist (e.g. AWS credentials from an instance role) has nothing to register."""
    if conn_id in _connections_seen:
        return
    _connections_seen.add(conn_id)
    try:
        from airflow.sdk import Connection

        conn = Connection.get(conn_id)
    except Exception:  # not found, or no Airflow context to ask: nothing to mask
        return
    register_connection_values(conn.password, conn.extra_dejson)


def register_environment(settings: Settings | None = None) -> None:
    """Register the environment's secrets and the pseudonym key with Airflow's masker."""
    settings = settings or load_settings()
    register(*environment_secrets(), *url_secrets(settings.alert_webhook_url), pseudonym_key(settings).decode())


def known_secrets(settings: Settings | None = None) -> set[str]:
    """Every secret `redact` replaces: the environment's, the registered ones, the webhook's parts."""
    settings = settings or load_settings()
    return environment_secrets() | _registered | set(url_secrets(settings.alert_webhook_url))


# --------------------------------------------------------------------------- meter pseudonyms


def pseudonym_key(settings: Settings | None = None) -> bytes:
    """`METRIFY_PSEUDONYM_KEY`, else the key in `<METRIFY_HOME>/pseudonym.key` (made once, 0600),
    else (home not writable) a random key for this process only."""
    global _process_key
    settings = settings or load_settings()
    if settings.pseudonym_key:
        return settings.pseudonym_key.encode()
    path = settings.home / "pseudonym.key"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(random_secrets.token_hex(32))
        return path.read_bytes().strip()
    except OSError as exc:
        if _process_key is None:
            log.warning("cannot keep a pseudonym key in %s (%s): pseudonyms hold for this process only", path, exc)
            _process_key = random_secrets.token_hex(32).encode()
        return _process_key


def pseudonym(meter_id: str, settings: Settings | None = None) -> str:
    """The stable pseudonym of a meter id (keyed hash; the id cannot be read back from it)."""
    digest = hmac.new(pseudonym_key(settings), meter_id.encode(), hashlib.sha256).hexdigest()
    return f"{PSEUDONYM_PREFIX}{digest[:16]}"


# --------------------------------------------------------------------------- the redaction step


def _clean_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    path = "/".join(MASK if _PATH_TOKEN.fullmatch(s) and re.search(r"\d", s) else s for s in parts.path.split("/"))
    query = [
        (key, MASK if SECRET_PARAM.search(key) or _TOKEN.fullmatch(value) else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, path, urlencode(query, safe="*:/+"), parts.fragment))


def _withhold_samples(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    withheld = 0
    for line in lines + [""]:
        if _SAMPLE_LINE.fullmatch(line):
            withheld += 1
            continue
        if withheld:
            out.append(f"    ({withheld} sample row(s) withheld from alerts: see the task log or the quarantine)")
            withheld = 0
        out.append(line)
    return "\n".join(out[:-1])


def redact_text(text: str, secrets: Iterable[str] | None = None, settings: Settings | None = None) -> str:
    """`text` with sample rows counted, secrets masked, URLs cleaned and meter ids pseudonymised."""
    settings = settings or load_settings()
    text = _withhold_samples(text)
    for secret in sorted(known_secrets(settings) if secrets is None else set(secrets), key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, MASK)
    text = _URL.sub(lambda m: _clean_url(m.group(0)), text)

    def keyed(match: re.Match[str]) -> str:
        found = match.group("id")
        return match.group(0) if found.startswith(PSEUDONYM_PREFIX) else match.group("key") + pseudonym(found, settings)

    text = _KEYED_METER.sub(keyed, text)
    return _METERING_POINT.sub(lambda m: pseudonym(m.group(0), settings), text)


def redact(value: Any, settings: Settings | None = None) -> Any:
    """`value` (a string, or dicts and lists of them) through `redact_text`."""
    settings = settings or load_settings()
    secrets = known_secrets(settings)
    if isinstance(value, str):
        return redact_text(value, secrets, settings)
    if isinstance(value, Mapping):
        return {key: redact(item, settings) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item, settings) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record's message through `redact_text`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg, record.args = redact_text(record.getMessage()), None
        except Exception:  # a log line must never fail the task that writes it
            record.msg, record.args = "(log line withheld: it could not be redacted)", None
        return True


LOG_FILTER = RedactingFilter()


def install_log_filter(*logger_names: str) -> None:
    """Redact what these loggers write (e.g. urllib3, which logs a request's URL at DEBUG)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if LOG_FILTER not in logger.filters:
            logger.addFilter(LOG_FILTER)


def main(argv: list[str] | None = None) -> None:
    """`python -m metrify.redaction pseudonym <meter_id>...`: pseudonyms under the configured key."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] != "pseudonym":
        sys.exit("usage: python -m metrify.redaction pseudonym METER_ID [METER_ID ...]")
    for meter_id in args[1:]:
        print(f"{meter_id}\t{pseudonym(meter_id)}")


if __name__ == "__main__":
    main()
