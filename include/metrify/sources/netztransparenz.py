"""The German TSOs' shared platform netztransparenz.de (data service `ds.netztransparenz.de`).

Documentation followed: https://www.netztransparenz.de/de-de/Web-API and the API portal
(api-portal.netztransparenz.de). Authentication is OAuth2 client credentials: `POST` to
`https://identity.netztransparenz.de/users/connect/token` with `grant_type=client_credentials`,
`client_id`, `client_secret` gives `{"access_token", "expires_in", "token_type": "Bearer"}`;
data calls send `Authorization: Bearer <token>`. Data endpoints answer `text/csv` (despite the
OpenAPI spec saying JSON): `;`-separated, decimal commas, `N.A.` for missing values, one column
per TSO, times in UTC, e.g. `GET /api/v1/data/hochrechnung/{Solar|Wind}/{from}/{to}`:

    Datum;von;Zeitzone von;bis;Zeitzone bis;50Hertz (MW);Amprion (MW);TenneT TSO (MW);TransnetBW (MW)
    2024-10-24;10:00;UTC;10:15;UTC;5120,250;3320,000;7410,125;2100,500

The connection (`netztransparenz_api`) holds the client id as login and the client secret as
password; its extra may set `token_url`.
"""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pandas as pd

from metrify.sources import PayloadError
from metrify.sources.http import AuthError, ClientError, Endpoint, HttpClient, describe

SOURCE = "netztransparenz"
DEFAULT_TOKEN_URL = "https://identity.netztransparenz.de/users/connect/token"
TSO_COLUMNS = {
    "50Hertz (MW)": "50Hertz",
    "Amprion (MW)": "Amprion",
    "TenneT TSO (MW)": "TenneT",
    "TransnetBW (MW)": "TransnetBW",
}
TIME_COLUMNS = ("Datum", "von", "Zeitzone von", "bis", "Zeitzone bis")


class NetztransparenzClient:
    """Data calls with a cached OAuth2 token, renewed when it expires or is rejected once."""

    def __init__(self, endpoint: Endpoint, sleep=time.sleep):
        self.endpoint = endpoint
        self.data = HttpClient(endpoint, sleep=sleep)
        token_url = str(endpoint.extra.get("token_url") or DEFAULT_TOKEN_URL)
        parts = urlsplit(token_url)
        self.token_path = parts.path
        self.auth = HttpClient(
            Endpoint(
                endpoint.conn_id, f"{parts.scheme}://{parts.netloc}", endpoint.login, endpoint.secret, endpoint.extra
            ),
            sleep=sleep,
        )
        self._token: str | None = None
        self._expires = 0.0

    def token(self, force: bool = False) -> str:
        if self._token and not force and time.monotonic() < self._expires - 60:
            return self._token
        if not self.endpoint.login or not self.endpoint.secret:
            raise AuthError(
                f"Airflow connection '{self.endpoint.conn_id}' needs the client id as login and the "
                f"client secret as password",
                conn_id=self.endpoint.conn_id,
            )
        try:
            response = self.auth.post(
                self.token_path,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.endpoint.login,
                    "client_secret": self.endpoint.secret,
                },
            )
        except ClientError as exc:
            if "invalid_client" in (exc.body or "") or "unauthorized_client" in (exc.body or ""):
                raise AuthError(
                    f"netztransparenz token endpoint rejected the client credentials (HTTP "
                    f"{exc.status}, {exc.body}): fix login (client id) and password (client secret) "
                    f"in Airflow connection '{self.endpoint.conn_id}'",
                    conn_id=exc.conn_id,
                    status=exc.status,
                    body=exc.body,
                ) from None
            raise
        try:
            payload = response.json()
            self._token = str(payload["access_token"])
            self._expires = time.monotonic() + float(payload.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise PayloadError(SOURCE, "token response lacks access_token", response.text) from None
        from contextlib import suppress

        with suppress(ImportError, RuntimeError):
            from airflow.sdk.log import mask_secret

            mask_secret(self._token)
        return self._token

    def get_csv(self, path: str) -> str:
        for attempt in (1, 2):
            try:
                response = self.data.get(path, headers={"Authorization": f"Bearer {self.token(force=attempt == 2)}"})
                return response.content.decode("utf-8-sig")
            except AuthError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


def _number(text: str, raw: str) -> float | None:
    text = text.strip()
    if text in ("", "N.A.", "N.A", "n.a."):
        return None
    try:
        return float(text.replace(".", "").replace(",", ".")) if "," in text else float(text)
    except ValueError:
        raise PayloadError(SOURCE, f"value {text!r} is not a German decimal", raw) from None


def _date(text: str, raw: str) -> str:
    text = text.strip()
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(text, fmt).strftime("%Y-%m-%d")
        except ValueError:
            continue
    raise PayloadError(SOURCE, f"date {text!r} is neither YYYY-MM-DD nor DD.MM.YYYY", raw)


def parse_tso_csv(raw: str) -> pd.DataFrame:
    """A per-TSO CSV -> DataFrame indexed by interval start (UTC), one MW column per operator."""
    rows = list(csv.reader(io.StringIO(raw), delimiter=";"))
    if not rows or [c.strip() for c in rows[0][:5]] != list(TIME_COLUMNS):
        raise PayloadError(
            SOURCE,
            f"unexpected header {rows[0][:6] if rows else []!r}, expected {';'.join(TIME_COLUMNS)};<TSO> (MW)...",
            raw,
        )
    header = [c.strip() for c in rows[0]]
    tso_idx = {TSO_COLUMNS[c]: i for i, c in enumerate(header) if c in TSO_COLUMNS}
    if len(tso_idx) != 4:
        raise PayloadError(SOURCE, f"expected one column per TSO {sorted(TSO_COLUMNS)}, got {header[5:]}", raw)
    records, index = [], []
    for row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise PayloadError(SOURCE, f"row has {len(row)} fields, header {len(header)}: {';'.join(row)}", raw)
        if row[2].strip() != "UTC":
            raise PayloadError(SOURCE, f"time zone {row[2]!r}, expected UTC", raw)
        index.append(pd.Timestamp(f"{_date(row[0], raw)}T{row[1].strip()}", tz="UTC"))
        records.append({op: _number(row[i], raw) for op, i in tso_idx.items()})
    frame = pd.DataFrame(records, index=pd.DatetimeIndex(index), columns=list(TSO_COLUMNS.values()), dtype=float)
    return frame.sort_index()


def fetch_hochrechnung(client: NetztransparenzClient, product: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Extrapolated actual Solar or Wind feed-in (MW) per TSO and quarter-hour in [start, end)."""
    if product not in ("Solar", "Wind"):
        raise ValueError(f"product must be 'Solar' or 'Wind', not {product!r}")
    fmt = "%Y-%m-%dT%H:%M:%S"
    path = (
        f"/api/v1/data/hochrechnung/{product}/{start.astimezone(UTC).strftime(fmt)}/{end.astimezone(UTC).strftime(fmt)}"
    )
    raw = client.get_csv(path)
    try:
        frame = parse_tso_csv(raw)
    except PayloadError as exc:
        exc.request = describe(client.endpoint, path, None)
        raise
    return frame[(frame.index >= pd.Timestamp(start)) & (frame.index < pd.Timestamp(end))]
