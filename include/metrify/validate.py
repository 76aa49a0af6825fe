"""Strict checks for every outside string that becomes part of a lake path or of SQL.

A manual run's conf, an operator's release, an asset event's extra, a lake listing and the
environment all reach paths (`date=<...>/hour=<...>`, `_state/<topic>/`) and warehouse SQL
(Snowflake's `COPY ... FILES = (...)`, schema and table names). Each value passes one of these
functions first; a bad one raises `ValueError` naming the field and the value, so the run fails
before anything is written, deleted or executed.
"""

from __future__ import annotations

import re
from datetime import date as Date
from typing import Any

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Kafka's own rule for topic names: ASCII letters, digits, '.', '_', '-'; at most 249 characters
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
# dataset, layer, schema and table names: lower-case words
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
# Snowflake identifiers metrify writes unquoted (database, storage integration)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,254}")
# one path segment of a lake object: word characters (umlauts too: `sources.landing.safe`), '.', '+', '=', '-'
_SEGMENT = re.compile(r"[\w.+=-]+")
# a partition value (`date=<value>`, `operator=<value>`): the same without '='
_PARTITION_VALUE = re.compile(r"[\w.+-]+")
# a meter id as metrify accepts it for an erasure: what the readings contract lets in (a non-empty
# string of at most `contracts.readings.METER_ID_MAX_LEN` = 64 characters), narrowed to the
# characters real meter ids use (German metering-point ids `DE` + 31 letters and digits, serial
# numbers with '.', '_', '-'): no quote, space, '%' or '/', so it is safe in a bound SQL
# parameter, a JSON string and a substring match alike
METER_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"  # also the `erase_meter` DAG's param pattern
_METER_ID = re.compile(METER_ID_PATTERN)
# a stage URL: scheme, then path characters only (no quote, space, semicolon or backslash)
_STAGE_URL = re.compile(r"(s3|s3compat|gcs|azure|file)://[A-Za-z0-9._~/=+-]+")


def _fail(field: str, value: Any, expected: str) -> ValueError:
    shown = repr(value)
    return ValueError(f"{field} must be {expected}; got {shown if len(shown) <= 200 else shown[:200] + '...'}")


def _matching(value: Any, field: str, pattern: re.Pattern[str], expected: str) -> str:
    """`value` if it is a string `pattern` matches whole, else a clear error naming `field`."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _fail(field, value, expected)
    return value


def iso_date(value: Any, field: str) -> str:
    """A calendar date written `YYYY-MM-DD` (nothing before or after it)."""
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise _fail(field, value, "a date YYYY-MM-DD")
    try:
        Date.fromisoformat(value)
    except ValueError:
        raise _fail(field, value, "a real calendar date YYYY-MM-DD") from None
    return value


def hour(value: Any, field: str) -> int:
    """A whole hour of the day, 0..23, as an int or a string of digits (not a bool or a float)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 2:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 23:
        raise _fail(field, value, "an hour 0..23")
    return value


def topic(value: Any, field: str) -> str:
    """A Kafka topic name (it becomes a folder of the lake's `_state/` and part of file names)."""
    if not isinstance(value, str) or not _TOPIC.fullmatch(value) or value in (".", ".."):
        raise _fail(field, value, "a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)")
    return value


def name(value: Any, field: str) -> str:
    """A dataset, layer, schema or table name: lower-case letters, digits and '_'."""
    return _matching(value, field, _NAME, "a lower-case name (letters, digits, '_')")


def identifier(value: Any, field: str) -> str:
    """An unquoted Snowflake identifier (a database or storage integration name)."""
    return _matching(value, field, _IDENTIFIER, "an identifier (letters, digits, '_', '$'; not starting with a digit)")


def partition_value(value: Any, field: str) -> str:
    """One value of a Hive-style lake partition: no '/', no '=', not '.' or '..'."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _PARTITION_VALUE.fullmatch(text) or text.startswith("."):
        raise _fail(field, value, "a partition value (letters, digits, '_', '.', '+', '-'; not starting with '.')")
    return text


def object_key(value: Any, field: str) -> str:
    """A relative lake object key such as `validated/meter_readings/date=2026-11-22/hour=05/x.parquet`:
    segments of word characters, '.', '+', '=', '-'; no empty, '.' or '..' segment, no leading '/'."""
    if not isinstance(value, str) or not value:
        raise _fail(field, value, "a relative lake object key")
    segments = value.split("/")
    if any(not _SEGMENT.fullmatch(s) or s in (".", "..") for s in segments):
        raise _fail(field, value, "a relative lake object key (letters, digits, '_', '.', '+', '=', '-' between '/')")
    return value


def stage_url(value: Any, field: str) -> str:
    """An external stage URL (s3://, gcs://, azure://, file://) without quotes, spaces or ';'."""
    if not isinstance(value, str) or not _STAGE_URL.fullmatch(value) or "/../" in f"{value}/":
        raise _fail(field, value, "a stage URL such as s3://bucket/prefix")
    return value


def meter_id(value: Any, field: str) -> str:
    """A meter id: letters and digits, then letters, digits, '.', '_', '-'; at most 64 characters."""
    expected = "a meter id (letters and digits, then '.', '_', '-' too; at most 64 characters)"
    return _matching(value, field, _METER_ID, expected)
