"""Local fake HTTP servers answering like the real grid and weather APIs (paths, query
parameters, auth, field names, units, error bodies), with values from `metrify_dev.fakes.models`.

    stack = start_fakes(seed=42, anchor=simulation_start)
    stack.connections   # {"entsoe_api": {"conn_type": "http", "host": ..., "password": ...}, ...}
    stack["entsoe"].inject("5xx", times=2)       # fault injection for tests
    stack.stop()

Each server runs a stdlib `ThreadingHTTPServer` on a loopback port in a daemon thread. Keys are
random per start (never in code); the connections carry them exactly as production ones do.

Faults (`FakeServer.inject(kind, times=1, match=None, ...)`, `match` = substring of the request
path+query, e.g. an EIC code or a latitude): `5xx` (HTTP 503), `429` (with `Retry-After`),
`401`, `timeout` (answer only after `delay` s), `malformed` (a truncated or schema-drifted body
in the API's own format), `down` (503 forever unless `times` is given), `late` (the newest
`minutes` of data are not published yet: ENTSO-E, gridradar and Bright Sky answer as their real
counterparts do for data that does not exist yet, OpenWeatherMap's history with an empty `data`
list; the data appears after `delay` s, or when the fault is cleared).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd

from metrify.contracts.geography import CITIES
from metrify.sources.weather_forecast import latest_run
from metrify_dev.fakes import models
from metrify_dev.processes import read_published, spawn_until_published, terminate

log = logging.getLogger(__name__)

Response = tuple[int, dict[str, str], bytes]
GL_NS = "urn:iec62325.351:tc57wg16:451-6:generationloaddocument:3:0"
ACK_NS = "urn:iec62325.351:tc57wg16:451-1:acknowledgementdocument:7:0"
EIC_TO_OPERATOR = {
    "10YDE-EON------1": "TenneT",
    "10YDE-VE-------2": "50Hertz",
    "10YDE-RWENET---I": "Amprion",
    "10YDE-ENBW-----N": "TransnetBW",
}
FAULTS = frozenset({"5xx", "429", "401", "timeout", "malformed", "down", "late"})
CONNECTION_IDS = {
    "entsoe": "entsoe_api",
    "gridradar": "gridradar_api",
    "brightsky": "brightsky_api",
    "openweathermap": "openweathermap_api",
    "netztransparenz": "netztransparenz_api",
}


@dataclass
class Fault:
    kind: str
    times: int | None = 1  # None: until cleared
    match: str | None = None
    retry_after: int = 1
    delay: float = 2.0
    minutes: float = 0.0  # `late`: how much of the newest data is not published yet
    until: float | None = None  # `late`: time.monotonic() at which it is published (None: when cleared)


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    fault: str | None = None
    lag: timedelta = timedelta(0)  # the newest data not published yet (`late` fault)


@dataclass
class World:
    """What the fakes model: simulator seed and frequency anchor (the simulation start)."""

    seed: int = 42
    anchor: datetime | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def _owm_main(row: pd.Series, converted: dict[str, Any]) -> dict[str, Any]:
    """OpenWeatherMap's `main` block, as its current-weather and forecast answers both carry it."""
    pressure = int(round(row["pressure_hpa"]))
    temp = converted["temp"]
    return {
        "temp": temp,
        "feels_like": temp,
        "temp_min": temp,
        "temp_max": temp,
        "pressure": pressure,
        "humidity": row["humidity_percent"],
        "sea_level": pressure,
        "grnd_level": pressure,
    }


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()


def _xml(status: int, text: str) -> Response:
    return status, {"Content-Type": "text/xml"}, text.encode()


