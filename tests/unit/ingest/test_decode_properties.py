"""Property tests of the decoder: for any batch of byte strings, every message becomes exactly
one row or one bounded reason, and a batch decodes exactly as each message would alone.

Batches mix random bytes, valid readings, near-valid readings (one field or one byte changed)
and the known hard cases, around a fill of plain readings long enough for Arrow's vectorised
path to run (it takes spans of more than 32 messages; shorter ones are decoded in Python),
with and without a 35-day lookback (too-late readings).
The settings are explicit and derandomized, so CI runs the same examples every time.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrify.contracts.readings import MAX_REASON_CHARS
from metrify.ingest.decode import Decoded, decode
from tests.unit.ingest.test_decode import HARD_CASES, NOW, POISON, reading

PROPERTIES = settings(
    max_examples=100,
    deadline=None,  # a batch with a megabyte-long message takes longer than the default 200 ms
    derandomize=True,  # the same examples on every run: CI stays deterministic
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    print_blob=True,
)

FIRST = datetime(2026, 9, 1, tzinfo=UTC)
QUARTERS = int((NOW + timedelta(days=2) - FIRST) / timedelta(minutes=15))

# JSON literals and fragments that have made decoders trip: spliced over a field's value.
WEIRD_LITERALS = [
    b"Inf",
    b"-Inf",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"nan",
    b"1e999999",
    b"-1e999999",
    b"1e-999999",
    b"1" * 400,
    b"-" + b"9" * 400,
    b"7" * 5000,
    b"9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"4.9e-324",
    b"2.2250738585072011e-308",
    b"0.1000000000000000055511151231257827021181583404541015625",
    b"-0",
    b"-0.0",
    b"01",
    b"+1",
    b".5",
    b"1.",
    b"0x10",
    b"1E3",
    b"true",
    b"null",
    b"[]",
    b"{}",
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b'"\\u0000"',
    b'"\xff"',
    b'"\xed\xa0\x80"',
    b'"\xc3\xa9"',
    b"[" * 3000 + b"]" * 3000,
    b"[" * 3000,
    b'"' + b"x" * 100_000 + b'"',
]

TIMESTAMP_FORMS = [
    "{:%Y-%m-%dT%H:%M:%SZ}",
    "{:%Y-%m-%dT%H:%M:%S+00:00}",
    "{:%Y-%m-%d %H:%M:%SZ}",
    "{:%Y-%m-%dT%H:%MZ}",
    "{:%Y-%m-%dT%H:%M:%S.%fZ}",
    "{:%Y-%m-%dT%H:%M:%S.000Z}",
    "{:%Y-%m-%dT%H:%M:%S-00:00}",
    "{:%Y-%m-%dT%H:%M:%S+0000}",
    "{:%Y-%m-%dT%H:%M:%S+00}",
    "{:%Y%m%dT%H%M%SZ}",
    "{:%Y-%m-%dT%H:%M:%S}",
    "{:%Y-%m-%d}",
    "{:%Y-%m-%dT%H:%M:%S.0000001Z}",
    "{:%Y-%m-%dT%H:%M:%S,5Z}",
    "{:%Y-%m-%dt%H:%M:%Sz}",
    " {:%Y-%m-%dT%H:%M:%SZ}",
]

numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-1e4, 1e4),
    st.integers(-(10**30), 10**30),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@st.composite
def timestamps(draw: Any) -> str:
    """A reading_ts: on or off the 15-minute grid, in one of many ISO-8601 spellings and offsets."""
    stamp = FIRST + timedelta(minutes=15 * draw(st.integers(0, QUARTERS)))
    stamp += timedelta(seconds=draw(st.sampled_from([0, 0, 0, 1, 60, 300])))
    offset = timedelta(minutes=draw(st.sampled_from([0, 0, 60, -300, 345, 14 * 60])))
    if offset:
        local = (stamp + offset).replace(tzinfo=None)
        sign, minutes = ("+" if offset > timedelta(0) else "-"), abs(int(offset.total_seconds())) // 60
        return f"{local:%Y-%m-%dT%H:%M:%S}{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return draw(st.sampled_from(TIMESTAMP_FORMS)).format(stamp)


@st.composite
def readings(draw: Any) -> dict[str, Any]:
    """A reading that the contract accepts, or nearly (the ranges reach a little past the bounds)."""
    payload = reading(
        meter_id=draw(st.from_regex(r"DE[0-9]{31}", fullmatch=True) | st.text(min_size=1, max_size=70)),
        reading_ts=draw(timestamps()),
        consumption_kwh=draw(st.floats(-1100, 1100) | st.integers(-5, 5)),
        export_kwh=draw(st.floats(-1, 1100)),
        voltage=draw(st.floats(0, 1100) | st.integers(200, 250)),
        current=draw(st.floats(0, 2100)),
        power_factor=draw(st.floats(0, 1.1)),
        frequency=draw(st.floats(39, 61)),
        temperature=draw(st.none() | st.floats(-70, 100)),
        humidity=draw(st.none() | st.floats(0, 110)),
    )
    for name in draw(st.lists(st.sampled_from(["temperature", "humidity"]), max_size=2)):
        payload.pop(name, None)
    return payload


def encoded(payload: dict[str, Any], style: int) -> bytes:
    if style == 0:
        return json.dumps(payload).encode()
    if style == 1:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return json.dumps(payload, indent=1).encode()


@st.composite
def valid_messages(draw: Any) -> bytes:
    return encoded(draw(readings()), draw(st.integers(0, 2)))


@st.composite
def near_valid_messages(draw: Any) -> bytes:
    """A reading with one thing wrong: a field's value, a field missing, one byte, or a literal."""
    payload = draw(readings())
    name = draw(st.sampled_from(sorted(payload)))
    how = draw(st.integers(0, 4))
    if how == 0:
        payload[name] = draw(json_values)
    elif how == 1:
        del payload[name]
    elif how == 2:
        payload[draw(st.text(max_size=10))] = draw(json_values)
    text = encoded(payload, draw(st.integers(0, 2)))
    if how == 3:  # splice a weird literal over the field's value
        start = text.index(json.dumps(name).encode()) + len(json.dumps(name)) + 1
        end = start + 1
        while end < len(text) and text[end : end + 1] not in (b",", b"}", b"\n"):
            end += 1
        return text[:start] + b" " + draw(st.sampled_from(WEIRD_LITERALS)) + text[end:]
    if how == 4:  # change, insert or drop one byte
        at = draw(st.integers(0, len(text) - 1))
        byte = bytes([draw(st.integers(0, 255))])
        return draw(
            st.sampled_from(
                [text[:at] + byte + text[at + 1 :], text[:at] + byte + text[at:], text[:at] + text[at + 1 :]]
            )
        )
    return text


