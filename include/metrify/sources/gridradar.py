"""Grid frequency of the Continental Europe synchronous area from gridradar.net's query API.

Documentation followed: gridradar's API page (https://gridradar.net/en/api) and public clients
of it: `GET /query` (or POST with the same fields as JSON) with `Authorization: Bearer <token>`,
`metric=frequency-ucte-median-1s` (the median over gridradar's measuring points, 1 s), `from` /
`to` as RFC 3339 UTC, `aggr=1m` (one value per minute), `format=json`, `ts=rfc3339`. The answer
is a list of Grafana-style targets: `[{"target": "...", "datapoints": [[hz, "timestamp"], ...]}]`.

Germany's four control areas are one synchronous grid, so one frequency applies to all of them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd

from metrify.sources import NoDataError, PayloadError
from metrify.sources.http import HttpClient, describe

SOURCE = "gridradar"
QUERY_PATH = "/query"
METRIC = "frequency-ucte-median-1s"


def rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_frequency(raw: bytes | str) -> pd.Series:
    """Datapoints of the first target as a Series of Hz indexed by UTC timestamp."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(SOURCE, f"response is not JSON ({exc})", raw) from None
    if not isinstance(payload, list) or not payload or not isinstance(payload[0], dict):
        raise PayloadError(SOURCE, "expected a non-empty JSON list of targets", raw)
    points = payload[0].get("datapoints")
    if not isinstance(points, list):
        raise PayloadError(SOURCE, "target has no 'datapoints' list", raw)
    values, stamps = [], []
    for point in points:
        try:
            hz, ts = point
            values.append(float(hz))
            stamps.append(pd.Timestamp(ts))
        except (TypeError, ValueError):
            raise PayloadError(SOURCE, f"datapoint {point!r} is not [hz, timestamp]", raw) from None
    index = pd.DatetimeIndex(stamps)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return pd.Series(values, index=index, dtype=float).sort_index()


def fetch_frequency(client: HttpClient, start: datetime, end: datetime) -> pd.Series:
    """Mean frequency (Hz) per quarter-hour starting in [start, end), from 1-minute medians."""
    params = {
        "metric": METRIC,
        "from": rfc3339(start),
        "to": rfc3339(end),
        "aggr": "1m",
        "format": "json",
        "ts": "rfc3339",
    }
    headers = {"Authorization": f"Bearer {client.endpoint.secret}"} if client.endpoint.secret else {}
    response = client.get(QUERY_PATH, params=params, headers=headers)
    try:
        minutes = parse_frequency(response.content)
    except PayloadError as exc:
        exc.request = describe(client.endpoint, QUERY_PATH, params)
        raise
    minutes = minutes[(minutes.index >= pd.Timestamp(start)) & (minutes.index < pd.Timestamp(end))]
    if minutes.empty:
        raise NoDataError(f"gridradar returned no frequency datapoints for {rfc3339(start)}..{rfc3339(end)}")
    return minutes.groupby(minutes.index.floor("15min")).mean()
