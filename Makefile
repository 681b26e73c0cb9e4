# bioims: `make test` and `make demo` bootstrap everything they need (virtualenv, pip, npm) on a fresh
# machine; a second run reuses what exists (the stamp files below change only when their inputs do).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PIP    := $(PY) -m pip
export BIOIMS_HOME ?= $(CURDIR)/.bioims
# pytest workers: 2 cores -> 2 workers
WORKERS ?= 2

.PHONY: setup test test-unit test-integration demo bench clean help

help:
	@echo "make demo    bootstrap, then run the walkthrough (bioims demo)"
	@echo "make test    bootstrap, then run every test"
	@echo "make bench   bootstrap, then print the benchmarks"
	@echo "make clean   remove the virtualenv, node_modules and local state"

setup: $(VENV)/.installed node_modules/.installed

# The venv: pip pinned below 26.3 (chalice's requirement); torch from the exact CPU pin in shared/pyproject.toml.
$(VENV)/.installed: shared/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet "pip<26.3"
	$(PIP) install --quiet -e "shared[ml,dev]"
	$(PIP) check
	touch $@

# dynalite (the local DynamoDB) from the committed lock file.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: setup
	$(BIN)/pytest -n $(WORKERS) tests

test-unit: setup
	$(BIN)/pytest -n $(WORKERS) tests/unit

test-integration: setup
	$(BIN)/pytest -n $(WORKERS) tests/integration

demo: setup
	$(BIN)/bioims demo

bench: setup
	$(PY) benchmarks/run.py

clean:
	-$(BIN)/bioims down 2>/dev/null
	rm -rf $(VENV) node_modules .bioims
