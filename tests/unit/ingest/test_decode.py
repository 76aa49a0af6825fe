"""Decoding and validating meter readings against the contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from metrify.contracts.readings import MAX_REASON_CHARS, bounded_reason
from metrify.ingest.decode import decode

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def reading(**overrides: object) -> dict:
    base = {
        "meter_id": "DE0000011011500000000000000000001",
        "reading_ts": "2026-11-22T00:15:00Z",
        "consumption_kwh": 0.118,
        "export_kwh": 0.0,
        "voltage": 231.4,
        "current": 2.1,
        "power_factor": 0.97,
        "frequency": 50.01,
        "temperature": 6.2,
        "humidity": 81.0,
    }
    base.update(overrides)
    return base


def encode(payload: dict) -> bytes:
    return json.dumps(payload).encode()


def reasons(values: list[bytes | None]) -> dict[int, str]:
    return dict(decode(values, now=NOW).rejected)


def test_valid_batch_decodes_every_field_with_types() -> None:
    values = [encode(reading(consumption_kwh=i / 100)) for i in range(500)]
    decoded = decode(values, now=NOW)
    assert decoded.rejected == []
    assert decoded.rows.num_rows == 500
    assert decoded.rows.schema.field("reading_ts").type == pa.timestamp("us", tz="UTC")
    assert decoded.rows["_index"].to_pylist() == list(range(500))
    assert decoded.rows["consumption_kwh"].to_pylist()[7] == pytest.approx(0.07)


def test_utc_offsets_are_converted_to_utc() -> None:
    decoded = decode([encode(reading(reading_ts="2026-11-22T01:15:00+01:00"))], now=NOW)
    assert decoded.rows["reading_ts"][0].as_py() == datetime(2026, 11, 22, 0, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"not json at all", "not valid JSON"),
        (b'{"meter_id": "DE1", "reading_ts": ', "not valid JSON"),
        (b"\x00\xff\xfe", "not valid UTF-8: invalid start byte at byte 1"),
        (b"[1, 2, 3]", "not a JSON object: got list"),
        (b"", "empty message"),
        (None, "empty message"),
        (encode({k: v for k, v in reading().items() if k != "reading_ts"}), "missing required field: reading_ts"),
        (encode(reading(consumption_kwh=None)), "missing required field: consumption_kwh"),
        (encode(reading(consumption_kwh="n/a")), "wrong type: consumption_kwh must be a number, got str 'n/a'"),
        (encode(reading(voltage=True)), "wrong type: voltage must be a number, got bool"),
        (encode(reading(meter_id=12345)), "wrong type: meter_id must be a string, got int"),
        (encode(reading(reading_ts="yesterday")), "reading_ts 'yesterday' is not an ISO-8601 timestamp"),
        (encode(reading(reading_ts="2026-11-22T00:15:00")), "has no UTC offset"),
        (encode(reading()).replace(b"0.118", b"NaN"), "impossible value: consumption_kwh=nan is not a finite number"),
        (b'{"meter_id": "DE1", "reading_ts": "2026-11-22T00:15:00Z", "consumption_kwh": NaN}', "missing required"),
        (encode(reading(frequency=0.0)), "impossible value: frequency=0 outside 40..60 Hz"),
        (encode(reading(voltage=-230.0)), "impossible value: voltage=-230 outside 0..1000 V"),
        (encode(reading(power_factor=1.7)), "impossible value: power_factor=1.7 outside 0..1"),
        (encode(reading(export_kwh=-0.5)), "impossible value: export_kwh=-0.5 outside 0..1000 kWh per 15 min"),
        (encode(reading(humidity=140.0)), "impossible value: humidity=140 outside 0..100 %"),
        (encode(reading(meter_id="  ")), "impossible value: empty meter_id"),
        (encode(reading(reading_ts="2026-11-22T00:10:00Z")), "not on a 15-minute boundary"),
        (encode(reading(reading_ts="1999-12-31T23:45:00Z")), "before 2000-01-01"),
        (encode(reading(reading_ts="2026-11-25T00:00:00Z")), "more than 24 h in the future"),
    ],
)
def test_each_bad_message_gets_a_reason_naming_the_problem(value: bytes | None, expected: str) -> None:
    got = reasons([value])
    assert list(got) == [0]
    assert expected in got[0]


def test_poison_in_a_large_block_is_isolated_and_neighbours_are_kept() -> None:
    values = [encode(reading(consumption_kwh=i / 1000)) for i in range(2000)]
    values[3] = b"garbage"
    values[1500] = encode(reading(voltage="231"))
    values[1999] = encode(reading(frequency=0.0))
    decoded = decode(values, now=NOW)
    assert sorted(p for p, _ in decoded.rejected) == [3, 1500, 1999]
    assert decoded.rows.num_rows == 1997
    kept = set(decoded.rows["_index"].to_pylist())
    assert kept == set(range(2000)) - {3, 1500, 1999}


def test_plausible_but_suspicious_values_are_kept_for_the_quality_gate() -> None:
    values = [encode(reading(consumption_kwh=-0.4)), encode(reading(voltage=190.0)), encode(reading(frequency=49.5))]
    decoded = decode(values, now=NOW)
    assert decoded.rejected == []
    assert decoded.rows.num_rows == 3


def test_pretty_printed_json_spanning_lines_is_decoded_not_lost() -> None:
    pretty = json.dumps(reading(), indent=2).encode()
    values = [encode(reading())] * 100 + [pretty] + [encode(reading())] * 100
    decoded = decode(values, now=NOW)
    assert decoded.rejected == []
    assert decoded.rows.num_rows == 201


def test_optional_sensors_may_be_missing() -> None:
    payload = {k: v for k, v in reading().items() if k not in {"temperature", "humidity"}}
    decoded = decode([encode(payload)], now=NOW)
    assert decoded.rejected == []
    assert decoded.rows["temperature"][0].as_py() is None


def test_unknown_extra_fields_are_ignored() -> None:
    decoded = decode([encode(reading(firmware="1.2.3"))], now=NOW)
    assert decoded.rejected == [] and decoded.rows.num_rows == 1


GOOD = encode(reading())
# (message, what its quarantine reason says, or None when it is a valid reading)
HARD: list[tuple[bytes | None, str | None]] = [
    (b"", "empty message (no value)"),
    (None, "empty message (no value)"),
    (b"   ", "empty message (only whitespace)"),
    (b"\t", "empty message (only whitespace)"),
    (b"not json", "not valid JSON"),
    (b"\x00\xff garbage \xfe", "not valid UTF-8"),
    (GOOD[:40], "not valid JSON: Unterminated string"),
    (b'{"a":', "not valid JSON"),
    (b"[1, 2]", "not a JSON object: got list"),
    (b'"text"', "not a JSON object: got str"),
    (GOOD + b"x", "not valid JSON: Extra data"),
    (GOOD + b" " + GOOD, "not valid JSON: Extra data"),
    (GOOD + b"\r", None),  # trailing and leading whitespace is JSON
    (b"  " + GOOD, None),
    (json.dumps(reading(), indent=2).encode(), None),
    (encode(reading(voltage="231.4")), "wrong type: voltage must be a number, got str '231.4'"),
    (encode(reading(meter_id=12345)), "wrong type: meter_id must be a string, got int"),
    (encode(reading(current=True)), "wrong type: current must be a number, got bool"),
    (encode(reading(reading_ts="2026-11-22T00:15:00")), "has no UTC offset"),
    (encode(reading(reading_ts="yesterday")), "reading_ts 'yesterday' is not an ISO-8601 timestamp"),
    (encode(reading(reading_ts="2026-13-22T00:15:00Z")), "reading_ts '2026-13-22T00:15:00Z' is not an ISO-8601"),
    (encode(reading(reading_ts="2026-11-22T01:15:00+01:00")), None),
    (encode(reading(reading_ts="2026-11-22T00:10:00Z")), "not on a 15-minute boundary"),
    (b'{"meter_id": "DE1", "voltage": 1e999}', "missing required field: reading_ts"),
    (GOOD.replace(b'"voltage": 231.4', b'"voltage": NaN'), "voltage=nan is not a finite number"),
    (b'{"meter_id": "DE1", "voltage": NaN}', "missing required field: reading_ts"),
    (encode(reading(frequency=0.0)), "impossible value: frequency=0 outside 40..60 Hz"),
    (encode(reading(meter_id="")), "impossible value: empty meter_id"),
    (encode(reading(meter_id="x" * 65)), "meter_id longer than 64 characters"),
    (encode(reading(consumption_kwh=None)), "missing required field: consumption_kwh"),
    (encode(reading(extra={"a": [1]})), None),
]
HARD_CASES: list[bytes | None] = [value for value, _ in HARD]


DEEP = 100_000
# (id, message, what its quarantine reason says, or None when it is a valid reading)
POISON: list[tuple[str, bytes, str | None]] = [
    ("nested-arrays", b"[" * DEEP, "not valid JSON: nested too deeply (RecursionError"),
    ("nested-objects", b'{"a":' * DEEP, "not valid JSON: nested too deeply (RecursionError"),
    ("nested-unknown-field", GOOD[:-1] + b', "x": ' + b"[" * DEEP + b"]" * DEEP + b"}", None),
    ("exponent-overflow", GOOD.replace(b"0.118", b"1e999999"), "consumption_kwh=inf is not a finite number"),
    ("int-400-digits", GOOD.replace(b"0.118", b"1" * 400), "consumption_kwh=inf is not a finite number"),
    ("int-minus-400-digits", GOOD.replace(b"0.118", b"-" + b"9" * 400), "consumption_kwh=-inf is not a finite"),
    ("int-5000-digits", GOOD.replace(b"0.118", b"7" * 5000), "consumption_kwh=inf is not a finite number"),
    ("int-beyond-int64", GOOD.replace(b"0.118", b"99999999999999999999"), "consumption_kwh=1e+20 outside"),
    ("meter-id-400-digits", GOOD.replace(b'"DE0000011011500000000000000000001"', b"1" * 400), "got int"),
    ("invalid-utf8-in-meter-id", GOOD.replace(b"DE000", b"DE\xff\xfe0"), "not valid UTF-8"),
    ("invalid-utf8-in-unknown-field", GOOD[:-1] + b', "note": "\xff"}', "not valid UTF-8"),
    ("surrogate-bytes-in-meter-id", GOOD.replace(b"DE000", b"DE\xed\xa0\x800"), "not valid UTF-8"),
    ("escaped-lone-surrogate-in-meter-id", GOOD.replace(b"DE000", b"DE\\ud8000"), "unpaired surrogate"),
    ("escaped-lone-surrogate-in-unknown-field", GOOD[:-1] + b', "note": "\\udc00"}', None),
    ("nul-byte", GOOD.replace(b"DE000", b"DE\x000"), "not valid JSON"),
    ("nul-after-object", GOOD + b"\x00garbage", "not valid JSON"),
    ("whitespace-only", b" \t \n ", "empty message (only whitespace)"),
    ("two-objects-one-line", GOOD + GOOD, "not valid JSON: Extra data"),
    ("two-objects-two-lines", GOOD + b"\n" + GOOD, "not valid JSON: Extra data"),
    ("pretty-printed", json.dumps(reading(), indent=2).encode(), None),
    ("utf8-bom", b"\xef\xbb\xbf" + GOOD, None),
    ("utf16", json.dumps(reading()).encode("utf-16"), "not valid UTF-8"),
    ("json-null", b"null", "not a JSON object: got NoneType"),
    ("json-string", b'"text"', "not a JSON object: got str"),
    ("duplicate-key-last-wins", GOOD[:-1] + b', "voltage": 5000}', "voltage=5000 outside 0..1000 V"),
    ("nan-literal", GOOD.replace(b"0.118", b"NaN"), "consumption_kwh=nan is not a finite number"),
    ("infinity-literal", GOOD.replace(b"0.118", b"-Infinity"), "consumption_kwh=-inf is not a finite number"),
    ("inf-literal", GOOD.replace(b"0.118", b"Inf"), "consumption_kwh=inf is not a finite number"),
    ("bool-for-number", GOOD.replace(b"0.118", b"true"), "wrong type: consumption_kwh must be a number, got bool"),
    ("number-for-timestamp", encode(reading(reading_ts=1795306500)), "reading_ts must be an ISO-8601 string, got int"),
    ("year-1-east-of-utc", GOOD.replace(b"2026-11-22T00:15:00Z", b"0001-01-01T00:00:00+01:00"), "before 2000-01-01"),
    ("year-9999-west-of-utc", GOOD.replace(b"2026-11-22T00:15:00Z", b"9999-12-31T23:45:00-01:00"), "in the future"),
    ("huge-valid", GOOD[:-1] + b', "pad": "' + b"x" * 2_000_000 + b'"}', None),
    ("huge-invalid", GOOD.replace(b"0.118", b'"' + b"9" * 2_000_000 + b'"'), "must be a number, got str"),
]


def test_a_batch_decodes_exactly_as_each_message_would_alone() -> None:
    """Whatever poison sits where, the vectorised path agrees message by message with decoding
    every message on its own (the per-message path that explains failures), and both agree with
    the cases' table, so the two paths cannot pass by being wrong alike."""
    import random

    rng = random.Random(7)
    cases = [*HARD, *((v, e) for _, v, e in POISON)]
    values: list[bytes | None] = [encode(reading(consumption_kwh=i / 1000)) for i in range(9000)]
    verdicts: dict[int, str | None] = {}  # position of each case -> what its reason says (None: valid)
    for n, position in enumerate(rng.sample(range(len(values)), 240)):
        values[position], verdicts[position] = cases[n % len(cases)]
    batch = decode(values, now=NOW)

    assert sorted(p for p, _ in batch.rejected) == sorted(p for p, e in verdicts.items() if e is not None)
    for position, reason in batch.rejected:
        assert verdicts[position] in reason, (position, reason)
    fill = batch.rows.filter(pc.invert(pc.is_in(batch.rows["_index"], pa.array(list(verdicts), pa.int64()))))
    assert fill.num_rows == 9000 - 240
    assert fill["consumption_kwh"].to_pylist() == [i / 1000 for i in fill["_index"].to_pylist()]

    expected_rows, expected_reasons = {}, {}
    for position, value in enumerate(values):
        alone = decode([value], now=NOW)
        if alone.rejected:
            expected_reasons[position] = alone.rejected[0][1]
        else:
            expected_rows[position] = alone.rows.drop_columns(["_index"]).to_pylist()[0]
    assert dict(batch.rejected) == expected_reasons  # the same reasons, even for several problems
    assert len(batch.rejected) == len(expected_reasons)
    rows = batch.rows.sort_by("_index")
    assert rows["_index"].to_pylist() == sorted(expected_rows)
    assert rows.drop_columns(["_index"]).to_pylist() == [expected_rows[p] for p in sorted(expected_rows)]


