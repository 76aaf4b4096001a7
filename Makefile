# Xylen: `make run` (the demo on embedded defaults) and `make test` (the whole suite).
# Both create .venv when missing and install the pinned set from requirements/lock.txt.

SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.12 python3.11 python3.10 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3,10) <= sys.version_info[:2] <= (3,12))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: run test lint bench install requirements clean help system-deps dashboard

# Debian tools the tests drive for real: command -> package. `make test` installs the missing ones.
SYSTEM_TOOLS := chromium:chromium nginx:nginx promtool:prometheus prometheus:prometheus \
	shellcheck:shellcheck docker-compose:docker-compose systemd-analyze:systemd openssl:openssl

help:
	@echo "make run    - install, then run the demo on the shipped data (xylen demo)"
	@echo "make test   - install, then run the whole test suite"
	@echo "make lint   - ruff (check and format), mypy, bandit"
	@echo "make bench  - benchmarks: features, paper exchange, exchange client, crashes, order store, ensemble, risk,"
	@echo "              decision, training, River, model server, fan-out, beat, backtest, dashboard"
	@echo "make requirements - regenerate coordinator/ and model_server/ requirements.txt"

$(STAMP): pyproject.toml requirements/lock.txt
	@test -n "$(PYTHON)" || { echo "Python 3.10-3.12 is needed (python3.12, python3.11 or python3.10 on PATH)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/xylen demo

test: $(STAMP) system-deps dashboard
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -p no:cacheprovider

# The Debian packages of SYSTEM_TOOLS that are missing, with apt-get (as root, or through sudo).
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
		command -v "$${pair%%:*}" >/dev/null 2>&1 || PATH="$$PATH:/usr/sbin:/sbin" command -v "$${pair%%:*}" >/dev/null 2>&1 \
			|| case " $$missing " in *" $${pair#*:} "*) ;; *) missing="$$missing $${pair#*:}";; esac; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
		else echo "the tests need these Debian packages:$$missing (apt-get install them as root)"; exit 1; fi; \
		echo "installing Debian packages:$$missing"; \
		$$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; \
	fi

# The dashboard's static build (coordinator/dashboard_dist, committed so `make run` needs no Node):
# rebuilt from dashboard/ with npm; without npm, Debian's nodejs and npm are installed first (as root
# or through sudo). Only where neither works (or Node is older than 18.19) the committed build is used.
dashboard:
	@if [ ! -f dashboard/package.json ]; then exit 0; fi; \
	if ! command -v npm >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else sudo="none"; fi; \
		if [ "$$sudo" != none ]; then echo "installing Debian packages: nodejs npm"; \
			$$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends nodejs npm || true; fi; \
	fi; \
	if ! command -v npm >/dev/null 2>&1; then echo "npm not found: using the committed dashboard build"; exit 0; fi; \
	if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>18||(a===18&&b>=19)?0:1)'; then \
		echo "Node $$(node --version) is older than 18.19: using the committed dashboard build"; exit 0; fi; \
	cd dashboard && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error; } \
		&& npm run --silent build

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy xylen coordinator model_server paper_exchange backtest scripts bench
	$(BIN)/bandit -q -r xylen coordinator model_server paper_exchange backtest scripts -x '*/tests/*'

bench: $(STAMP)
	$(BIN)/python bench/bench_features.py
	$(BIN)/python bench/bench_paper_exchange.py
	$(BIN)/python bench/bench_exchange_client.py
	$(BIN)/python bench/bench_orders_crash.py
	$(BIN)/python bench/bench_coordinator_crash.py
	$(BIN)/python bench/bench_order_store.py
	$(BIN)/python bench/bench_ensemble.py
	$(BIN)/python bench/bench_risk.py
	$(BIN)/python bench/bench_decision.py
	$(BIN)/python bench/bench_training.py
	$(BIN)/python bench/bench_river.py
	$(BIN)/python bench/bench_model_server.py
	$(BIN)/python bench/bench_fanout.py
	$(BIN)/python bench/bench_beat.py
	$(BIN)/python bench/bench_backtest.py --days 365 --memory-days 365
	$(BIN)/python bench/bench_dashboard.py
	$(BIN)/python bench/bench_dask_training.py

requirements: $(STAMP)
	$(BIN)/python scripts/gen_requirements.py

clean:
	rm -rf $(VENV) build *.egg-info
