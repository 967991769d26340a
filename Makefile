# The commands a newcomer needs. `make test` works on a fresh machine: it creates the virtualenv, installs the
# project with its test extras, builds or unpacks every binary the tests use (cached outside the repo by version,
# see scripts/fetch-binaries.sh) and runs every test tier.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint unit reconcile coverage demo bench binaries install clean

test: install binaries lint
	$(BIN)/python -m pytest tests

unit: install
	$(BIN)/python -m pytest tests/unit

# The use cases in-process against the fake GitLab and an in-memory Kubernetes adapter (seconds, no cluster).
reconcile: install
	$(BIN)/python -m pytest tests/reconcile

# Line coverage of the reconcile code (the Runner use cases, the handlers, core/) from the fast tiers.
coverage: install
	$(BIN)/python -m pytest tests/unit tests/reconcile -q --cov=glrt_operator.runners --cov=glrt_operator.handlers \
		--cov=glrt_operator.core --cov=glrt_operator.deploytokens --cov-report=term-missing --cov-fail-under=85

lint: install
	$(BIN)/ruff check operator tests scripts
	$(BIN)/ruff format --check operator tests scripts
	$(BIN)/mypy

demo: install binaries
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

# Prints figures (GitLab API calls per minute, time to Ready) for 1 and 50 Runners; not part of `make test`.
bench: install binaries
	$(BIN)/python scripts/benchmark.py $(BENCH_ARGS)

install: $(STAMP)

# Reinstall only when the project's dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

binaries:
	scripts/fetch-binaries.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