def decode_at(value: bytes | None, position: int, values: list[bytes | None]) -> tuple[str | None, dict | None]:
    """(reason, row) of one message decoded at `position` of `values`: exactly one of them is set."""
    batch = [*values[:position], value, *values[position:]]
    decoded = decode(batch, now=NOW)
    assert decoded.rows.num_rows + len(decoded.rejected) == len(batch)
    assert sorted([*decoded.rows["_index"].to_pylist(), *(p for p, _ in decoded.rejected)]) == list(range(len(batch)))
    reason = dict(decoded.rejected).get(position)
    rows = [r for r in decoded.rows.to_pylist() if r.pop("_index") == position]
    assert (reason is None) == (len(rows) == 1)
    return reason, rows[0] if rows else None


@pytest.mark.parametrize(("value", "expected"), [(v, e) for _, v, e in POISON], ids=[i for i, _, _ in POISON])
def test_no_message_can_fail_a_batch(value: bytes, expected: str | None) -> None:
    """Whatever a message holds, it is one row or one reason: alone, and amid valid readings
    (where Arrow reads first and the message is explained on its own)."""
    neighbours = [encode(reading(consumption_kwh=i / 1000)) for i in range(100)]
    for position, values in ((0, []), (60, neighbours)):
        reason, row = decode_at(value, position, values)
        if expected is None:
            assert reason is None and row is not None and row["meter_id"] == reading()["meter_id"]
        else:
            assert reason is not None and expected in reason, reason


