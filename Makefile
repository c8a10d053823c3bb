# Fresh machine: `make demo` runs everything on the embedded defaults; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench schemas dashboards

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[collector,dev]'
	touch $@

# Vietnam's outline for the maps: Natural Earth via npm at install time, never committed
# (docs/api.md); without npm the maps draw no country outline.
OUTLINE := edugap/collector/registry/natural_earth_vietnam.json

install: $(BIN)/.installed $(OUTLINE)

$(OUTLINE): | $(BIN)/.installed
	$(BIN)/python -m edugap.collector.registry.country_outline --optional

demo: install
	$(BIN)/edugap demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

bench: install
	$(BIN)/python bench/run_all.py

schemas: install
	$(BIN)/python -m edugap.protocol.schemagen docs/schema

dashboards: install
	$(BIN)/python dashboards/generate.py
