"""ENTSO-E Transparency Platform RESTful API, per German control area (TSO).

Documentation followed: the Transparency Platform "RESTful API Implementation and User Guide"
(https://transparency.entsoe.eu/content/static_content/Static%20content/web%20api/Guide.html)
and the IEC 62325-451-6 generation/load document schema. One endpoint, `GET /api`, with
`securityToken` (the key, from the Airflow connection's password), `documentType`,
`processType`, a domain (EIC code) and `periodStart`/`periodEnd` as `yyyyMMddHHmm` in UTC.

Documents used:

* A65 + A16 (realised) with `outBiddingZone_Domain=<control area>`: actual total load [6.1.A],
  one `TimeSeries` with `Period`s of `Point(position, quantity)` in MW (`MAW`).
* A75 + A16 with `in_Domain=<control area>`: actual generation per production type [16.1.B&C],
  one `TimeSeries` per `MktPSRType/psrType` (B01 biomass … B20 other); series that carry
  `outBiddingZone_Domain.mRID` instead of `inBiddingZone_Domain.mRID` are consumption (e.g.
  pumped storage pumping) and are not counted as generation.
* A68 + A33 (year ahead) with `in_Domain=<control area>`: installed generation capacity per
  production type [14.1.A], one point per type for the year.

"No data" is an `Acknowledgement_MarketDocument` whose `Reason/text` starts "No matching data
found" (code 999; the platform sends it with HTTP 200 or 400; other acknowledgements are
errors); curve type A03 omits points that repeat the previous value, so gaps
inside a period are filled forward. Rate limit: 400 requests per minute per token (HTTP 429).
Every document takes a period, so a window of any length costs one request per document.

Publication: TSOs must publish actual total load "no later than one hour after the operating
period" (Regulation (EU) 543/2013, Art. 6(2)(a)), and actual generation per production type
has the same one-hour deadline (Art. 16); `PUBLICATION_DELAY` says so once.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from metrify.sources import NoDataError, PayloadError
from metrify.sources.http import ClientError, HttpClient, describe

SOURCE = "entsoe"
API_PATH = "/api"
GL_NAMESPACE_PREFIX = "urn:iec62325.351:tc57wg16:451-6:generationloaddocument:"
ACK_NAMESPACE_PREFIX = "urn:iec62325.351:tc57wg16:451-1:acknowledgementdocument:"

#: EIC codes of the four German control areas (TenneT DE, 50Hertz, Amprion, TransnetBW).
CONTROL_AREAS = {
    "TenneT": "10YDE-EON------1",
    "50Hertz": "10YDE-VE-------2",
    "Amprion": "10YDE-RWENET---I",
    "TransnetBW": "10YDE-ENBW-----N",
}

#: ENTSO-E production types (psrType) used in A75/A68 documents.
PSR_TYPES = {
    "B01": "Biomass",
    "B02": "Fossil Brown coal/Lignite",
    "B03": "Fossil Coal-derived gas",
    "B04": "Fossil Gas",
    "B05": "Fossil Hard coal",
    "B06": "Fossil Oil",
    "B07": "Fossil Oil shale",
    "B08": "Fossil Peat",
    "B09": "Geothermal",
    "B10": "Hydro Pumped Storage",
    "B11": "Hydro Run-of-river and poundage",
    "B12": "Hydro Water Reservoir",
    "B13": "Marine",
    "B14": "Nuclear",
    "B15": "Other renewable",
    "B16": "Solar",
    "B17": "Waste",
    "B18": "Wind Offshore",
    "B19": "Wind Onshore",
    "B20": "Other",
}
#: Renewable production types. Pumped storage (B10) only shifts energy and waste (B17) is mixed: neither counts.
RENEWABLE_PSR = frozenset({"B01", "B09", "B11", "B12", "B13", "B15", "B16", "B18", "B19"})
QUARTER = timedelta(minutes=15)
#: How long after a quarter-hour ends ENTSO-E may still lack its actual load and generation.
PUBLICATION_DELAY = timedelta(hours=1)
RESOLUTIONS = {
    "PT15M": timedelta(minutes=15),
    "PT30M": timedelta(minutes=30),
    "PT60M": timedelta(hours=1),
    "P1D": timedelta(days=1),
    "P1Y": None,
}


@dataclass
class Series:
    """One `TimeSeries`: its production type (if any), whether it is an in- (generation) or
    out-domain (consumption) series, and its values by interval start (UTC)."""

    psr_type: str | None
    direction: str  # "in" or "out"
    values: dict[datetime, float]
    step: timedelta = QUARTER


def period_param(ts: datetime) -> str:
    """`yyyyMMddHHmm` in UTC, as the API's periodStart/periodEnd want it."""
    return ts.astimezone(UTC).strftime("%Y%m%d%H%M")