def test_a_decoder_bug_costs_only_the_messages_it_hits(monkeypatch, caplog) -> None:
    """If the vectorised path fails on some input (a bug, not the message's fault), each message
    is decoded alone and only the ones that still fail are quarantined, naming the error."""
    from metrify.ingest import decode as decoder

    real_check = decoder._check_rows

    def check_failing_on_one_value(rows: pa.Table, *args):
        if 0.05 in rows["consumption_kwh"].to_pylist():
            raise RuntimeError("simulated decoder bug")
        return real_check(rows, *args)

    monkeypatch.setattr(decoder, "_check_rows", check_failing_on_one_value)
    values = [encode(reading(consumption_kwh=i / 1000)) for i in range(100)] + [b"garbage"]
    decoded = decode(values, now=NOW)
    assert decoded.rows["_index"].to_pylist() == [i for i in range(100) if i != 50]
    assert dict(decoded.rejected) == {
        50: "decoder error: RuntimeError: simulated decoder bug",
        100: "not valid JSON: Expecting value: line 1 column 1 (char 0)",
    }
    assert "decoding 101 messages failed; decoding each message on its own" in caplog.text


MEGABYTE = 1_000_000


@pytest.mark.parametrize(
    "value",
    [
        encode(reading(voltage="x" * MEGABYTE)),
        encode(reading(reading_ts="9" * MEGABYTE)),
        encode(reading(meter_id=["DE1"] * MEGABYTE)),
        encode(reading(current={"nested": [[["x" * MEGABYTE]]]})),
        b'{"meter_id": "' + b"x" * MEGABYTE,
    ],
    ids=["string-for-number", "string-for-timestamp", "list-for-meter-id", "object-for-number", "truncated"],
)
def test_a_huge_message_gets_a_short_reason(value: bytes) -> None:
    neighbours = [encode(reading())] * 100
    for position, values in ((0, []), (60, neighbours)):
        reason, _ = decode_at(value, position, values)
        assert reason and len(reason) <= MAX_REASON_CHARS, (len(reason or ""), (reason or "")[:200])


