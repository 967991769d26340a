# The commands a newcomer needs. `make test` works on a fresh machine: it creates the virtualenv, installs the
# project with its test extras, builds or unpacks every binary the tests use (cached outside the repo by version,
# see scripts/fetch-binaries.sh) and runs every test tier.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint unit demo bench binaries install clean

test: install binaries lint
	$(BIN)/python -m pytest tests

unit: install
	$(BIN)/python -m pytest tests/unit

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
