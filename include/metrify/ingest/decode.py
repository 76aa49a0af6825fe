"""Decoding Kafka message values into `meter_readings` rows, every bad message explained.

Decoding is vectorised with Arrow's JSON reader over the batch joined into lines. Where Arrow
stops at a bad message (bad JSON, a wrong type) it names the line; the lines before it are read
again, that message is explained on its own in Python, and reading resumes after it. A poison
message therefore costs at most one re-read of a few thousand lines, and never blocks or drops
its neighbours. The batch decodes exactly as each message would on its own (tested).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from metrify.contracts.readings import (
    BOUNDS,
    EARLIEST_READING,
    INTERVAL_SECONDS,
    MAX_CLOCK_SKEW_SECONDS,
    METER_ID_MAX_LEN,
    PAYLOAD_SCHEMA,
    REQUIRED,
)

_BISECT_MIN = 32
# Arrow reads reading_ts as text: casting it afterwards rejects a timestamp without a UTC offset
# (which Arrow's JSON reader would silently take for UTC), exactly as the per-message path does.
_PARSE_SCHEMA = PAYLOAD_SCHEMA.set(PAYLOAD_SCHEMA.get_field_index("reading_ts"), pa.field("reading_ts", pa.string()))
_PARSE_OPTIONS = pa_json.ParseOptions(
    explicit_schema=_PARSE_SCHEMA, unexpected_field_behavior="ignore", newlines_in_values=False
)


@dataclass
class Decoded:
    """Rows that passed the contract and messages that did not, by position in the input."""

    rows: pa.Table  # PAYLOAD_SCHEMA plus an int64 `_index` column: position in the input
    rejected: list[tuple[int, str]]  # (position in the input, reason)


def decode(values: Sequence[bytes | None], now: datetime | None = None) -> Decoded:
    """Decode and validate a batch of message values."""
    now = now or datetime.now(UTC)
    tables: list[pa.Table] = []
    rejected: list[tuple[int, str]] = []
    lines = _Lines.of(values)
    for position in lines.by_python:
        _explain_one(values, position, tables, rejected)
    for lo, hi in lines.spans():
        lines.parse(lo, hi, values, tables, rejected)
    rows = (
        pa.concat_tables(tables)
        if tables
        else PAYLOAD_SCHEMA.empty_table().append_column("_index", pa.array([], pa.int64()))
    )
    rows, invalid = _check_rows(rows, now)
    rejected.extend(invalid)
    return Decoded(rows=rows, rejected=rejected)


_ERROR_ROW = re.compile(r" in row (\d+)$")
_SPAN_LINES = 4096  # a poison message costs at most one re-parse of this many lines


@dataclass
class _Lines:
    """A batch as one newline-delimited buffer: message i is line i, at bytes starts[i]..starts[i+1]-1.

    Messages that Arrow cannot be trusted with (empty, not starting with "{", or holding a NUL
    byte, which ends Arrow's parse without saying where) are listed in `by_python` and decoded
    one by one; Arrow parses the spans of lines between them. A message spanning several lines
    (pretty-printed JSON) makes Arrow fail on its first line, which is then explained alone.
    """

    buffer: pa.Buffer
    starts: np.ndarray
    by_python: list[int]

    @classmethod
    def of(cls, values: Sequence[bytes | None]) -> _Lines:
        lines = [b"" if v is None else v for v in values] if None in values else values
        joined = b"\n".join(lines)  # type: ignore[arg-type]
        lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))  # type: ignore[arg-type]
        starts = np.zeros(len(lines) + 1, dtype=np.int64)
        np.cumsum(lengths + 1, out=starts[1:])
        # Every message Arrow sees starts with "{", so each yields at least one row or an error:
        # a span whose row count equals its message count has exactly one row per message.
        first_bytes = (
            np.frombuffer(joined, dtype=np.uint8)[np.minimum(starts[:-1], max(len(joined) - 1, 0))]
            if joined
            else np.zeros(len(lines), dtype=np.uint8)
        )
        special = set(np.flatnonzero((lengths == 0) | (first_bytes != ord("{"))).tolist())
        nul = joined.find(b"\0")
        while nul >= 0:
            line = int(np.searchsorted(starts, nul, side="right")) - 1
            special.add(line)
            nul = joined.find(b"\0", int(starts[line + 1]))
        return cls(pa.py_buffer(joined), starts, sorted(special))

    def spans(self) -> list[tuple[int, int]]:
        """[lo, hi) line ranges for Arrow: between the messages decoded in Python, at most
        `_SPAN_LINES` long."""
        out: list[tuple[int, int]] = []
        lo = 0
        for stop in [*self.by_python, len(self.starts) - 1]:
            out.extend((a, min(a + _SPAN_LINES, stop)) for a in range(lo, stop, _SPAN_LINES))
            lo = stop + 1
        return out

    def parse(
        self, lo: int, hi: int, values: Sequence[bytes | None], tables: list[pa.Table], rejected: list[tuple[int, str]]
    ) -> None:
        """Parse lines lo..hi with Arrow, isolating the messages it cannot read.

        Arrow names the line it stopped at ("... in row N"): the lines before it are parsed again,
        that one message is explained in Python, and parsing resumes after it. An error without a
        line number, or a row count that does not match (a whitespace-only message, which Arrow
        skips), falls back to bisection.
        """
        while lo < hi:
            if hi - lo <= _BISECT_MIN:
                for line in range(lo, hi):
                    _explain_one(values, line, tables, rejected)
                return
            first, size = int(self.starts[lo]), int(self.starts[hi] - self.starts[lo]) - 1
            try:
                table = pa_json.read_json(
                    pa.BufferReader(self.buffer.slice(first, size)),
                    read_options=pa_json.ReadOptions(block_size=size + 1, use_threads=False),
                    parse_options=_PARSE_OPTIONS,
                )
            except pa.ArrowInvalid as exc:
                match = _ERROR_ROW.search(str(exc))
                if match and int(match.group(1)) < hi - lo:
                    bad = lo + int(match.group(1))
                    self.parse(lo, bad, values, tables, rejected)
                    _explain_one(values, bad, tables, rejected)
                    lo = bad + 1
                    continue
                table = None
            if table is not None and table.num_rows == hi - lo:
                _append_typed(table, lo, values, tables, rejected)
                return
            middle = (lo + hi) // 2
            self.parse(lo, middle, values, tables, rejected)
            lo = middle


def _append_typed(
    table: pa.Table, lo: int, values: Sequence[bytes | None], tables: list[pa.Table], rejected: list[tuple[int, str]]
) -> None:
    """Append Arrow-parsed lines lo.. with reading_ts cast to a UTC timestamp; the (rare) lines
    whose reading_ts does not cast are explained one by one."""
    index = np.arange(lo, lo + table.num_rows, dtype=np.int64)
    column = table.schema.get_field_index("reading_ts")
    try:
        stamps = pc.cast(table.column(column), PAYLOAD_SCHEMA.field("reading_ts").type)
    except pa.ArrowInvalid:
        castable = []
        for text in table.column(column).to_pylist():
            try:
                pc.cast(pa.array([text]), PAYLOAD_SCHEMA.field("reading_ts").type)
                castable.append(True)
            except pa.ArrowInvalid:
                castable.append(False)
        mask = pa.array(castable)
        for line in index[~np.array(castable)]:
            _explain_one(values, int(line), tables, rejected)
        table, index = table.filter(mask), index[np.array(castable)]
        stamps = pc.cast(table.column(column), PAYLOAD_SCHEMA.field("reading_ts").type)
    tables.append(
        table.set_column(column, PAYLOAD_SCHEMA.field("reading_ts"), stamps).append_column("_index", pa.array(index))
    )


def _explain_one(
    values: Sequence[bytes | None], position: int, tables: list[pa.Table], rejected: list[tuple[int, str]]
) -> None:
    row, reason = _parse_one(values[position])
    if row is None:
        rejected.append((position, str(reason)))
    else:
        tables.append(row.append_column("_index", pa.array([position], pa.int64())))


def _parse_one(value: bytes | None) -> tuple[pa.Table | None, str | None]:
    """Decode one message in Python, explaining exactly what is wrong with it."""
    if value is None or value == b"":
        return None, "empty message (no value)"
    try:
        payload = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"not valid JSON: {exc}"
    if not isinstance(payload, dict):
        return None, f"not a JSON object: got {type(payload).__name__}"
    record: dict[str, object] = {}
    for field in PAYLOAD_SCHEMA:
        value_ = payload.get(field.name)
        if value_ is None:
            record[field.name] = None
        elif field.name == "meter_id":
            if not isinstance(value_, str):
                return None, f"wrong type: meter_id must be a string, got {type(value_).__name__}"
            record[field.name] = value_
        elif field.name == "reading_ts":
            if not isinstance(value_, str):
                return None, f"wrong type: reading_ts must be an ISO-8601 string, got {type(value_).__name__}"
            try:
                parsed = datetime.fromisoformat(value_)
            except ValueError:
                return None, f"wrong type: reading_ts {value_!r} is not an ISO-8601 timestamp"
            if parsed.tzinfo is None:
                return None, f"reading_ts {value_!r} has no UTC offset"
            record[field.name] = parsed.astimezone(UTC)
        else:
            if isinstance(value_, bool) or not isinstance(value_, (int, float)):
                return None, f"wrong type: {field.name} must be a number, got {type(value_).__name__} {value_!r}"
            if not math.isfinite(value_):
                return None, f"impossible value: {field.name}={value_} is not a finite number"
            record[field.name] = float(value_)
    return pa.Table.from_pylist([record], schema=PAYLOAD_SCHEMA), None


def _says(text: str) -> Callable[[dict[str, Any]], str]:
    return lambda row: text


def _out_of_bounds(name: str, low: float, high: float, unit: str) -> Callable[[dict[str, Any]], str]:
    def explain(row: dict[str, Any]) -> str:
        if not math.isfinite(row[name]):
            return f"impossible value: {name}={row[name]} is not a finite number"
        return f"impossible value: {name}={row[name]:g} outside {low:g}..{high:g} {unit}".rstrip()

    return explain


def _violations(rows: pa.Table, now: datetime) -> list[tuple[pa.ChunkedArray, Callable[[dict[str, Any]], str]]]:
    """(mask, explain) per contract rule, in order; `explain(row)` words the failure for one row."""
    rules: list[tuple[pa.ChunkedArray, Callable[[dict[str, Any]], str]]] = []
    for name in REQUIRED:
        rules.append((pc.is_null(rows[name]), _says(f"missing required field: {name}")))
    meter_id = rows["meter_id"]
    rules.append(
        (pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(meter_id)), 0), lambda row: "impossible value: empty meter_id")
    )
    rules.append(
        (
            pc.greater(pc.utf8_length(meter_id), METER_ID_MAX_LEN),
            lambda row: f"impossible value: meter_id longer than {METER_ID_MAX_LEN} characters",
        )
    )
    for name, (low, high, unit) in BOUNDS.items():
        column = rows[name]
        mask = pc.or_(pc.or_(pc.less(column, low), pc.greater(column, high)), pc.is_nan(column))
        rules.append(
            (
                mask,
                _out_of_bounds(name, low, high, unit),
            )
        )
    epoch_us = pc.cast(rows["reading_ts"], pa.int64())
    rules.append(
        (
            pc.not_equal(pc.remainder(epoch_us, INTERVAL_SECONDS * 1_000_000), 0),
            lambda row: "impossible value: reading_ts is not on a 15-minute boundary",
        )
    )
    rules.append(
        (
            pc.less(epoch_us, int(EARLIEST_READING.timestamp() * 1_000_000)),
            lambda row: f"impossible value: reading_ts before {EARLIEST_READING:%Y-%m-%d}",
        )
    )
    latest_us = int((now.timestamp() + MAX_CLOCK_SKEW_SECONDS) * 1_000_000)
    rules.append(
        (pc.greater(epoch_us, latest_us), lambda row: "impossible value: reading_ts more than 24 h in the future")
    )
    return rules


def _check_rows(rows: pa.Table, now: datetime) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Vectorised contract checks; returns the valid rows and (position, reason) for the rest.

    Masks are cheap boolean columns; reasons are worded only for the (rare) failing rows.
    """
    if rows.num_rows == 0:
        return rows, []
    rules = _violations(rows, now)
    bad = rules[0][0]
    for mask, _ in rules[1:]:
        bad = pc.or_kleene(bad, mask)
    bad = pc.fill_null(bad, False)
    if not pc.any(bad).as_py():
        return rows, []
    failing = rows.filter(bad).to_pylist()
    masks = [pc.fill_null(mask, False).filter(bad).to_pylist() for mask, _ in rules]
    rejected = []
    for i, row in enumerate(failing):
        explain = next(explain for (_, explain), hits in zip(rules, masks, strict=True) if hits[i])
        rejected.append((row["_index"], explain(row)))
    return rows.filter(pc.invert(bad)), rejected