def _parse_time(text: str | None, what: str, raw: bytes) -> datetime:
    if not text:
        raise PayloadError(SOURCE, f"missing {what}", raw)
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError(SOURCE, f"{what} {text!r} is not an ISO 8601 time", raw) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_document(raw: bytes, expected_type: str) -> list[Series]:
    """Parse a GL_MarketDocument; raise NoDataError for a 'no data' acknowledgement, PayloadError otherwise."""
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise PayloadError(SOURCE, f"response is not well-formed XML ({exc})", raw) from None
    namespace, _, local = root.tag[1:].partition("}") if root.tag.startswith("{") else ("", "", root.tag)
    ns = {"d": namespace} if namespace else {}
    find = (
        (lambda el, path: el.find("d:" + path.replace("/", "/d:"), ns))
        if namespace
        else (lambda el, path: el.find(path))
    )
    findall = (lambda el, path: el.findall("d:" + path, ns)) if namespace else (lambda el, path: el.findall(path))
    if local == "Acknowledgement_MarketDocument" and namespace.startswith(ACK_NAMESPACE_PREFIX):
        code = find(root, "Reason/code")
        text = find(root, "Reason/text")
        reason = (text.text or "").strip() if text is not None else ""
        if "No matching data found" in reason:
            raise NoDataError(f"ENTSO-E has no data: {reason}")
        raise PayloadError(
            SOURCE, f"acknowledgement with reason code {code.text if code is not None else '?'}: {reason}", raw
        )
    if local != "GL_MarketDocument" or not namespace.startswith(GL_NAMESPACE_PREFIX):
        raise PayloadError(
            SOURCE, f"unexpected root element {root.tag!r}, expected GL_MarketDocument in {GL_NAMESPACE_PREFIX}*", raw
        )
    doc_type = find(root, "type")
    if doc_type is None or (doc_type.text or "").strip() != expected_type:
        raise PayloadError(
            SOURCE, f"document type {doc_type.text if doc_type is not None else None!r}, expected {expected_type}", raw
        )
    series: list[Series] = []
    for ts in findall(root, "TimeSeries"):
        psr = find(ts, "MktPSRType/psrType")
        direction = "out" if find(ts, "outBiddingZone_Domain.mRID") is not None else "in"
        unit = find(ts, "quantity_Measure_Unit.name")
        if unit is not None and (unit.text or "").strip() != "MAW":
            raise PayloadError(SOURCE, f"quantity unit {unit.text!r}, expected MAW (MW)", raw)
        curve = find(ts, "curveType")
        values: dict[datetime, float] = {}
        step = QUARTER
        for period in findall(ts, "Period"):
            start = _parse_time(getattr(find(period, "timeInterval/start"), "text", None), "Period start", raw)
            end = _parse_time(getattr(find(period, "timeInterval/end"), "text", None), "Period end", raw)
            res_el = find(period, "resolution")
            res_text = (res_el.text or "").strip() if res_el is not None else ""
            if res_text not in RESOLUTIONS:
                raise PayloadError(SOURCE, f"unknown resolution {res_text!r}", raw)
            step = RESOLUTIONS[res_text] or (end - start)
            points: dict[int, float] = {}
            for point in findall(period, "Point"):
                pos, qty = find(point, "position"), find(point, "quantity")
                try:
                    points[int(pos.text)] = float(qty.text)
                except (AttributeError, TypeError, ValueError):
                    raise PayloadError(SOURCE, "a Point lacks a numeric position or quantity", raw) from None
            if not points:
                raise PayloadError(SOURCE, "a Period has no Point", raw)
            n_steps = max(1, round((end - start) / step))
            last = None
            for pos in range(1, n_steps + 1):
                if pos in points:
                    last = points[pos]
                elif curve is None or (curve.text or "").strip() != "A03" or last is None:
                    continue  # A01 curve: a missing position is a real gap
                values[start + (pos - 1) * step] = last
        series.append(Series(psr.text.strip() if psr is not None and psr.text else None, direction, values, step))
    if not series:
        raise PayloadError(SOURCE, "GL_MarketDocument without TimeSeries", raw)
    return series


