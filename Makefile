# The two commands of the README are the contract: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
AMQP_URL ?= amqp://guest:guest@localhost:5672/
export AMQP_URL

.PHONY: install run test soak bench screenshots cluster cluster-down lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Ctrl-C, a SIGTERM to make, or any one service exiting stops them all, each with one SIGTERM.
# They run in sessions of their own (setsid), so a Ctrl-C reaches them only as that SIGTERM.
run: export INTEGRATOR_ALLOW_PRIVATE_ENDPOINTS ?= true  # endpoints on this machine, for trying it out
run: install ## start gateway, validator, router, ledger, deliverer and console against AMQP_URL and INTEGRATOR_DATABASE_URL
	@$(BIN)/python -m integrator.check_broker
	@$(BIN)/integrator db upgrade  # creates the ledger's database if it is missing
	@$(BIN)/integrator tokens dev  # a development store and its token, on the first run
	@pids=(); \
	stop() { trap '' INT TERM; kill -TERM "$${pids[@]}" 2>/dev/null; wait "$${pids[@]}"; }; \
	trap 'stop; exit 130' INT; trap 'stop; exit 143' TERM; \
	for service in validator router ledger deliverer console gateway; do setsid $(BIN)/integrator-$$service & pids+=($$!); done; \
	wait -n "$${pids[@]}"; status=$$?; stop; exit $$status

test: install ## the whole suite against the broker at AMQP_URL
	$(BIN)/ruff check .
	@$(BIN)/python -m integrator.check_broker
	$(BIN)/pytest -q

SOAK_MESSAGES ?= 3000
soak: install ## the fault tests with SOAK_MESSAGES each; numbers to soak-report.jsonl
	rm -f soak-report.jsonl
	INTEGRATOR_FAULT_MESSAGES=$(SOAK_MESSAGES) INTEGRATOR_FAULT_REPORT=soak-report.jsonl \
		$(BIN)/pytest -q -s tests/test_faults.py

bench: install ## throughput, latency, CPU and memory against a plain reference; needs wrk
	@command -v wrk >/dev/null || { echo "make bench needs wrk: apt-get install wrk"; exit 1; }
	@$(BIN)/python -m integrator.check_broker
	$(BIN)/python -m bench | tee bench-report.md

screenshots: install ## the console's pages, as docs/console.md shows them, taken in chromium by its tests
	mkdir -p docs/console
	INTEGRATOR_SCREENSHOTS=docs/console $(BIN)/pytest -q tests/test_console.py -k "pages_at or highlighted"

CLUSTER_DIR ?= $(or $(TMPDIR),/tmp)/integrator-cluster
cluster: install ## three RabbitMQ nodes clustered on this machine (never its own broker); prints AMQP_URL
	@$(BIN)/python -m tests.support.cluster up $(CLUSTER_DIR)

cluster-down: install ## stops the nodes of `make cluster` and deletes their data
	@$(BIN)/python -m tests.support.cluster down $(CLUSTER_DIR)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
