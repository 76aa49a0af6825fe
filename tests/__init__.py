"""The test suite. `REPO_ROOT` is the checkout the tests read repository files from (the
production package never knows where a checkout is: installed, it has none)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
