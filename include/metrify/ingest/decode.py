"""Decoding Kafka message values into `meter_readings` rows, every bad message explained.

Decoding is vectorised with Arrow's JSON reader over the batch joined into lines. Where Arrow
stops at a bad message (bad JSON, a wrong type) it names the line; the lines before it are read
again, that message is explained on its own in Python, and reading resumes after it. A poison
message therefore costs at most one re-read of a few thousand lines, and never blocks or drops
its neighbours. The batch decodes exactly as each message would on its own (tested).

Whatever bytes a message holds, it becomes one row or one reason: `decode` never raises for a
message's content (deep nesting, huge numbers, invalid UTF-8, ...), so one message can never stop
its partition. Messages that are not valid UTF-8 never reach Arrow (which would pass them on
unchecked); where Python's JSON parser gives up but Arrow's reads the message (any nesting
depth, `Inf`), Arrow's reading decides, as it would in a batch.
"""

from __future__ import annotations

import json
import logging
import math
import re
import reprlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
    TOO_LATE,
    bounded_reason,
)

log = logging.getLogger(__name__)

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


def decode(
    values: Sequence[bytes | None], now: datetime | None = None, late_lookback: timedelta | None = None
) -> Decoded:
    """Decode and validate a batch of message values; every message becomes a row or a reason
    (of at most `MAX_REASON_CHARS` characters). With `late_lookback`, a reading older than
    `now - late_lookback` is rejected as too late."""
    now = now or datetime.now(UTC)
    try:
        decoded = _decode(values, now, late_lookback)
    except MemoryError:
        raise
    except Exception:  # a decoder bug on some input: never let it stop the partition
        log.exception("decoding %d messages failed; decoding each message on its own", len(values))
        decoded = _decode_each(values, now, late_lookback)
    decoded.rejected = [(position, bounded_reason(reason)) for position, reason in decoded.rejected]
    return decoded


def _decode(values: Sequence[bytes | None], now: datetime, late_lookback: timedelta | None) -> Decoded:
    tables: list[pa.Table] = []
    rejected: list[tuple[int, str]] = []
    lines = _Lines.of(values)
    for position in lines.by_python:
        _explain_one(values, position, tables, rejected)
    for lo, hi in lines.spans():
        lines.parse(lo, hi, values, tables, rejected)
    rows = pa.concat_tables(tables) if tables else _empty_rows()
    rows, invalid = _check_rows(rows, now, late_lookback)
    rejected.extend(invalid)
    return Decoded(rows=rows, rejected=rejected)


def _decode_each(values: Sequence[bytes | None], now: datetime, late_lookback: timedelta | None) -> Decoded:
    """The slow, safe path: each message decoded alone; one that still fails is quarantined."""
    tables: list[pa.Table] = []
    rejected: list[tuple[int, str]] = []
    for position, value in enumerate(values):
        try:
            alone = _decode([value], now, late_lookback)
        except MemoryError:
            raise
        except Exception as exc:
            rejected.append((position, f"decoder error: {_error(exc)}"))
            continue
        rejected.extend((position, reason) for _, reason in alone.rejected)
        index = pa.array(np.full(alone.rows.num_rows, position, dtype=np.int64))
        tables.append(alone.rows.set_column(alone.rows.schema.get_field_index("_index"), "_index", index))
    rows = pa.concat_tables(tables) if tables else _empty_rows()
    return Decoded(rows=rows, rejected=rejected)


def _empty_rows() -> pa.Table:
    return PAYLOAD_SCHEMA.empty_table().append_column("_index", pa.array([], pa.int64()))


_ERROR_ROW = re.compile(r" in row (\d+)$")
_SPAN_LINES = 4096  # a poison message costs at most one re-parse of this many lines


