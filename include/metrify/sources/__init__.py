"""Adapters from real grid and weather APIs to the canonical `grid_status` and `weather` contracts.

Each adapter fetches through `metrify.sources.http.HttpClient` and parses the source's own format.
A payload that cannot be read (not XML/JSON, a missing or retyped field) raises `PayloadError`
with the raw text and a reason, which the ingest functions quarantine; a source that says it
has no data for the interval raises `NoDataError`.
"""

from __future__ import annotations


class PayloadError(ValueError):
    """The source answered, but not in the format the adapter knows (malformed or schema drift)."""

    def __init__(self, source: str, reason: str, raw: str | bytes | None = None, request: str = ""):
        super().__init__(f"{source}: {reason}" + (f" (request: {request})" if request else ""))
        self.source = source
        self.reason = reason
        self.raw = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")
        self.request = request


class NoDataError(LookupError):
    """The source has (not yet) published data for the requested interval."""