def test_a_reason_is_cut_to_the_limit_and_says_so(monkeypatch) -> None:
    from metrify.ingest import decode as decoder

    def fail(value: bytes | None):
        raise ValueError("y" * MEGABYTE)

    monkeypatch.setattr(decoder, "_parse_message", fail)
    (position, reason), *others = decode([b"{}"], now=NOW).rejected
    assert position == 0 and others == []
    assert reason.startswith("undecodable message: ValueError: yyy")
    assert reason.endswith(f"… [reason cut to {MAX_REASON_CHARS} of {MEGABYTE + 33} characters]")
    assert len(reason) == MAX_REASON_CHARS


def test_bounded_reason_keeps_short_reasons_and_escapes_lone_surrogates() -> None:
    assert bounded_reason("not valid JSON") == "not valid JSON"
    assert bounded_reason("x" * MAX_REASON_CHARS) == "x" * MAX_REASON_CHARS
    assert len(bounded_reason("x" * (MAX_REASON_CHARS + 1))) == MAX_REASON_CHARS
    assert bounded_reason("meter \ud800") == "meter \\ud800"


LOOKBACK = timedelta(days=35)


def at(stamp: datetime) -> bytes:
    return encode(reading(reading_ts=f"{stamp:%Y-%m-%dT%H:%M:%SZ}"))