@dataclass
class _Lines:
    """A batch as one newline-delimited buffer: message i is line i, at bytes starts[i]..starts[i+1]-1.

    Messages that Arrow cannot be trusted with (empty, not starting with "{", holding a NUL
    byte, which ends Arrow's parse without saying where, or not valid UTF-8, which Arrow does not
    check) are listed in `by_python` and decoded one by one; Arrow parses the spans of lines
    between them. A message spanning several lines (pretty-printed JSON) makes Arrow fail on its
    first line or read too many rows, and is then explained alone.
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
        if not joined.isascii():  # ~1 ms per 100,000 readings; the rest only for non-ASCII batches
            special.update(_not_utf8(lines, joined, starts))  # type: ignore[arg-type]
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
                table = _read_json(self.buffer.slice(first, size))
            except MemoryError:
                raise
            except Exception as exc:  # any failure of Arrow's: bisect down to messages explained alone
                match = _ERROR_ROW.search(str(exc)) if isinstance(exc, pa.ArrowInvalid) else None
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


def _not_utf8(lines: Sequence[bytes], joined: bytes, starts: np.ndarray) -> list[int]:
    """The lines that are not valid UTF-8."""
    try:
        joined.decode("utf-8")
        return []
    except UnicodeDecodeError:
        pass
    high = np.flatnonzero(np.frombuffer(joined, dtype=np.uint8) >= 0x80)
    bad = []
    for line in np.unique(np.searchsorted(starts, high, side="right") - 1).tolist():
        try:
            lines[line].decode("utf-8")
        except UnicodeDecodeError:
            bad.append(line)
    return bad


def _read_json(buffer: pa.Buffer) -> pa.Table:
    """Arrow's reading of newline-delimited messages (reading_ts as text)."""
    return pa_json.read_json(
        pa.BufferReader(buffer),
        read_options=pa_json.ReadOptions(block_size=buffer.size + 1, use_threads=False),
        parse_options=_PARSE_OPTIONS,
    )


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
    """Decode one message in Python, explaining exactly what is wrong with it. Never raises for
    what the message holds: an unforeseen failure becomes its reason."""
    try:
        return _parse_message(value)
    except MemoryError:
        raise
    except Exception as exc:
        return None, f"undecodable message: {_error(exc)}"


def _parse_message(value: bytes | None) -> tuple[pa.Table | None, str | None]:
    if value is None or value == b"":
        return None, "empty message (no value)"
    try:
        text = value.decode("utf-8-sig")  # JSON is UTF-8; a byte order mark is tolerated
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8: {exc.reason} at byte {exc.start}"
    if not text.strip(_JSON_WHITESPACE):
        return None, "empty message (only whitespace)"
    payload, problem = _parse_json(value, text)
    if problem is not None:
        return None, problem
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
            if not _encodable(value_):
                return None, f"not valid UTF-8: meter_id {_show(value_)} holds an unpaired surrogate"
            record[field.name] = value_
        elif field.name == "reading_ts":
            if not isinstance(value_, str):
                return None, f"wrong type: reading_ts must be an ISO-8601 string, got {type(value_).__name__}"
            try:
                parsed = datetime.fromisoformat(value_)
            except ValueError:
                return None, f"wrong type: reading_ts {_show(value_)} is not an ISO-8601 timestamp"
            if parsed.tzinfo is None:
                return None, f"reading_ts {_show(value_)} has no UTC offset"
            record[field.name] = _epoch_us(parsed)  # any year: the contract's rules judge the range
        else:
            if isinstance(value_, bool) or not isinstance(value_, (int, float)):
                return None, f"wrong type: {field.name} must be a number, got {type(value_).__name__} {_show(value_)}"
            record[field.name] = _as_float(value_)  # NaN and ±inf too: the contract's rules reject them
    return pa.Table.from_pylist([record], schema=PAYLOAD_SCHEMA), None


_JSON_WHITESPACE = " \t\n\r"
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = _SHOW.maxlong = 80


def _parse_json(value: bytes, text: str) -> tuple[Any, str | None]:
    """The message's JSON value, or why it has none.

    Where Python's parser gives up but Arrow's (iterative, and lenient about `Inf`) reads the
    message as one object, Arrow's reading counts: it is what the message gets in a batch.
    """
    try:
        return json.loads(text, parse_int=_json_int), None
    except RecursionError as exc:
        problem = f"not valid JSON: nested too deeply ({_error(exc)})"
    except ValueError as exc:
        problem = f"not valid JSON: {exc}"
    if value.startswith(b"{") and b"\0" not in value:  # what Arrow reads in a batch (`_Lines.of`)
        try:
            table = _read_json(pa.py_buffer(value))
        except MemoryError:
            raise
        except Exception:
            table = None
        if table is not None and table.num_rows == 1:
            return table.to_pylist()[0], None
    return None, problem


