"""Running Great Expectations checkpoints and wording their failures for the on-call engineer.

`run_suites` runs one GX checkpoint per suite on in-memory frames; results are stored in a file
data context under `<METRIFY_HOME>/gx/<dataset>/` and rendered as GX Data Docs (HTML) there.
`failure_message` turns a failed run into the text a task log shows at 3 a.m.: the expectation,
the column, the counts, sample rows, the quarantine and the Data Docs page.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from metrify.quality.expectations import Expect, completeness_frame, completeness_suite, meter_readings_suite, plain
from metrify.telemetry import asked_for, telemetry_off


class QualityGateError(RuntimeError):
    """A critical expectation failed: the interval must not go downstream."""


@dataclass
class CheckpointOutcome:
    success: bool  # no critical expectation failed
    failures: list[dict[str, Any]] = field(default_factory=list)  # every failed expectation
    statistics: dict[str, Any] = field(default_factory=dict)
    docs_index: str | None = None  # Data Docs index.html
    docs_pages: dict[str, str] = field(default_factory=dict)  # suite -> this run's validation page
    result_path: str | None = None  # validation result JSON kept beside the docs
    import_seconds: float = 0.0

    @property
    def critical(self) -> list[dict[str, Any]]:
        return [f for f in self.failures if f["severity"] == "critical"]


def _context(home: Path | None) -> Any:
    """A GX data context (file-backed under `home`, else ephemeral): no progress bars, and no
    analytics unless asked for (`metrify.telemetry`)."""
    telemetry_off()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if home is None:
        context: Any = gx.get_context(mode="ephemeral")
    else:
        home.mkdir(parents=True, exist_ok=True)
        context = gx.get_context(mode="file", project_root_dir=str(home))
    changed = False
    bars = context.variables.progress_bars
    if bars is None or (bars.get("globally", True) if isinstance(bars, dict) else bars.globally):
        context.variables.progress_bars = ProgressBarsConfig(globally=False)  # keep task logs readable
        changed = True
    analytics = asked_for("GX_ANALYTICS_ENABLED")
    if context.variables.analytics_enabled is not analytics:
        context.variables.analytics_enabled = analytics
        changed = True
    if changed and home is not None:
        context.variables.save()
    return context


def run_checkpoint(
    frame: pd.DataFrame,
    checked: pd.DataFrame,
    window_start: pd.Timestamp,
    window_end: pd.Timestamp,
    gx_home: Path | None = None,
    build_docs: bool = True,
    run_name: str | None = None,
) -> CheckpointOutcome:
    """Validate a meter-readings interval with its two suites and keep the results.

    `gx_home` is the file data context's root (results + Data Docs); None uses an ephemeral one.
    """
    # superseded copies (exact redeliveries and earlier values a correction replaced) are
    # quarantined with their reading of record named; the suite judges the readings of record
    superseded = checked["repeat"].to_numpy(dtype=bool)
    rows_frame = frame.assign(
        ingestion_lag_minutes=checked["ingestion_lag_minutes"].to_numpy(),
        delivery_lag_minutes=checked["delivery_lag_minutes"].to_numpy(),
    )
    if superseded.any():
        rows_frame = rows_frame.loc[~superseded].reset_index(drop=True)
    counts_frame = completeness_frame(checked, window_start, window_end)
    specs = {
        "meter_readings": (meter_readings_suite(), rows_frame),
        "meter_readings_completeness": (completeness_suite(), counts_frame),
    }
    return run_suites(
        specs, gx_home=gx_home, build_docs=build_docs, run_name=run_name or f"{window_start:%Y-%m-%dT%H%M}"
    )


def run_suites(
    specs: dict[str, tuple[list[Expect], pd.DataFrame]],
    gx_home: Path | None = None,
    build_docs: bool = True,
    run_name: str = "run",
) -> CheckpointOutcome:
    """Run one GX checkpoint per suite (`name -> (expectations, dataframe)`), results kept.

    With `build_docs` and a `gx_home`, a file data context there stores suites, validation
    definitions, checkpoints and results, and renders Data Docs; otherwise it is ephemeral.
    """
    t0 = time.perf_counter()
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # keep the task log readable
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier

    import_seconds = time.perf_counter() - t0
    context = _context(gx_home if build_docs else None)
    source = context.data_sources.add_or_update_pandas(name="metrify")
    outcome = CheckpointOutcome(success=True, import_seconds=import_seconds)
    for name, (expects, data) in specs.items():
        try:
            asset = source.get_asset(name)
        except LookupError:
            asset = source.add_dataframe_asset(name=name)
        try:
            batch_definition = asset.get_batch_definition("interval")
        except (KeyError, LookupError, ValueError):
            batch_definition = asset.add_batch_definition_whole_dataframe("interval")
        suite = context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=[e.build() for e in expects]))
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"{name}_interval", data=batch_definition, suite=suite)
        )
        actions: list[Any] = [UpdateDataDocsAction(name="update_data_docs")] if build_docs else []
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=f"{name}_gate",
                validation_definitions=[definition],
                actions=actions,
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
            )
        )
        result = checkpoint.run(
            batch_parameters={"dataframe": data}, run_id=RunIdentifier(run_name=run_name, run_time=datetime.now(UTC))
        )
        for identifier, validation in result.run_results.items():
            outcome.statistics[name] = dict(validation.statistics)
            if build_docs and gx_home is not None:
                pages = context.get_docs_sites_urls(resource_identifier=identifier)
                if pages and pages[0].get("site_url"):
                    outcome.docs_pages[name] = pages[0]["site_url"]
            for expect, res in zip(expects, _ordered(validation, expects), strict=True):
                if res is None or res.success:
                    continue
                outcome.failures.append({**_describe(expect, res, data), "suite": name})
    outcome.success = not outcome.critical
    if build_docs and gx_home is not None:
        urls = context.get_docs_sites_urls()
        if urls:
            outcome.docs_index = urls[0].get("site_url")
    return outcome


def _ordered(validation: Any, expects: list[Expect]) -> list[Any]:
    """Match results to our specs by expectation type and kwargs (GX keeps suite order)."""
    results = list(validation.results)
    matched: list[Any] = []
    for expect in expects:
        snake = "".join("_" + ch.lower() if ch.isupper() else ch for ch in expect.kind).lstrip("_")
        found = None
        for res in results:
            config = res.expectation_config
            if config.type != snake:
                continue
            kwargs = config.kwargs
            if all(kwargs.get(k) == v for k, v in expect.kwargs.items() if k != "type_list"):
                found = res
                break
        if found is not None:
            results.remove(found)
        matched.append(found)
    return matched


def _describe(expect: Expect, res: Any, data: pd.DataFrame) -> dict[str, Any]:
    info = res.result or {}
    column = expect.kwargs.get("column") or expect.kwargs.get("column_list") or "(table)"
    failure: dict[str, Any] = {
        "expectation": res.expectation_config.type,
        "column": column,
        "severity": expect.severity,
        "kwargs": {k: v for k, v in expect.kwargs.items() if k not in ("column", "column_list")},
        "element_count": info.get("element_count"),
        "unexpected_count": info.get("unexpected_count"),
        "unexpected_percent": info.get("unexpected_percent"),
        "observed_value": info.get("observed_value"),
        "partial_unexpected_list": info.get("partial_unexpected_list"),
    }
    if expect.kind == "ExpectTableColumnsToMatchSet":
        observed = set(info.get("observed_value") or [])
        failure["kwargs"] = {"missing_columns": sorted(set(expect.kwargs["column_set"]) - observed)}
    if res.exception_info and res.exception_info.get("raised_exception"):
        failure["exception"] = res.exception_info.get("exception_message")
    if expect.bad_rows is not None:
        try:
            mask = expect.bad_rows(data).fillna(False).astype(bool)
            keys = [
                c
                for c in ("meter_id", "reading_ts", column if isinstance(column, str) else None, "readings", "expected")
                if c and c in data.columns
            ]
            failure["sample_rows"] = data.loc[mask, list(dict.fromkeys(keys))].head(5).astype(str).to_dict("records")
        except (KeyError, TypeError) as exc:  # a missing column is itself what failed
            failure["sample_rows_error"] = str(exc)
    return failure


def failure_message(
    dataset: str, interval: str, outcome: CheckpointOutcome, quarantined: int, quarantine_path: str | None
) -> str:
    lines = [
        f"quality gate FAILED for {dataset} interval {interval}: "
        f"{len(outcome.critical)} critical expectation(s) failed; nothing was written to validated/."
    ]
    for f in outcome.critical:
        count = f.get("unexpected_count")
        total = f.get("element_count")
        percent = f.get("unexpected_percent")
        counts = (
            f"{count} of {total} rows unexpected ({percent:.3f} %; superseded copies not counted)"
            if count is not None and percent is not None
            else f"observed {plain(f.get('observed_value'))!r}"
        )
        lines.append(f"- [{f.get('suite', '')}] {f['expectation']} on column {f['column']} {f['kwargs']}: {counts}")
        if f.get("exception"):
            lines.append(f"    error: {f['exception']}")
        for row in f.get("sample_rows", [])[:5]:
            lines.append(f"    sample: {row}")
    warnings = [f for f in outcome.failures if f["severity"] != "critical"]
    if warnings:
        lines.append(
            "warnings (recorded, not blocking): "
            + ", ".join(f"{w['expectation']}({w['column']}): {w.get('unexpected_count')}" for w in warnings)
        )
    lines.append(
        f"{quarantined} row(s) quarantined with their reason at {quarantine_path}"
        if quarantined
        else "no row was quarantined: the interval as a whole failed"
    )
    for suite in sorted({f["suite"] for f in outcome.critical if f.get("suite") in outcome.docs_pages}):
        lines.append(f"Great Expectations validation result ({suite}): {outcome.docs_pages[suite]}")
    if outcome.docs_index:
        lines.append(f"Great Expectations Data Docs (all runs): {outcome.docs_index}")
    lines.append(
        "what to do: open the Data Docs, inspect the sample rows and the quarantine; fix the "
        "source or re-ingest the interval, then clear this task to re-run the gate."
    )
    return "\n".join(lines)
