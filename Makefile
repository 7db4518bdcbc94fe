# Local development of the painting simulator DAG package. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# Python 3.11: python3.11, else python3 if it is 3.11 (CHECK_PYTHON verifies it).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
CHECK_PYTHON = @test -n "$(PYTHON)" && $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
	|| { echo "error: Python 3.11 is required (python3.11 not found, python3 is not 3.11)" >&2; exit 1; }

.PHONY: help install system-packages run airflow test test-fast lint lock clean-local bench

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# make run needs only these two (no root): the Debian packages are for make test and make bench.
install: $(VENV)/.installed node_modules/.installed ## Install what make run needs, if missing: .venv (pinned), Azurite (npm ci); no root

$(PY):
	$(CHECK_PYTHON)
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(PY) requirements.txt requirements-dev.txt requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c requirements.lock
	@touch $@

node_modules/.installed: package.json package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null \
		|| { echo "error: Node.js 20 with npm is required (for Azurite)" >&2; exit 1; }
	npm ci --no-audit --no-fund
	@touch $@

system-packages: ## Install the Debian packages of make test / make bench (PostgreSQL, Redis, Chromium, wrk) if missing; root or sudo
	@bash scripts/install_system_packages.sh

run: install ## Start Azurite, the model service and Airflow on 127.0.0.1 (Ctrl-C stops all)
	$(PY) -m scripts.run_local

# ARGS is split by the shell: quote JSON, e.g. ARGS="dags trigger painting_simulator -c '{\"batch_size\": 100}'"
airflow: $(VENV)/.installed ## Airflow CLI with make run's environment: make airflow ARGS="dags list"
	@$(PY) -m scripts.airflow_cli $(ARGS)

test: install system-packages lint ## Lint, then run the whole test suite (installs the Debian packages first)
	$(PY) -m pytest

# The edit-test loop: no services, no Airflow started; make test stays the whole suite.
test-fast: lint ## Lint, unit tests, DAG validation and the tests' layout (well under a minute; no services)
	$(PY) -m pytest tests/unit_tests tests/dag_validation_tests tests/layout_tests

lint: $(VENV)/.installed ## ruff check and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lock: ## Regenerate requirements.lock from a clean venv
	$(CHECK_PYTHON)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT \
	&& $(PYTHON) -m venv "$$tmp/venv" \
	&& "$$tmp/venv/bin/pip" install --quiet --disable-pip-version-check -r requirements-dev.txt \
	&& { echo "# Full lock of requirements-dev.txt, used as a pip constraints file:"; \
	     echo "#   pip install -r requirements-dev.txt -c requirements.lock"; \
	     echo "# Generated from a clean Python 3.11 venv; regenerate with \`make lock\` after changing"; \
	     echo "# requirements.txt or requirements-dev.txt."; \
	     "$$tmp/venv/bin/pip" freeze; } > requirements.lock.new \
	&& mv requirements.lock.new requirements.lock
	@echo "requirements.lock regenerated"

clean-local: ## Remove the local stack state (.airflow/, .local/); keeps .venv and node_modules
	@echo "Removing .airflow/ and .local/ (Airflow DB, password, ledgers, Azurite data, logs)"
	rm -rf .airflow .local

bench: install system-packages ## Performance ratios: DAG parse, tick cost, replay vs wrk per results store, replay memory (BENCH_SMOKE=1: tiny)
	$(PY) -m scripts.bench $(if $(BENCH_SMOKE),--smoke)
