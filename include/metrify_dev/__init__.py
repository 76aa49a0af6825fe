"""The local stack and measurement tools: CLI, embedded broker and PostgreSQL, simulator, fake
APIs, benchmarks. Never imported by the production package `metrify`.

`REPO_ROOT` is the checkout: the dev package is only ever installed editable from it."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
