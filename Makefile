# eoshare — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= eoshare-data
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help venv demo serve test lint typecheck pytest bench clean web browser clients postgres openeo-suite nginx

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml scripts/bootstrap.sh
	@bash scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

venv: $(STAMP)  ## create the virtual environment and install eoshare with its dev tools

web: $(STAMP)  ## vendor the web UI's npm packages (web/package-lock.json) into the package
	$(BIN)/python scripts/build_web.py

browser:  ## install Debian's chromium for the browser tests, when it is missing
	bash scripts/install-browser.sh

nginx:  ## install Debian's nginx (the X-Accel-Redirect test and the download benchmark), when missing
	bash scripts/install-nginx.sh

postgres:  ## install Debian's PostgreSQL 15 + PostGIS for the pgstac tests, when missing
	bash scripts/install-postgres.sh

demo: $(STAMP) web  ## build the demo data set and serve it on http://127.0.0.1:8000
	$(BIN)/eoshare demo --data-dir $(DATA_DIR) --host $(HOST) --port $(PORT)

serve: $(STAMP)  ## serve an existing data directory
	$(BIN)/eoshare serve --data-dir $(DATA_DIR) --host $(HOST) --port $(PORT)

lint: $(STAMP)  ## ruff (lint + format check)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

typecheck: $(STAMP)  ## mypy --strict on src/
	$(BIN)/mypy

clients:  ## gdal-bin, curl, wget, npm and a STAC Browser build for the client tests (cached)
	bash scripts/install-clients.sh

openeo-suite: $(STAMP)  ## the openEO test suite in its own environment (tests/processing)
	bash scripts/install-openeo-suite.sh "$(PYTHON)" $(VENV)/openeo-suite

pytest: $(STAMP) web browser clients postgres openeo-suite nginx  ## the test suite alone
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest  ## everything CI runs: lint, type check, the whole suite

bench: $(STAMP)  ## benchmarks (never part of make test); figures go to benchmarks/RESULTS.md
	$(BIN)/python benchmarks/bench_catalog.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_access.py
	$(BIN)/python benchmarks/bench_tiles.py
	$(BIN)/python benchmarks/bench_web.py
	$(BIN)/python scripts/crash_anywhere.py --kills 100 --seed 1
	$(BIN)/python benchmarks/load_test.py --clients 64 --seconds 300 --json benchmarks/.work/load-64.json
	bash scripts/install-nginx.sh
	$(BIN)/python benchmarks/bench_downloads.py $(DOWNLOADS_BENCH_ARGS)

clean:  ## remove the environment, caches and the demo data
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(DATA_DIR) benchmarks/.work
