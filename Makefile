# Everything runs from a virtualenv built from pyproject.toml (python3 >= 3.11).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -n 2

.PHONY: install demo test test-fast lint typecheck check clean chaos bench bench-million

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# PortOne's official client for the contract test; --no-deps: it pins requests==2.26.0,
	# which needs urllib3 1.x (selenium needs 2.x); it works with the requests we have
	$(BIN)/python -m pip install --quiet --no-deps 'iamport-rest-client==0.9.0'
	touch $@

install: $(VENV)/.installed

demo: install ## a simulated year of billing in the bundled sandbox (no PostgreSQL or Redis)
	$(BIN)/billing demo

test: install ## the whole suite (needs PostgreSQL; see README)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install ## the pure tier: state machines, calendars, classification (seconds, no services)
	$(BIN)/python -m pytest tests/unit -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

chaos: install ## the chaos run: 1,000 subscriptions, 3 months, kills and restarts (about 8 min)
	$(BIN)/python -m chaos $(CHAOS_ARGS)

bench: install ## throughput beside Celery's ceiling, idle pass and memory (see README)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-million: install ## opt-in: 1,000,000 due at once at 300 ms, invariants checked (about 40 min); MILLION_ARGS="--subscriptions 50000"
	$(BIN)/python -m bench.million $(MILLION_ARGS)

clean:
	rm -rf $(VENV) billing.db .pytest_cache .mypy_cache .ruff_cache