def _to_quarters(values: dict[datetime, float], step: timedelta) -> dict[datetime, float]:
    """Spread hourly/half-hourly average power over its quarter-hours (MW stays MW)."""
    if step <= QUARTER:
        return values
    out: dict[datetime, float] = {}
    for start, value in values.items():
        for k in range(int(step / QUARTER)):
            out[start + k * QUARTER] = value
    return out


def _request(client: HttpClient, params: dict[str, str], expected_type: str) -> list[Series]:
    params = {"securityToken": client.endpoint.secret or "", **params}
    try:
        response = client.get(API_PATH, params=params)
    except ClientError as exc:
        # The platform answers 400 with an acknowledgement for "no matching data" and bad requests.
        if exc.body and "Acknowledgement_MarketDocument" in exc.body:
            if "No matching data found" in exc.body:
                raise NoDataError(f"ENTSO-E has no data for {describe(client.endpoint, API_PATH, params)}") from None
        raise
    try:
        return parse_document(response.content, expected_type)
    except PayloadError as exc:
        exc.request = describe(client.endpoint, API_PATH, params)
        raise


def fetch_actual_load(client: HttpClient, eic: str, start: datetime, end: datetime) -> pd.Series:
    """Actual total load (MW) of a control area per quarter-hour starting in [start, end)."""
    series = _request(
        client,
        {
            "documentType": "A65",
            "processType": "A16",
            "outBiddingZone_Domain": eic,
            "periodStart": period_param(start),
            "periodEnd": period_param(end),
        },
        "A65",
    )
    values: dict[datetime, float] = {}
    for s in series:
        values.update(_to_quarters(s.values, s.step))
    load = pd.Series(values, dtype=float).sort_index()
    load.index = pd.DatetimeIndex(load.index).tz_convert("UTC")
    return load[(load.index >= pd.Timestamp(start)) & (load.index < pd.Timestamp(end))]


def fetch_generation(client: HttpClient, eic: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Actual generation (MW) per production type: rows = quarter-hour starts, columns = psrType."""
    series = _request(
        client,
        {
            "documentType": "A75",
            "processType": "A16",
            "in_Domain": eic,
            "periodStart": period_param(start),
            "periodEnd": period_param(end),
        },
        "A75",
    )
    columns: dict[str, dict[datetime, float]] = {}
    for s in series:
        if s.direction != "in" or not s.psr_type:
            continue
        target = columns.setdefault(s.psr_type, {})
        for ts, v in _to_quarters(s.values, s.step).items():
            target[ts] = target.get(ts, 0.0) + v
    frame = pd.DataFrame(columns, dtype=float).sort_index()
    if frame.empty:
        raise NoDataError(f"ENTSO-E A75 for {eic} has no generation series")
    frame.index = pd.DatetimeIndex(frame.index).tz_convert("UTC")
    return frame[(frame.index >= pd.Timestamp(start)) & (frame.index < pd.Timestamp(end))]


def fetch_installed_capacity(client: HttpClient, eic: str, year: int) -> dict[str, float]:
    """Installed generation capacity (MW) per production type for a year (A68, year ahead)."""
    start = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    series = _request(
        client,
        {
            "documentType": "A68",
            "processType": "A33",
            "in_Domain": eic,
            "periodStart": period_param(start),
            "periodEnd": period_param(end),
        },
        "A68",
    )
    capacity: dict[str, float] = {}
    for s in series:
        if s.direction == "in" and s.psr_type and s.values:
            capacity[s.psr_type] = capacity.get(s.psr_type, 0.0) + max(s.values.values())
    if not capacity:
        raise NoDataError(f"ENTSO-E A68 for {eic} {year} has no capacity series")
    return capacity