def test_a_reading_older_than_the_lookback_is_quarantined_as_too_late() -> None:
    cutoff = NOW - LOOKBACK  # 2026-10-19 12:00 UTC
    values = [
        at(cutoff),  # exactly the lookback: still in time
        at(cutoff - timedelta(minutes=15)),
        at(NOW - timedelta(days=400)),
        encode(reading(reading_ts="2026-01-01T00:15:00+01:00", voltage=-5.0)),  # impossible first
        at(NOW - timedelta(hours=1)),
    ]
    decoded = decode(values, now=NOW, late_lookback=LOOKBACK)
    assert decoded.rows["_index"].to_pylist() == [0, 4]
    assert dict(decoded.rejected) == {
        1: "too late: reading_ts 2026-10-19T11:45:00Z is 35.0 days old, beyond the 35-day lookback",
        2: "too late: reading_ts 2025-10-19T12:00:00Z is 400.0 days old, beyond the 35-day lookback",
        3: "impossible value: voltage=-5 outside 0..1000 V",
    }
    assert decode(values, now=NOW).rejected == [(3, "impossible value: voltage=-5 outside 0..1000 V")]  # no lookback
    assert decode(values[1:2], now=NOW, late_lookback=timedelta(days=40)).rejected == []
    assert decode(values[:3], now=NOW, late_lookback=timedelta(days=10**6)).rejected == []  # beyond year 1
