"""The suite's one rule for skipping: only a missing prerequisite may skip, through `require()`,
and only on a developer machine. Any other skip (a `skip` mark, `importorskip`, `pytest.skip`)
fails the test, and in CI (CI=true) nothing skips at all. Loaded by tests/conftest.py."""

from __future__ import annotations

import os

import pytest

PREREQUISITE = "prerequisite missing: "
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip with a clear reason on a developer machine; fail in CI, where nothing may skip."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{PREREQUISITE}{reason} (CI=true: nothing may skip)")
    pytest.skip(f"{PREREQUISITE}{reason}")


def _verdict(reason: str) -> str | None:
    """Why a skip breaks the rule (None when it is allowed)."""
    if IN_CI:
        return f"skipped in CI ({reason}): in CI nothing may skip"
    if PREREQUISITE not in reason:
        return f"skipped outside the prerequisite rule ({reason}): use tests.skip_rule.require() or fix the test"
    return None


def _reason(longrepr: object) -> str:
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    if report.skipped and not hasattr(report, "wasxfail"):
        broken = _verdict(_reason(report.longrepr))
        if broken:
            report.outcome = "failed"
            report.longrepr = broken
    return report


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_make_collect_report(collector: pytest.Collector) -> pytest.CollectReport:
    report = yield
    if report.skipped:
        broken = _verdict(_reason(report.longrepr))
        if broken:
            report.outcome = "failed"
            report.longrepr = broken
    return report
