# Two commands: `make run` (the pipeline end to end on embedded defaults) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9

.PHONY: run run-production test bench chaos fuzz up down kafka-up kafka-down clean lint audit

# requirements.txt is the production set (the image); requirements-dev.txt adds the local stack,
# the tests and the lint tools, pinned against it.
$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml include/pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	@echo "==> creating $(VENV) and installing pinned requirements (first run only, ~1-2 min)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	@$(BIN)/uv pip install --python $(BIN)/python -r requirements-dev.txt
	@$(BIN)/uv pip install --python $(BIN)/python --no-deps -e include -e .
	@touch $@

MANIFEST := dbt/target/manifest.json
DBT_SOURCES := $(shell find dbt -name '*.sql' -o -name '*.yml' -o -name '*.csv' | grep -v '^dbt/target/')

# Cosmos renders the dbt DAGs from this manifest; `dbt parse` writes it (never at DAG parse time).
$(MANIFEST): $(BIN)/.installed $(DBT_SOURCES)
	@echo "==> dbt parse (Cosmos renders the warehouse DAGs from dbt/target/manifest.json)"
	@$(BIN)/python -c "from metrify.warehouse.dbt_runner import build_manifest; build_manifest()"

run: $(BIN)/.installed $(MANIFEST)
	@$(BIN)/metrify run

# The production shape on one machine: PostgreSQL metadata, scheduler/DAG processor/triggerer/API
# server as separate processes, a real Kafka broker (Java 17, Maven), S3 (moto) and Snowflake
# (fakesnow) stand-ins, the configuration parsed from the Dockerfile and docker-compose.yaml.
PRODUCTION_METERS ?= 500
PRODUCTION_HOURS ?= 24
run-production: $(BIN)/.installed
	@$(BIN)/metrify run --profile production --meters $(PRODUCTION_METERS) --hours $(PRODUCTION_HOURS)

# Lint, format and type checks: part of `make test` (configured in pyproject.toml and .sqlfluff).
lint: $(BIN)/.installed
	@echo "==> ruff (lint), ruff format --check, mypy, sqlfluff"
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy
	@$(BIN)/sqlfluff lint dbt/models dbt/tests

# two workers: this machine's two cores (tests/conftest.py says how the modules are shared out)
TEST_WORKERS ?= 2
test: lint $(MANIFEST)
	@$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# The ingestion benchmark reads one backlog on a real Kafka 4.4 broker (java and mvn; the jars are
# cached in .metrify/kafka-dist) and on the embedded mock one: INGEST_BENCH_ARGS="--brokers mock"
# leaves the real one out, "--messages N --repeats N --processes N" resize it. Measured: 3 min 28 s (2026-11-27 13:29 UTC).
INGEST_BENCH_ARGS ?=
bench: $(BIN)/.installed $(MANIFEST)
	@$(BIN)/python -m metrify_dev.bench.ingest --output bench-results/ingest.json $(INGEST_BENCH_ARGS)
	@$(BIN)/python -m metrify_dev.bench.quality --meters 100000 --anomaly-rate 0.05 --seed 7 --out bench-results/quality.json
	@$(BIN)/python -m metrify_dev.bench.warehouse --meters 1000
	@$(BIN)/python -m metrify_dev.bench.substitutes --meters 200 --out bench-results/substitutes.json
	@$(BIN)/python -m metrify_dev.bench.forecast --meters 4000 --min-meters-per-region 1000 --out bench-results/forecast.json

# The chaos test at full size: 1 million messages on a real broker, drains SIGKILLed 20 times
# (`make test` runs it reduced: 40,000 messages, 8 kills). Measured 2.5 min on 2 cores.
CHAOS_MESSAGES ?= 1000000
CHAOS_KILLS ?= 20
chaos: $(BIN)/.installed $(MANIFEST)
	@CHAOS_MESSAGES=$(CHAOS_MESSAGES) CHAOS_KILLS=$(CHAOS_KILLS) $(BIN)/python -m pytest -p no:cacheprovider \
		tests/integration/test_chaos.py -s

# Coverage-guided fuzzing of the Kafka message decoder (atheris); not part of `make test`, where
# its hypothesis property tests run. Crashes are written as crash-<sha1> in the current folder.
FUZZ_SECONDS ?= 300
fuzz: $(BIN)/.installed
	@$(BIN)/python -m metrify_dev.fuzz_decode -max_total_time=$(FUZZ_SECONDS)

# Known vulnerabilities of the pinned production set (requirements.txt is fully pinned, so no
# resolution). Needs pip-audit's vulnerability service on the network, so it is not part of
# `make test`; --strict fails the target when a package could not be audited, rather than report
# "no known vulnerabilities" for packages it never checked.
audit: $(BIN)/.installed
	@$(BIN)/pip-audit -r requirements.txt --no-deps --disable-pip --strict --progress-spinner off

up: $(BIN)/.installed $(MANIFEST)
	@$(BIN)/metrify up

down: $(BIN)/.installed
	@$(BIN)/metrify down

kafka-up: $(BIN)/.installed
	@$(BIN)/metrify kafka up

kafka-down: $(BIN)/.installed
	@$(BIN)/metrify kafka down

clean:
	-@test -x $(BIN)/metrify && $(BIN)/metrify kafka down
	rm -rf .metrify
