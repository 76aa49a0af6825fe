"""The skip rule itself: only `require()` may skip, only off CI (run in an inner pytest)."""

from __future__ import annotations

import pytest

from tests import REPO_ROOT

TESTS = """
import pytest
from tests.skip_rule import require

def test_missing_prerequisite():
    require(False, "chromium is not installed")

def test_plain_skip():
    pytest.skip("flaky today")

@pytest.mark.skip(reason="later")
def test_marked():
    pass

def test_passes():
    pass
"""

IMPORTORSKIP = """
import pytest
missing = pytest.importorskip("a_module_that_does_not_exist")

def test_never_collected():
    pass
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_inner=source)
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the inner run imports tests.skip_rule
    return pytester.runpytest_subprocess("-p", "tests.skip_rule", "-q", "-rA")


def test_off_ci_only_require_may_skip(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(pytester, monkeypatch, "", TESTS)
    result.assert_outcomes(passed=1, skipped=1, failed=1, errors=1)  # a skip mark fails at setup
    result.stdout.fnmatch_lines(["*skipped outside the prerequisite rule (Skipped: flaky today)*"])


def test_in_ci_nothing_skips(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(pytester, monkeypatch, "true", TESTS)
    result.assert_outcomes(passed=1, failed=2, errors=1)
    result.stdout.fnmatch_lines(["*prerequisite missing: chromium is not installed (CI=true: nothing may skip)*"])


def test_a_module_level_importorskip_fails(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(pytester, monkeypatch, "", IMPORTORSKIP)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*skipped outside the prerequisite rule*a_module_that_does_not_exist*"])
