# The two commands a newcomer needs: `make run` and `make test` (see README.md).
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 5000
VENV := .venv
BIN := $(VENV)/bin
DSFR := idp/static/dsfr

.PHONY: run test install assets migrate lint typecheck check bench clean

run: install assets migrate  ## Demo IdP on http://127.0.0.1:5000 (SQLite, in-process Redis, SMTP sink)
	$(BIN)/idp demo --host $(HOST) --port $(PORT)

test: install assets  ## The import layers, then the whole suite (unit, PostgreSQL/Redis integration, Chromium)
	$(BIN)/lint-imports
	$(BIN)/pytest -q $(PYTEST_ARGS)

install: .stamp-install
.stamp-install: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

assets: $(DSFR)/dsfr.min.css
$(DSFR)/dsfr.min.css: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	rm -rf $(DSFR) && mkdir -p $(DSFR)
	cp -r node_modules/@gouvfr/dsfr/dist/. $(DSFR)/
	find $(DSFR) -name '*.map' -delete
	touch $@

migrate: install
	$(BIN)/idp db upgrade

lint:  ## ruff, and the import-linter contracts of pyproject.toml (layers, domain packages)
	$(BIN)/ruff check idp tests
	$(BIN)/lint-imports

typecheck:
	$(BIN)/mypy idp

check: lint typecheck test

bench: install assets  ## Load benchmark (not part of make test)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) node_modules $(DSFR) .stamp-install instance