def _json_int(text: str) -> int | float:
    """An integer literal; beyond Python's 4,300-digit limit its float value (±inf), as Arrow reads it."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _as_float(number: float) -> float:
    """A JSON number as float64; integers beyond its range become ±inf, as Arrow reads them."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def _epoch_us(stamp: datetime) -> int:
    """Microseconds since the epoch of an aware datetime, without datetime's year 1..9999 limit."""
    offset = stamp.utcoffset() or timedelta(0)
    return (stamp.replace(tzinfo=None) - _EPOCH) // _MICROSECOND - offset // _MICROSECOND


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _show(value: object) -> str:
    """A short repr of a message's value for a reason (long strings and deep lists abbreviated)."""
    return _SHOW.repr(value)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _says(text: str) -> Callable[[dict[str, Any]], str]:
    return lambda row: text


def _out_of_bounds(name: str, low: float, high: float, unit: str) -> Callable[[dict[str, Any]], str]:
    def explain(row: dict[str, Any]) -> str:
        if not math.isfinite(row[name]):
            return f"impossible value: {name}={row[name]} is not a finite number"
        return f"impossible value: {name}={row[name]:g} outside {low:g}..{high:g} {unit}".rstrip()

    return explain


def _too_late(now: datetime, lookback: timedelta) -> Callable[[dict[str, Any]], str]:
    def explain(row: dict[str, Any]) -> str:
        stamp = _EPOCH + row["reading_ts"] * _MICROSECOND  # epoch µs in the failing rows
        age = (now.timestamp() * 1_000_000 - row["reading_ts"]) / (86_400 * 1_000_000)
        return (
            f"{TOO_LATE} reading_ts {stamp:%Y-%m-%dT%H:%M:%S}Z is {age:.1f} days old, "
            f"beyond the {lookback / timedelta(days=1):g}-day lookback"
        )

    return explain


def _violations(
    rows: pa.Table, now: datetime, late_lookback: timedelta | None
) -> list[tuple[pa.ChunkedArray, Callable[[dict[str, Any]], str]]]:
    """(mask, explain) per contract rule, in order; `explain(row)` words the failure for one row.
    Lateness comes last: a too-late reading is one that would otherwise have been valid."""
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
    if late_lookback is not None:
        cutoff_us = int(now.timestamp() * 1_000_000) - late_lookback // _MICROSECOND  # any lookback: no date math
        rules.append((pc.less(epoch_us, cutoff_us), _too_late(now, late_lookback)))
    return rules


def _check_rows(
    rows: pa.Table, now: datetime, late_lookback: timedelta | None = None
) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Vectorised contract checks; returns the valid rows and (position, reason) for the rest.

    Masks are cheap boolean columns; reasons are worded only for the (rare) failing rows.
    """
    if rows.num_rows == 0:
        return rows, []
    rules = _violations(rows, now, late_lookback)
    bad = rules[0][0]
    for mask, _ in rules[1:]:
        bad = pc.or_kleene(bad, mask)
    bad = pc.fill_null(bad, False)
    if not pc.any(bad).as_py():
        return rows, []
    failing_rows = rows.filter(bad)
    column = failing_rows.schema.get_field_index("reading_ts")  # as epoch µs: any year converts
    failing = failing_rows.set_column(column, "reading_ts", pc.cast(failing_rows[column], pa.int64())).to_pylist()
    masks = [pc.fill_null(mask, False).filter(bad).to_pylist() for mask, _ in rules]
    rejected = []
    for i, row in enumerate(failing):
        explain = next(explain for (_, explain), hits in zip(rules, masks, strict=True) if hits[i])
        rejected.append((row["_index"], explain(row)))
    return rows.filter(pc.invert(bad)), rejected
