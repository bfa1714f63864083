# The README's commands. Each target sets itself up on a fresh machine (venv, packages, Kafka jars).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JARS   := $(BIN)/python -c "from fleetwatch.kafka_local import ensure_jars; print('Kafka jars:', ensure_jars())"

.PHONY: demo test lint sysdeps unit integration bench schemas clean

## demo: run the whole monitor (local Kafka, workers, embedded ClickHouse) against the demo fleet
demo: $(STAMP)
	@$(JARS)
	$(BIN)/fleetwatch up

## test: lint, then every test (starts its own Kafka broker on 127.0.0.1)
test: $(STAMP) lint sysdeps
	@$(JARS)
	$(BIN)/pytest

# system packages the tests use: Java 17 + Maven (the broker) and Debian's Chromium (browser tests)
sysdeps:
	@command -v java >/dev/null || { apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless; }
	@command -v mvn >/dev/null || { apt-get update -qq && apt-get install -y -qq maven; }
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	@$(JARS)
	$(BIN)/pytest tests/integration

## bench: the benchmarks in bench/ (prints machine and figures)
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	@$(JARS)
	$(BIN)/python bench/detector_throughput.py
	$(BIN)/python bench/detection_latency.py
	$(BIN)/python bench/sink_throughput.py
	$(BIN)/python bench/case_engine.py

## schemas: regenerate the published JSON Schemas of the topics
schemas: $(STAMP)
	$(BIN)/fleetwatch schema export --out docs/schemas

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
