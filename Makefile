# The README's commands. Each target sets itself up on a fresh machine (venv, packages, Kafka jars).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The lock files `make lock` writes from pyproject.toml: dev = runtime + the dev extra (venv, CI); runtime alone
# (Dockerfile). Resolved for CPython 3.11 (the venv's and the image's) on x86_64 Linux, with hashes.
LOCK_DEV     := requirements/dev.txt
LOCK_RUNTIME := requirements/runtime.txt
# the locks are for CPython 3.11: refuse to build the venv with another one
VENV_PYTHON_OK := test -x $(BIN)/python || $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
                  || { echo "error: the lock files are for Python 3.11: make PYTHON=/path/to/python3.11 ..."; exit 1; }
LOCK_FLAGS   := --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
                --custom-compile-command "make lock"
JARS   := $(BIN)/python -c "from fleetwatch.kafka_local import ensure_jars; print('Kafka jars:', ensure_jars())"

.PHONY: demo test lint paths deps lock sysdeps unit integration bench schemas clean

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

lint: $(STAMP) paths deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# No file may point outside the repository: a sibling checkout (../<dir>) or a path of one machine. The
# patterns are written in pieces so this line does not match itself. Untracked files count too (not ignored ones).
OUTSIDE_PATHS := \.\./share[d]|share[d]/data|"share[d]"|/wor[k]/
paths:
	@if git grep --untracked -n -I -E '$(OUTSIDE_PATHS)' -- .; then \
	    echo "error: the lines above refer to a path outside the repository; vendor what they need instead"; \
	    exit 1; \
	fi

# Every imported package is declared in pyproject.toml ([tool.deptry] there): the packages import only runtime
# dependencies and use every one; tests and bench import only declared packages (runtime, dev or bench).
deps: $(STAMP)
	$(BIN)/deptry .
	$(BIN)/deptry tests bench --exclude '^\.venv/' --ignore DEP002,DEP004

## lock: re-resolve requirements/*.txt after a change of pyproject.toml (pins already there are kept; UPGRADE=1 takes the newest)
lock: $(BIN)/uv
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) -o $(LOCK_DEV)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) --constraint $(LOCK_DEV) -o $(LOCK_RUNTIME)

# uv at the dev lock's version, for `make lock` even when the venv no longer matches pyproject.toml
$(BIN)/uv:
	@$(VENV_PYTHON_OK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$$(sed -n 's/^\(uv==[^ ]*\).*/\1/p' $(LOCK_DEV))"

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	@$(JARS)
	$(BIN)/pytest tests/integration

## bench: the benchmarks in bench/ (prints machine and figures)
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	@# quixstreams pins pydantic differently: the venv no longer matches the dev lock, the next target re-installs it
	rm -f $(STAMP)
	@$(JARS)
	$(BIN)/python bench/detector_throughput.py
	$(BIN)/python bench/detection_latency.py
	$(BIN)/python bench/sink_throughput.py
	$(BIN)/python bench/case_engine.py

## schemas: regenerate the published JSON Schemas of the topics
schemas: $(STAMP)
	$(BIN)/fleetwatch schema export --out docs/schemas

# The venv: the dev lock's exact packages (hash-checked), then the project itself without resolving anything.
# The dry run (no index: installed packages only) fails when pyproject.toml asks for something the lock lacks.
$(STAMP): $(LOCK_DEV) pyproject.toml
	@$(VENV_PYTHON_OK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r $(LOCK_DEV)
	$(BIN)/pip install -q --no-deps -e .
	@$(BIN)/pip install -q --dry-run --no-index 'fleetwatch[dev]' || { \
	    echo "error: $(LOCK_DEV) does not satisfy pyproject.toml: run make lock"; exit 1; }
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
