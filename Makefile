# Tributary: `make up` runs the platform locally with a demo; `make test` runs the tests.
# Both install what is missing (Debian packages, a Python venv, FerretDB built from its Go module).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := -e libs/common -e libs/client -e services/hub -e services/ingest -e services/stream
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup tools console images services services-down services-status test test-fast lint format up clean bench bench-handlers soak

setup: $(STAMP) ## venv with every package installed editable, pinned by constraints.txt

$(STAMP): constraints.txt requirements-dev.txt libs/*/pyproject.toml services/*/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt $(PACKAGES) -r requirements-dev.txt
	@touch $@

# What the tests check documents and rules with: the official AsyncAPI JSON Schemas (npm `@asyncapi/specs`,
# pinned) and promtool (Debian's `prometheus` package); Debian's `chromium`, which Playwright (pip, pinned) drives
# in tests/console (Playwright's own browser download is never used).
TOOLS := .local/tools
ASYNCAPI_SPECS_VERSION := 6.11.1
ASYNCAPI_SPECS := $(TOOLS)/node_modules/@asyncapi/specs/package.json

tools: $(ASYNCAPI_SPECS) ## the AsyncAPI schemas, promtool, and Chromium for the console's browser tests
	@command -v promtool >/dev/null || deploy/local/services.sh packages prometheus
	@test -x /usr/bin/chromium || deploy/local/services.sh packages chromium

$(ASYNCAPI_SPECS): Makefile
	@command -v npm >/dev/null || deploy/local/services.sh packages npm
	npm install --silent --no-audit --no-fund --no-save --prefix $(TOOLS) @asyncapi/specs@$(ASYNCAPI_SPECS_VERSION)
	@touch $@

# The console's chart library (uPlot) and the checker of its JSDoc types (TypeScript), both from npm, pinned. uPlot
# is copied into the hub's package (gitignored: built in, never committed; the image takes it from there).
CONSOLE_TOOLS := $(TOOLS)/console
UPLOT_VERSION := 1.6.32
TYPESCRIPT_VERSION := 5.9.3
CONSOLE_VENDOR := services/hub/src/tributary_hub/console/vendor
TSC := $(CONSOLE_TOOLS)/node_modules/.bin/tsc

console: $(CONSOLE_VENDOR)/uPlot.min.js ## uPlot into the hub's console assets, TypeScript for `make lint`

$(CONSOLE_TOOLS)/.installed: Makefile
	@command -v npm >/dev/null || deploy/local/services.sh packages npm
	npm install --silent --no-audit --no-fund --no-save --prefix $(CONSOLE_TOOLS) uplot@$(UPLOT_VERSION) typescript@$(TYPESCRIPT_VERSION)
	@touch $@

# The minified build (51 KB; the ES module build is 145 KB unminified), its types for tsc, its CSS and licence.
$(CONSOLE_VENDOR)/uPlot.min.js: $(CONSOLE_TOOLS)/.installed
	@mkdir -p $(CONSOLE_VENDOR)
	cd $(CONSOLE_TOOLS)/node_modules/uplot && cp dist/uPlot.d.ts dist/uPlot.min.css LICENSE $(CURDIR)/$(CONSOLE_VENDOR)/
	cp $(CONSOLE_TOOLS)/node_modules/uplot/dist/uPlot.iife.min.js $@

images: console ## the three images (PYTHON_DIGEST: the digest of python:3.11.13-slim-bookworm, deploy/README.md)
	@test -n "$(PYTHON_DIGEST)" || { echo "PYTHON_DIGEST is required (deploy/README.md, Images)" >&2; exit 1; }
	for svc in hub ingest stream; do docker build --build-arg PYTHON_DIGEST=$(PYTHON_DIGEST) -f deploy/docker/$$svc.Dockerfile -t tributary-$$svc:0.1.0 . || exit 1; done

services: ## start RabbitMQ, Memcached, FerretDB and Mosquitto (idempotent; waits until each answers)
	deploy/local/services.sh up

services-down: ## stop them
	deploy/local/services.sh down

services-status:
	deploy/local/services.sh status

test: setup tools console services ## everything the tests need, then the tests
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup console
	$(TSC) -p services/hub/src/tributary_hub/console/jsconfig.json
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/common/src libs/client/src services/hub/src services/ingest/src services/stream/src tests deploy/local/demo.py $(wildcard bench/*.py bench/*/*.py)

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

up: setup console services ## the whole platform with a demo
	@if [ -x deploy/local/up.sh ]; then deploy/local/up.sh; else echo "platform services are running; the Tributary services are not built yet"; fi

bench: setup services ## every benchmark but the soak, each with its baseline in the same run (HTTP load: wrk)
	@command -v wrk >/dev/null || deploy/local/services.sh packages wrk
	@export BENCH_RATIOS_FILE=$$(mktemp); \
	for b in bench/*.py; do case $$b in bench/soak.py|bench/ferretdb_handlers.py) continue;; esac; echo "== $$b"; $(BIN)/python $$b || exit 1; done; \
	$(BIN)/python bench/support/ratios.py $$BENCH_RATIOS_FILE; rm -f $$BENCH_RATIOS_FILE

bench-handlers: setup services ## FerretDB on SQLite against FerretDB on PostgreSQL, on the storage benches (bench/ferretdb_handlers.py)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || deploy/local/services.sh packages postgresql
	$(BIN)/python bench/ferretdb_handlers.py

soak: setup services ## ten minutes of steady load on the whole platform; memory of each process (bench/soak.py)
	$(BIN)/python bench/soak.py

clean: services-down
	rm -rf $(VENV) .local .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
