# Fresh machine: `make demo` runs everything on the embedded defaults; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench schemas dashboards dist agent-bundle

# urllib3-future (under grafana-client, the `grafana` extra) is built in cohabitation mode first:
# its wheel would replace urllib3 for every package here (requests, schemathesis); built this
# way it lives beside urllib3 as urllib3_future, which is all niquests needs.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	URLLIB3_NO_OVERRIDE=1 $(BIN)/pip install -q --no-cache-dir --no-binary urllib3-future \
		urllib3-future urllib3
	$(BIN)/pip install -q -e '.[collector,grafana,dev]'
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

# The sdist and the wheel in dist/ (built in an isolated environment: setuptools from the index).
dist: install
	rm -rf dist/edugap-*.tar.gz dist/edugap-*.whl
	$(BIN)/python -m build --sdist --wheel --outdir dist .

# The agent's offline bundle (dist/edugap-agent-VERSION-offline.zip): the wheel and every
# dependency for Windows and Linux on each supported CPython, both installers, the example
# config, a README and SHA-256 sums. Needs network to the package index while it builds.
agent-bundle: dist
	$(BIN)/python deploy/agent/make_bundle.py --wheel $$(ls dist/edugap-*-py3-none-any.whl) --out dist
