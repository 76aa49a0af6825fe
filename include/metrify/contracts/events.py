"""The event contract between the quality gate (producer) and the warehouse (consumer).

Each interval the gate passes, or an operator releases, updates its dataset's validated asset
(`metrify.assets.VALIDATED_*`) with one event whose `extra` is a `ValidatedInterval`. The
warehouse's `transform` runs on those events only; it parses them with `from_extra`, so a
producer and a consumer that disagree fail loudly instead of loading the wrong data.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date as Date
from typing import Any

from metrify.contracts import grid, readings, weather

STATUSES = ("passed", "released")
DATASETS = (readings.DATASET, grid.DATASET, weather.DATASET)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class ValidatedInterval:
    """One interval of `validated/<dataset>/` the gate passed (`status` passed) or an operator
    released (`status` released); `hour` is None for daily datasets (grid status, weather)."""

    dataset: str
    date: str
    hour: int | None
    rows: int
    status: str = "passed"
    quality_score: float | None = None
    quality_tier: str | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"validated interval: dataset {self.dataset!r} is not one of {DATASETS}")
        if not _DATE.fullmatch(self.date):
            raise ValueError(f"validated interval of {self.dataset!r}: date {self.date!r} is not YYYY-MM-DD")
        try:
            Date.fromisoformat(self.date)
        except ValueError:
            raise ValueError(f"validated interval of {self.dataset!r}: date {self.date!r} is not a real date") from None
        if self.hour is not None and not 0 <= self.hour <= 23:
            raise ValueError(f"validated interval of {self.dataset!r} {self.date}: hour {self.hour} is not 0..23")
        if self.status not in STATUSES:
            raise ValueError(f"validated interval of {self.dataset!r}: status {self.status!r} is not one of {STATUSES}")

    @property
    def partition(self) -> str:
        """The lake partition: `date=YYYY-MM-DD[/hour=HH]`."""
        return f"date={self.date}" + ("" if self.hour is None else f"/hour={self.hour:02d}")

    def to_extra(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> ValidatedInterval:
        """Parse an asset event's extra; a clear error names what is missing or wrong."""
        missing = [key for key in ("dataset", "date", "hour", "rows") if key not in extra]
        if missing:
            raise ValueError(f"validated-asset event extra {extra!r} lacks {missing}: not a ValidatedInterval")
        hour = extra["hour"]
        if hour is not None and (isinstance(hour, bool) or not isinstance(hour, int)):
            raise ValueError(f"validated-asset event extra {extra!r}: hour {hour!r} is not a whole number 0..23")
        return cls(
            dataset=str(extra["dataset"]),
            date=str(extra["date"]),
            hour=hour,
            rows=int(extra["rows"]),
            status=str(extra.get("status", "passed")),
            quality_score=extra.get("quality_score"),
            quality_tier=extra.get("quality_tier"),
        )
