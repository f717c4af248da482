# Warden — the targets a newcomer needs.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PKGS    := -e libs/common[server,otel] -e libs/client -e libs/cli -e services/connectors -e services/tool-registry[search] -e services/proxy -e services/audit -e services/console

.PHONY: install peers checkov run test test-e2e lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python  ## install every package (editable) and the dev tools into .venv
	$(BIN)/pip install -q $(PKGS) -r requirements-dev.txt
	$(BIN)/python services/tool-registry/scripts/install_model.py
	$(MAKE) -s peers checkov

checkov:  ## checkov in its own venv (it pins packaging<24, which pytest refuses): tests/deploy runs it
	@[ -x $(VENV)-checkov/bin/checkov ] || { $(PY) -m venv $(VENV)-checkov && \
		$(VENV)-checkov/bin/pip install -q -r deploy/requirements-checkov.txt; }

peers:  ## npm peers used by tests (OAuth authorization server, MCP conformance suite and reference server, axe-core)
	@for d in tests/peers/oidc-provider tests/peers/mcp tests/peers/axe; do \
		if [ -f $$d/package-lock.json ] && [ ! -d $$d/node_modules ]; then \
			(cd $$d && npm ci --no-audit --no-fund --silent) || exit 1; fi; done

run: install  ## run Warden on this machine (NATS, Postgres, four services, the console, demo MCP server)
	$(BIN)/warden run

test: install  ## unit, integration and end-to-end tests (NATS_URL / DATABASE_URL used when set)
	$(BIN)/pytest

test-e2e: install
	$(BIN)/pytest tests/e2e

lint:  ## ruff (format + check) and mypy
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy $(wildcard libs/*/src services/*/src)

bench: install  ## every benchmark, printing ratios against a baseline measured in the same run
	$(BIN)/python -m bench

clean:
	rm -rf .warden .pytest_cache