HARD = [*HARD_CASES, *(v for _, v, _ in POISON)]
hard_cases = st.sampled_from(HARD)
messages = st.one_of(
    st.binary(max_size=200),
    valid_messages(),
    near_valid_messages(),
    near_valid_messages(),
    hard_cases,
    hard_cases,
    st.none(),
    json_values.map(lambda v: json.dumps(v).encode()),
)


def filler(rng: random.Random) -> bytes:
    """A valid reading, now and then in another spelling (Arrow must read it as Python does)."""
    stamp = FIRST + timedelta(minutes=15 * rng.randrange(QUARTERS))
    payload = reading(consumption_kwh=rng.randint(-999, 9999) / 1000, voltage=rng.uniform(200, 250))
    payload["reading_ts"] = rng.choice(TIMESTAMP_FORMS[:10] if rng.random() < 0.1 else TIMESTAMP_FORMS[:1]).format(
        stamp
    )
    if rng.random() < 0.05:
        payload[rng.choice(["note", "zählerstand", "firmware"])] = rng.choice(
            ["ü" * 3, [1, {"a": None}], 1e300, "\u2028"]
        )
    if rng.random() < 0.05:
        del payload[rng.choice(["temperature", "humidity"])]
    return encoded(payload, rng.choice([0, 0, 0, 1]))


@st.composite
def batches(draw: Any) -> list[bytes | None]:
    """Special messages scattered through a fill of readings (Arrow reads spans of > 32 lines):
    drawn by hypothesis (shrinkable), plus a few hard cases picked uniformly by the seeded fill."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    fill: list[bytes | None] = [filler(rng) for _ in range(draw(st.sampled_from([0, 40, 80, 120, 200])))]
    for special in [*(rng.choice(HARD) for _ in range(rng.randint(0, 4))), *draw(st.lists(messages, max_size=16))]:
        fill.insert(draw(st.integers(0, len(fill))), special)
    return fill


def verdicts(decoded: Decoded) -> dict[int, str | dict[str, Any]]:
    """Each position's verdict: its reason, or its row's values."""
    found: dict[int, str | dict[str, Any]] = {}
    for row in decoded.rows.to_pylist():
        position = row.pop("_index")
        assert position not in found, f"message {position} decoded twice"
        found[position] = row
    for position, reason in decoded.rejected:
        assert position not in found, f"message {position} both a row and rejected, or rejected twice"
        found[position] = reason
    return found


@PROPERTIES
@given(batches(), st.sampled_from([None, timedelta(days=35)]))
def test_any_batch_gives_each_message_one_verdict_as_it_would_alone(
    values: list[bytes | None], late_lookback: timedelta | None
) -> None:
    decoded = decode(values, now=NOW, late_lookback=late_lookback)
    assert decoded.rows.schema.field("reading_ts").type == pa.timestamp("us", tz="UTC")
    batch = verdicts(decoded)
    # (a) every position exactly once, as a row or as a reason
    assert sorted(batch) == list(range(len(values)))
    for position, verdict in batch.items():
        if isinstance(verdict, str):  # (b) a non-empty reason of bounded length, writable as UTF-8
            assert verdict and len(verdict) <= MAX_REASON_CHARS, (position, verdict)
            verdict.encode("utf-8")
    # (c) the batch decodes exactly as each message would alone: same verdict, same values
    for position, value in enumerate(values):
        assert verdicts(decode([value], now=NOW, late_lookback=late_lookback)) == {0: batch[position]}, (
            position,
            value,
        )
