"""Coverage-guided fuzzing of the meter-readings decoder with atheris (libFuzzer).

    make fuzz                                   # 5 minutes (FUZZ_SECONDS=...)
    python -m metrify_dev.fuzz_decode [CORPUS_DIR] [libFuzzer options, e.g. -runs=100000]

Each input is cut into messages at the byte 0x1E; they are decoded amid valid readings (so
Arrow's vectorised path runs, not only the per-message path) and the decoder's promises are
checked: every message exactly one row or one non-empty reason of at most `MAX_REASON_CHARS`
characters, and each message's verdict in the batch equal to its verdict alone. An exception or
a broken promise is a crash: libFuzzer stops and writes the input as `crash-<sha1>` (replay it:
`python -m metrify_dev.fuzz_decode crash-<sha1>`). Not part of `make test`: the hypothesis
property tests (tests/unit/ingest/test_decode_properties.py) run there.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SEPARATOR = b"\x1e"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
_READING = {
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
FILL = [json.dumps(dict(_READING, consumption_kwh=i / 1000)).encode() for i in range(40)]
SEEDS = [
    json.dumps(_READING).encode(),
    json.dumps(_READING, indent=2).encode(),
    json.dumps(dict(_READING, voltage="231.4")).encode() + SEPARATOR + b"[1, 2]",
    json.dumps(dict(_READING, reading_ts="2026-11-22T01:15:00+01:00", note="z\u00e4hler")).encode(),
    b'{"meter_id": "DE1", "voltage": NaN, "current": 1e999}' + SEPARATOR + b"",
]
# JSON tokens for libFuzzer's mutations (its -dict option)
TOKENS = [
    *(f'"{name}":'.encode() for name in _READING),
    *b'{ } [ ] , : " true false null NaN Infinity -Infinity Inf 1e999 -0 0.1 9223372036854775808'.split(),
    b"\\ud800",
    b"\\u0000",
    b"\xff",
    b"\xef\xbb\xbf",
    b"\n",
    b"2026-11-22T00:15:00Z",
    b"+01:00",
    SEPARATOR,
]


def check(data: bytes) -> None:
    """Decode `data`'s messages amid valid readings; raise if a promise of the decoder is broken."""
    from metrify.contracts.readings import MAX_REASON_CHARS
    from metrify.ingest.decode import decode

    messages = data.split(SEPARATOR)[:16]
    values: list[bytes | None] = [*FILL[:20], *messages, *FILL[20:]]
    batch = _verdicts(decode(values, now=NOW))
    if sorted(batch) != list(range(len(values))):
        raise AssertionError(f"positions {sorted(batch)} != 0..{len(values) - 1}")
    for offset, message in enumerate(messages):
        verdict = batch[20 + offset]
        if isinstance(verdict, str) and not 0 < len(verdict) <= MAX_REASON_CHARS:
            raise AssertionError(f"reason of {len(verdict)} characters for {message[:200]!r}")
        alone = _verdicts(decode([message], now=NOW))
        if alone != {0: verdict}:
            raise AssertionError(f"{message[:300]!r}: alone {alone[0]!r} but in a batch {verdict!r}")
    for position in (*range(20), *range(20 + len(messages), len(values))):
        if not isinstance(batch[position], dict):
            raise AssertionError(f"valid reading at {position} rejected: {batch[position]!r}")


def _verdicts(decoded: Any) -> dict[int, Any]:
    found: dict[int, Any] = {}
    for row in decoded.rows.to_pylist():
        position = row.pop("_index")
        if position in found:
            raise AssertionError(f"message {position} decoded twice")
        found[position] = row
    for position, reason in decoded.rejected:
        if position in found:
            raise AssertionError(f"message {position} both a row and rejected, or rejected twice")
        found[position] = reason
    return found


def _escaped(token: bytes) -> str:
    """A token in libFuzzer's dictionary syntax."""
    return "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\x{b:02x}" for b in token)


def main(argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["metrify.ingest.decode", "metrify.contracts.readings"]):
        import metrify.ingest.decode  # noqa: F401  (instrumented: libFuzzer sees its branches)

    corpus = [a for a in argv[1:] if not a.startswith("-")]
    if not corpus:  # a fresh corpus seeded with readings, kept between runs
        from metrify.config import load_settings

        default = load_settings().home / "fuzz" / "decode"
        default.mkdir(parents=True, exist_ok=True)
        for n, seed in enumerate(SEEDS):
            (default / f"seed-{n}").write_bytes(seed)
        argv = [argv[0], str(default), *argv[1:]]
    if not any(a.startswith("-dict=") for a in argv):
        tokens = Path(tempfile.mkdtemp(prefix="fuzz-decode-")) / "json.dict"
        tokens.write_text("".join(f'"{_escaped(t)}"\n' for t in TOKENS))
        argv = [*argv, f"-dict={tokens}"]
    atheris.Setup(argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