class FakeApi:
    """Base of one API: route a request, and the API's own error and malformed bodies."""

    name = "api"

    def __init__(self, world: World, secret: str | None):
        self.world = world
        self.secret = secret

    def handle(self, req: Request) -> Response:  # pragma: no cover - overridden
        raise NotImplementedError

    def published_until(self, req: Request) -> pd.Timestamp:
        """The newest instant whose data this API has published (its clock, minus a `late` fault's lag)."""
        return pd.Timestamp(self.world.now() - req.lag)

    def unauthorized(self) -> Response:
        return _json(401, {"message": "Unauthorized"})

    def rate_limited(self, retry_after: int) -> Response:
        return _json(429, {"message": "Too Many Requests"}, {"Retry-After": str(retry_after)})

    def server_error(self) -> Response:
        return 503, {"Content-Type": "text/html"}, b"<html><body><h1>503 Service Unavailable</h1></body></html>"

    def malformed(self, req: Request) -> Response:
        status, headers, body = self.handle(req)
        return status, headers, body[: max(1, len(body) // 2)]  # truncated mid-document


class FakeServer:
    """One fake API on a loopback port, with a request log and fault switches."""

    def __init__(self, api: FakeApi):
        self.api = api
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # header and body are separate writes: avoid 40 ms ACK stalls

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(self.command, parts.path, params, dict(self.headers.items()), body)
                status, headers, payload = server._respond(req, parts.path + "?" + parts.query)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = _serve
            do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"fake-{api.name}", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def inject(
        self,
        kind: str,
        times: int | None = 1,
        match: str | None = None,
        retry_after: int = 1,
        delay: float | None = None,
        minutes: float = 60.0,
    ) -> None:
        """Switch a fault on. `late` holds back the newest `minutes` of data for `delay` seconds
        (None: until `clear()`), whatever `times` says; it combines with the other faults."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {sorted(FAULTS)}")
        if kind in ("down", "late") and times == 1:
            times = None
        fault = Fault(kind, times, match, retry_after, 2.0 if delay is None else delay)
        if kind == "late":
            fault.minutes = minutes
            fault.until = None if delay is None else time.monotonic() + delay
        with self._lock:
            self.faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.requests.clear()

    def _lag(self, target: str) -> timedelta:
        """How much of the newest data a `late` fault still holds back for this request."""
        with self._lock:
            now = time.monotonic()
            self.faults = [f for f in self.faults if f.kind != "late" or f.until is None or f.until > now]
            minutes = [f.minutes for f in self.faults if f.kind == "late" and (not f.match or f.match in target)]
        return timedelta(minutes=max(minutes, default=0.0))

    def _take_fault(self, target: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.kind == "late" or (fault.match and fault.match not in target):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def _respond(self, req: Request, target: str) -> Response:
        req.lag = self._lag(target)
        fault = self._take_fault(target)
        req.fault = fault.kind if fault else None
        with self._lock:
            self.requests.append(req)
        try:
            if fault is None:
                return self.api.handle(req)
            if fault.kind in ("5xx", "down"):
                return self.api.server_error()
            if fault.kind == "429":
                return self.api.rate_limited(fault.retry_after)
            if fault.kind == "401":
                return self.api.unauthorized()
            if fault.kind == "timeout":
                time.sleep(fault.delay)
                return self.api.handle(req)
            return self.api.malformed(req)
        except Exception as exc:  # a bug in a fake must not hang the client
            log.exception("fake %s failed", self.api.name)
            return 500, {"Content-Type": "text/plain"}, f"fake error: {exc}".encode()


# --- ENTSO-E Transparency Platform -------------------------------------------------------------


def _entsoe_time(text: str) -> pd.Timestamp:
    return pd.Timestamp(datetime.strptime(text, "%Y%m%d%H%M").replace(tzinfo=UTC))


def _iso_min(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%MZ")


# An ENTSO-E time series: (production type or None, in/out, values by period start, resolution, end or None)
Series = tuple[str | None, str, dict[pd.Timestamp, float], str, pd.Timestamp | None]


class EntsoeApi(FakeApi):
    name = "entsoe"

    def unauthorized(self) -> Response:
        return 401, {"Content-Type": "text/html"}, b"<html><body><h1>Unauthorized</h1></body></html>"

    def rate_limited(self, retry_after: int) -> Response:
        return 429, {"Content-Type": "text/html", "Retry-After": str(retry_after)}, b"Too Many Requests"

    def _ack(self, status: int, text: str) -> Response:
        now = self.world.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        return _xml(
            status,
            f"""<?xml version="1.0" encoding="UTF-8"?>
<Acknowledgement_MarketDocument xmlns="{ACK_NS}">
  <mRID>{uuid.uuid4().hex[:16]}</mRID>
  <createdDateTime>{now}</createdDateTime>
  <sender_MarketParticipant.mRID codingScheme="A01">10X1001A1001A450</sender_MarketParticipant.mRID>
  <sender_MarketParticipant.marketRole.type>A32</sender_MarketParticipant.marketRole.type>
  <receiver_MarketParticipant.mRID codingScheme="A01">10X1001A1001A450</receiver_MarketParticipant.mRID>
  <receiver_MarketParticipant.marketRole.type>A39</receiver_MarketParticipant.marketRole.type>
  <received_MarketDocument.createdDateTime>{now}</received_MarketDocument.createdDateTime>
  <Reason>
    <code>999</code>
    <text>{text}</text>
  </Reason>
</Acknowledgement_MarketDocument>""",
        )

    def handle(self, req: Request) -> Response:
        p = req.params
        if req.path != "/api":
            return 404, {"Content-Type": "text/html"}, b"<html><body>Not Found</body></html>"
        if not self.secret or p.get("securityToken") != self.secret:
            return self.unauthorized()
        doc = p.get("documentType", "")
        eic = p.get("outBiddingZone_Domain") if doc == "A65" else p.get("in_Domain")
        if doc not in ("A65", "A75", "A68") or not eic or "periodStart" not in p or "periodEnd" not in p:
            return self._ack(
                400,
                "Some of mandatory parameters are missing or invalid (documentType, domain, periodStart, periodEnd).",
            )
        if eic not in EIC_TO_OPERATOR:
            return self._ack(
                400,
                f"No matching data found for Data item (domain {eic}) and interval "
                f"{p['periodStart']}-{p['periodEnd']}.",
            )
        try:
            start, end = _entsoe_time(p["periodStart"]), _entsoe_time(p["periodEnd"])
        except ValueError:
            return self._ack(400, "periodStart/periodEnd must be yyyyMMddHHmm")
        operator = EIC_TO_OPERATOR[eic]
        now = self.published_until(req).floor("15min")
        series: list[Series] = []
        if doc == "A68":
            series = [(psr, "in", {start: float(mw)}, "P1Y", end) for psr, mw in models.INSTALLED_MW[operator].items()]
            return _xml(200, self._gl(doc, "A33", eic, start, end, series))
        starts = models.quarter_starts(start, min(end, now))
        if len(starts) == 0:
            return self._ack(
                400,
                f"No matching data found for Data item ACTUAL_TOTAL_LOAD [6.1.A] ({eic}) and "
                f"interval {_iso_min(start)}/{_iso_min(end)}.",
            )
        if doc == "A65":
            values = models.load_mw(operator, starts, self.world.seed)
            series = [(None, "out", dict(zip(starts, values, strict=True)), "PT15M", None)]
        else:
            gen = models.generation_mw(operator, starts, self.world.seed)
            series = [(psr, "in", dict(zip(starts, v, strict=True)), "PT15M", None) for psr, v in sorted(gen.items())]
            if "B10" in gen:  # pumped-storage pumping is a consumption series (outBiddingZone)
                series.append(("B10", "out", dict(zip(starts, [0.0] * len(starts), strict=True)), "PT15M", None))
        return _xml(200, self._gl(doc, "A16", eic, start, end, series))

    def _gl(
        self,
        doc: str,
        process: str,
        eic: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        series: list[Series],
    ) -> str:
        now = self.world.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        parts = [
            f"""<?xml version="1.0" encoding="UTF-8"?>
<GL_MarketDocument xmlns="{GL_NS}">
  <mRID>{uuid.uuid4().hex[:32]}</mRID>
  <revisionNumber>1</revisionNumber>
  <type>{doc}</type>
  <process.processType>{process}</process.processType>
  <sender_MarketParticipant.mRID codingScheme="A01">10X1001A1001A450</sender_MarketParticipant.mRID>
  <sender_MarketParticipant.marketRole.type>A32</sender_MarketParticipant.marketRole.type>
  <receiver_MarketParticipant.mRID codingScheme="A01">10X1001A1001A450</receiver_MarketParticipant.mRID>
  <receiver_MarketParticipant.marketRole.type>A33</receiver_MarketParticipant.marketRole.type>
  <createdDateTime>{now}</createdDateTime>
  <time_Period.timeInterval>
    <start>{_iso_min(start)}</start>
    <end>{_iso_min(end)}</end>
  </time_Period.timeInterval>"""
        ]
        for n, (psr, direction, values, resolution, period_end) in enumerate(series, 1):
            stamps = sorted(values)
            domain = "inBiddingZone_Domain.mRID" if direction == "in" else "outBiddingZone_Domain.mRID"
            business = "A04" if direction == "out" else ("A37" if doc == "A68" else "A01")
            psr_xml = f"\n    <MktPSRType>\n      <psrType>{psr}</psrType>\n    </MktPSRType>" if psr else ""
            p_end = period_end if period_end is not None else stamps[-1] + pd.Timedelta(minutes=15)
            points = "".join(
                f"\n      <Point>\n        <position>{i}</position>\n        <quantity>{values[t]:g}"
                f"</quantity>\n      </Point>"
                for i, t in enumerate(stamps, 1)
            )
            parts.append(f"""
  <TimeSeries>
    <mRID>{n}</mRID>
    <businessType>{business}</businessType>
    <objectAggregation>A08</objectAggregation>
    <{domain} codingScheme="A01">{eic}</{domain}>
    <quantity_Measure_Unit.name>MAW</quantity_Measure_Unit.name>
    <curveType>A01</curveType>{psr_xml}
    <Period>
      <timeInterval>
        <start>{_iso_min(stamps[0])}</start>
        <end>{_iso_min(p_end)}</end>
      </timeInterval>
      <resolution>{resolution}</resolution>{points}
    </Period>
  </TimeSeries>""")
        parts.append("\n</GL_MarketDocument>\n")
        return "".join(parts)


# --- gridradar ---------------------------------------------------------------------------------


class GridradarApi(FakeApi):
    name = "gridradar"

    def handle(self, req: Request) -> Response:
        if req.path != "/query":
            return _json(404, {"message": "Not Found"})
        if not self.secret or req.headers.get("Authorization") != f"Bearer {self.secret}":
            return self.unauthorized()
        params = dict(req.params)
        if req.method == "POST" and req.body:
            try:
                params.update({k: str(v) for k, v in json.loads(req.body).items()})
            except ValueError:
                return _json(400, {"message": "request body is not JSON"})
        if params.get("metric") != "frequency-ucte-median-1s":
            return _json(400, {"message": f"unknown metric {params.get('metric')!r}"})
        now = self.published_until(req)
        end = min(pd.Timestamp(params.get("to") or now), now).tz_convert("UTC")
        start = pd.Timestamp(params.get("from") or (end - pd.Timedelta(hours=1))).tz_convert("UTC")
        minutes = pd.date_range(start.ceil("min"), end, freq="min", inclusive="left")
        quarters = minutes.floor("15min")
        unique = quarters.unique()
        hz = dict(zip(unique, models.frequency_hz(unique, self.world.seed, self.world.anchor), strict=True))
        rfc = params.get("ts") == "rfc3339"
        points = [
            [hz[q], m.strftime("%Y-%m-%dT%H:%M:%SZ") if rfc else m.strftime("%Y-%m-%d %H:%M:%S")]
            for m, q in zip(minutes, quarters, strict=True)
        ]
        return _json(200, [{"target": "frequency-ucte-median-1s", "datapoints": points}])

    def malformed(self, req: Request) -> Response:
        return _json(200, [{"target": "frequency-ucte-median-1s", "values": "schema changed"}])


# --- Bright Sky (DWD) --------------------------------------------------------------------------


def nearest_city(lat: float, lon: float) -> tuple[int, Any]:
    return min(enumerate(CITIES), key=lambda ic: (ic[1].lat - lat) ** 2 + (ic[1].lon - lon) ** 2)


class BrightSkyApi(FakeApi):
    name = "brightsky"

    def unauthorized(self) -> Response:
        return _json(401, {"title": "401 Unauthorized", "description": "Unauthorized"})

    def rate_limited(self, retry_after: int) -> Response:
        return _json(
            429,
            {"title": "429 Too Many Requests", "description": "Too many requests"},
            {"Retry-After": str(retry_after)},
        )

    def handle(self, req: Request) -> Response:
        p = req.params
        if req.path != "/weather":
            return _json(404, {"title": "404 Not Found", "description": "The requested resource could not be found"})
        if "lat" not in p or "lon" not in p:
            return _json(
                400,
                {
                    "title": "400 Bad Request",
                    "description": "Please supply lat/lon or dwd_station_id or wmo_station_id or source_id",
                },
            )
        if "date" not in p:
            return _json(400, {"title": "400 Bad Request", "description": "Please supply date"})
        try:
            lat, lon = float(p["lat"]), float(p["lon"])
            start = pd.Timestamp(p["date"])
            start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
            last = pd.Timestamp(p["last_date"]) if p.get("last_date") else start + pd.Timedelta(days=1)
            last = last.tz_localize("UTC") if last.tzinfo is None else last.tz_convert("UTC")
        except ValueError as exc:
            return _json(400, {"title": "400 Bad Request", "description": str(exc)})
        index, city = nearest_city(lat, lon)
        distance = ((city.lat - lat) ** 2 + (city.lon - lon) ** 2) ** 0.5 * 111_000
        if distance > float(p.get("max_dist", 50000)):
            return _json(404, {"title": "404 Not Found", "description": "No sources match your criteria"})
        requested = pd.date_range(start.ceil("h"), last, freq="h")
        now = self.published_until(req)
        hours = requested[requested <= now]  # nothing published yet: an empty `weather` list, as Bright Sky answers
        # future hours: the newest MOSMIX run's forecast, from a `forecast` source (MOSMIX station)
        clock = pd.Timestamp(self.world.now()).tz_convert("UTC")
        ahead = requested[requested > clock]
        issued = latest_run(clock.to_pydatetime())
        ahead = ahead[ahead < pd.Timestamp(issued) + pd.Timedelta(hours=models.FORECAST_RUN_HOURS)]
        w = models.weather(hours, city.lat, self.world.seed) if len(hours) else pd.DataFrame()
        si = p.get("units", "dwd") == "si"
        source_id = 10000 + index
        records = [
            _brightsky_record(
                ts,
                row,
                source_id,
                si,
                sunshine=0.0,
                relative_humidity=int(round(row["humidity_percent"])),
                visibility=int(row["visibility_m"]),
                precipitation_probability=None,
            )
            for ts, row in w.iterrows()
        ]
        sources = [
            {
                "id": source_id,
                "dwd_station_id": f"{index + 1:05d}",
                "observation_type": "historical",
                "lat": city.lat,
                "lon": city.lon,
                "height": 50.0,
                "station_name": city.name.upper(),
                "wmo_station_id": f"{10000 + index}",
                "first_record": "2010-01-01T00:00:00+00:00",
                "last_record": now.strftime("%Y-%m-%dT%H:00:00+00:00"),
                "distance": round(distance, 0),
            }
        ]
        if len(ahead):
            f = models.forecast(ahead, city.lat, self.world.seed, issued)
            mosmix_id = 20000 + index
            records += [
                _brightsky_record(
                    ts,
                    row,
                    mosmix_id,
                    si,
                    sunshine=None,
                    relative_humidity=row["humidity_percent"],
                    visibility=None,
                    precipitation_probability=10,
                )
                for ts, row in f.iterrows()
            ]
            sources.append(
                {
                    "id": mosmix_id,
                    "dwd_station_id": f"{index + 1:05d}",
                    "observation_type": "forecast",
                    "lat": city.lat,
                    "lon": city.lon,
                    "height": 50.0,
                    "station_name": city.name.upper(),
                    "wmo_station_id": f"{10000 + index}",
                    "first_record": pd.Timestamp(issued).isoformat(),
                    "last_record": ahead[-1].isoformat(),
                    "distance": round(distance, 0),
                }
            )
        return _json(200, {"weather": records, "sources": sources})

    def malformed(self, req: Request) -> Response:
        status, headers, body = self.handle(req)
        payload = json.loads(body)
        for record in payload.get("weather", []):  # schema drift: a field renamed
            record["temp"] = record.pop("temperature", None)
        return status, headers, json.dumps(payload).encode()


# --- OpenWeatherMap ----------------------------------------------------------------------------


class OpenWeatherMapApi(FakeApi):
    name = "openweathermap"

    def unauthorized(self) -> Response:
        return _json(
            401,
            {
                "cod": 401,
                "message": "Invalid API key. Please see https://openweathermap.org/faq#error401 for more info.",
            },
        )

    def rate_limited(self, retry_after: int) -> Response:
        return _json(
            429,
            {
                "cod": 429,
                "message": "Your account is temporary blocked due to exceeding of requests "
                "limitation of your subscription type. Please choose the proper "
                "subscription https://openweathermap.org/price",
            },
            {"Retry-After": str(retry_after)},
        )

    def _convert(self, row: pd.Series, units: str) -> dict[str, float]:
        t = float(row["temperature_celsius"])
        temp = {"metric": t, "imperial": t * 9 / 5 + 32}.get(units, t + 273.15)
        wind = float(row["wind_speed_ms"]) * (2.23694 if units == "imperial" else 1.0)
        return {"temp": round(temp, 2), "wind": round(wind, 2)}

    def handle(self, req: Request) -> Response:
        p = req.params
        if req.path not in ("/data/2.5/weather", "/data/3.0/onecall/timemachine", "/data/2.5/forecast"):
            return _json(404, {"cod": "404", "message": "Internal error"})
        if not self.secret or p.get("appid") != self.secret:
            return self.unauthorized()
        try:
            lat, lon = float(p["lat"]), float(p["lon"])
        except (KeyError, ValueError):
            return _json(400, {"cod": "400", "message": "wrong latitude"})
        if not (-90 <= lat <= 90):
            return _json(400, {"cod": "400", "message": "wrong latitude"})
        units = p.get("units", "standard")
        index, city = nearest_city(lat, lon)
        if req.path == "/data/2.5/forecast":
            return _json(200, self._forecast(lat, lon, index, city, units))
        if req.path == "/data/2.5/weather":
            when = pd.Timestamp(self.world.now()).floor("min")
        else:
            try:
                when = pd.Timestamp(int(p["dt"]), unit="s", tz="UTC")
            except (KeyError, ValueError):
                return _json(400, {"cod": "400", "message": "dt is required"})
            if when > self.published_until(req):  # no observation for that time (yet)
                return _json(
                    200, {"lat": lat, "lon": lon, "timezone": "Europe/Berlin", "timezone_offset": 3600, "data": []}
                )
        row = models.weather(pd.DatetimeIndex([when]), city.lat, self.world.seed).iloc[0]
        c = self._convert(row, units)
        dt = int(when.timestamp())
        if req.path == "/data/2.5/weather":
            return _json(
                200,
                {
                    "coord": {"lon": lon, "lat": lat},
                    "weather": [{"id": 803, "main": "Clouds", "description": "broken clouds", "icon": "04d"}],
                    "base": "stations",
                    "main": {**_owm_main(row, c), "humidity": int(round(row["humidity_percent"]))},
                    "visibility": int(min(10000, row["visibility_m"])),
                    "wind": {"speed": c["wind"], "deg": int(row["wind_direction_degrees"])},
                    "clouds": {"all": int(row["cloud_cover_percent"])},
                    "dt": dt,
                    "sys": {
                        "type": 2,
                        "id": 2000000 + index,
                        "country": "DE",
                        "sunrise": dt - 6 * 3600,
                        "sunset": dt + 4 * 3600,
                    },
                    "timezone": 3600,
                    "id": 2800000 + index,
                    "name": city.name,
                    "cod": 200,
                },
            )
        return _json(
            200,
            {
                "lat": lat,
                "lon": lon,
                "timezone": "Europe/Berlin",
                "timezone_offset": 3600,
                "data": [
                    {
                        "dt": dt,
                        "sunrise": dt - 6 * 3600,
                        "sunset": dt + 4 * 3600,
                        "temp": c["temp"],
                        "feels_like": c["temp"],
                        "pressure": int(round(row["pressure_hpa"])),
                        "humidity": int(round(row["humidity_percent"])),
                        "dew_point": None,
                        "uvi": 0.0,
                        "clouds": int(row["cloud_cover_percent"]),
                        "visibility": int(min(10000, row["visibility_m"])),
                        "wind_speed": c["wind"],
                        "wind_deg": int(row["wind_direction_degrees"]),
                        "weather": [{"id": 803, "main": "Clouds", "description": "broken clouds", "icon": "04d"}],
                    }
                ],
            },
        )

    def _forecast(self, lat: float, lon: float, index: int, city: Any, units: str) -> dict[str, Any]:
        """`/data/2.5/forecast`: 40 steps of 3 h from the next step on, from the newest run."""
        clock = pd.Timestamp(self.world.now()).tz_convert("UTC")
        issued = latest_run(clock.to_pydatetime())
        steps = pd.date_range(clock.floor("3h") + pd.Timedelta(hours=3), periods=40, freq="3h")
        f = models.forecast(steps, city.lat, self.world.seed, issued)
        items = []
        for ts, row in f.iterrows():
            c = self._convert(row, units)
            items.append(
                {
                    "dt": int(ts.timestamp()),
                    "main": {**_owm_main(row, c), "temp_kf": 0},
                    "weather": [{"id": 803, "main": "Clouds", "description": "broken clouds", "icon": "04d"}],
                    "clouds": {"all": int(row["cloud_cover_percent"])},
                    "wind": {"speed": c["wind"], "deg": int(row["wind_direction_degrees"]), "gust": c["wind"]},
                    "visibility": 10000,
                    "pop": 0.1,
                    "sys": {"pod": "d" if 6 <= ts.hour < 18 else "n"},
                    "dt_txt": ts.strftime("%Y-%m-%d %H:%M:%S"),
                }
            )
        return {
            "cod": "200",
            "message": 0,
            "cnt": len(items),
            "list": items,
            "city": {
                "id": 2800000 + index,
                "name": city.name,
                "coord": {"lat": lat, "lon": lon},
                "country": "DE",
                "population": city.population,
                "timezone": 3600,
                "sunrise": int(clock.normalize().timestamp()) + 7 * 3600,
                "sunset": int(clock.normalize().timestamp()) + 16 * 3600,
            },
        }

    def malformed(self, req: Request) -> Response:
        status, headers, body = self.handle(req)
        payload = json.loads(body)
        if payload.get("list"):  # schema drift: the forecast's temperature moved
            payload["list"][0]["main"].pop("temp", None)
        elif "main" in payload:  # schema drift: temperature moved and retyped
            payload["main"]["temp"] = str(payload["main"]["temp"])
        elif payload.get("data"):
            payload["data"][0].pop("temp", None)
        return status, headers, json.dumps(payload).encode()


# --- netztransparenz.de ------------------------------------------------------------------------


class NetztransparenzApi(FakeApi):
    """Token endpoint (`/users/connect/token`) and per-TSO CSV data (`/api/v1/data/hochrechnung/...`)."""

    name = "netztransparenz"
    client_id = "metrify-embedded"
    HEADER = "Datum;von;Zeitzone von;bis;Zeitzone bis;50Hertz (MW);Amprion (MW);TenneT TSO (MW);TransnetBW (MW)"

    def __init__(self, world: World, secret: str | None):
        super().__init__(world, secret)
        self.tokens: set[str] = set()

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def handle(self, req: Request) -> Response:
        if req.path == "/users/connect/token":
            form = {k: v[-1] for k, v in parse_qs(req.body.decode()).items()}
            if form.get("grant_type") != "client_credentials":
                return _json(400, {"error": "unsupported_grant_type"})
            if form.get("client_id") != self.client_id or form.get("client_secret") != self.secret:
                return _json(400, {"error": "invalid_client"})
            token = secrets.token_urlsafe(32)
            self.tokens.add(token)
            return _json(
                200,
                {
                    "access_token": token,
                    "expires_in": 3600,
                    "token_type": "Bearer",
                    "scope": "ntpStatistic.read_all_public",
                },
            )
        auth = req.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.tokens:
            return 401, {"Content-Type": "text/plain", "WWW-Authenticate": 'Bearer error="invalid_token"'}, b""
        parts = req.path.strip("/").split("/")
        if len(parts) != 7 or parts[:4] != ["api", "v1", "data", "hochrechnung"] or parts[4] not in ("Solar", "Wind"):
            return 404, {"Content-Type": "text/plain"}, b"Not Found"
        try:
            start = pd.Timestamp(parts[5], tz="UTC")
            end = pd.Timestamp(parts[6], tz="UTC")
        except ValueError:
            return 400, {"Content-Type": "text/plain"}, b"invalid date"
        starts = models.quarter_starts(start, min(end, self.published_until(req)))
        lines = [self.HEADER]
        columns = {}
        for op in ("50Hertz", "Amprion", "TenneT", "TransnetBW"):
            gen = models.generation_mw(op, starts, self.world.seed)
            keys = ("B16",) if parts[4] == "Solar" else ("B18", "B19")
            columns[op] = sum((gen[k] for k in keys if k in gen), start=0 * starts.asi8.astype(float))
        for i, ts in enumerate(starts):
            stop = ts + pd.Timedelta(minutes=15)
            values = ";".join(f"{columns[op][i]:.3f}".replace(".", ",") for op in columns)
            lines.append(f"{ts:%Y-%m-%d};{ts:%H:%M};UTC;{stop:%H:%M};UTC;{values}")
        return 200, {"Content-Type": "text/csv; charset=utf-8"}, ("\n".join(lines) + "\n").encode()

    def malformed(self, req: Request) -> Response:
        status, headers, body = self.handle(req)
        return status, headers, body.replace(b"TenneT TSO (MW)", b"TenneT (MWh)")


# --- the stack ---------------------------------------------------------------------------------


class FakeStack:
    """All fake APIs, started together; `connections` points Airflow at them."""

    def __init__(self, servers: dict[str, FakeServer], client_extra: dict[str, Any]):
        self.servers = servers
        self.client_extra = client_extra

    def __getitem__(self, name: str) -> FakeServer:
        return self.servers[name]

    @property
    def connections(self) -> dict[str, dict[str, Any]]:
        conns: dict[str, dict[str, Any]] = {}
        for name, server in self.servers.items():
            extra = dict(self.client_extra)
            if name == "openweathermap":
                extra["history"] = "timemachine"
            if name == "netztransparenz":
                extra["token_url"] = f"{server.url}/users/connect/token"
            conn: dict[str, Any] = {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": server.port,
                "schema": "http",
                "extra": extra,
            }
            if server.api.secret:
                conn["password"] = server.api.secret
            if isinstance(server.api, NetztransparenzApi):
                conn["login"] = server.api.client_id
            conns[CONNECTION_IDS[name]] = conn
        return conns

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()

    def __enter__(self) -> FakeStack:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_fakes(
    seed: int = 42,
    anchor: datetime | None = None,
    client_extra: dict[str, Any] | None = None,
    now: Callable[[], datetime] | None = None,
) -> FakeStack:
    """Start the four fake APIs on loopback ports with fresh random keys.

    `anchor` should be the simulation start so that frequency matches the meters'; `client_extra`
    goes into every connection's extra (e.g. short timeouts and backoff for tests); `now` fixes
    the fakes' clock (data after `now` does not exist yet).
    """
    world = World(seed=seed, anchor=anchor, **({"now": now} if now else {}))
    apis = [
        EntsoeApi(world, secrets.token_hex(18)),
        GridradarApi(world, secrets.token_urlsafe(24)),
        BrightSkyApi(world, None),
        OpenWeatherMapApi(world, secrets.token_hex(16)),
        NetztransparenzApi(world, secrets.token_urlsafe(24)),
    ]
    servers = {api.name: FakeServer(api).start() for api in apis}
    extra = {"timeout": 10, "connect_timeout": 3, "attempts": 4, "backoff_base": 0.5, "backoff_max": 10}
    extra.update(client_extra or {})
    return FakeStack(servers, extra)


# --- a long-lived process for `airflow standalone` / `make up` ---------------------------------

STATE_FILE = "fakes.json"


def state_file(home: Path) -> Path:
    return home / "fakes" / STATE_FILE


def read_fakes(home: Path) -> dict[str, Any] | None:
    """The running fake-API process's {pid, connections}, or None if none is running."""
    return read_published(state_file(home))


def serve(home: Path, seed: int = 42, anchor: datetime | None = None) -> None:
    """Run the fakes in this process until SIGTERM/SIGINT, publishing their connections in
    `<home>/fakes/fakes.json` (mode 0600: it holds the embedded, random keys)."""
    stack = start_fakes(seed=seed, anchor=anchor)
    path = state_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {
                "pid": os.getpid(),
                "seed": seed,
                "anchor": anchor.isoformat() if anchor else None,
                "connections": stack.connections,
            },
            handle,
        )
    os.replace(tmp, path)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    while not stopping.wait(0.5):
        pass
    stack.stop()
    path.unlink(missing_ok=True)


def up(home: Path, seed: int = 42, anchor: datetime | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Start `python -m metrify_dev.fakes serve` in the background (idempotent); return its state."""
    running = read_fakes(home)
    if running:
        return running
    state_file(home).parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "metrify_dev.fakes", "serve", "--home", str(home), "--seed", str(seed)]
    if anchor:
        args += ["--anchor", anchor.isoformat()]
    return spawn_until_published(
        args, state_file(home).parent / "fakes.log", lambda: read_fakes(home), "fake APIs", timeout
    )


def down(home: Path, timeout: float = 10.0) -> bool:
    """Stop the background fakes; False if none was running."""
    info = read_fakes(home)
    if not info:
        return False
    terminate(info["pid"], timeout)
    state_file(home).unlink(missing_ok=True)
    return True


def _brightsky_record(ts: pd.Timestamp, row: pd.Series, source_id: int, si: bool, **fields: Any) -> dict[str, Any]:
    """One Bright Sky `/weather` record from a model row (SI or DWD units); `fields` are what
    observations and MOSMIX forecasts report differently."""
    temp = row["temperature_celsius"]
    return {
        "timestamp": ts.isoformat(),
        "source_id": source_id,
        "precipitation": 0.0,
        "pressure_msl": round(row["pressure_hpa"] * 100, 0) if si else row["pressure_hpa"],
        "sunshine": fields["sunshine"],
        "temperature": round(temp + 273.15, 2) if si else temp,
        "wind_direction": int(row["wind_direction_degrees"]),
        "wind_speed": row["wind_speed_ms"] if si else round(row["wind_speed_ms"] * 3.6, 1),
        "cloud_cover": int(row["cloud_cover_percent"]),
        "dew_point": None,
        "relative_humidity": fields["relative_humidity"],
        "visibility": fields["visibility"],
        "wind_gust_direction": None,
        "wind_gust_speed": None,
        "condition": "dry",
        "precipitation_probability": fields["precipitation_probability"],
        "precipitation_probability_6h": None,
        "solar": None,
        "icon": "cloudy" if row["cloud_cover_percent"] > 70 else "partly-cloudy-day",
    }
