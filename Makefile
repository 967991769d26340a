# The commands a newcomer needs. `make test` works on a fresh machine: it creates the virtualenv, installs the
# project with its test extras, builds or unpacks every binary the tests use (cached outside the repo by version,
# see scripts/fetch-binaries.sh) and runs every test tier.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint unit reconcile compat coverage demo bench chaos binaries images install clean crds

test: install binaries lint
	$(BIN)/python -m pytest tests

unit: install
	$(BIN)/python -m pytest tests/unit

# The use cases in-process against the fake GitLab and an in-memory Kubernetes adapter (seconds, no cluster).
reconcile: install
	$(BIN)/python -m pytest tests/reconcile

# The whole e2e tier on the oldest Kubernetes minor the chart supports (KUBERNETES_OLDEST_VERSION in
# scripts/versions.env): control plane and node of that version. `make test` runs only the CRD, CEL and RBAC tests
# (marked oldest_kubernetes) on it. Runs pods: one node per machine (see tests/harness/node.py).
compat: install binaries
	GLRT_KUBERNETES_VERSION=oldest $(BIN)/python -m pytest tests/e2e $(COMPAT_ARGS)

# Line coverage of the reconcile code (every resource's use cases and handlers, the controller runtime, core/) from
# the fast tiers.
coverage: install
	$(BIN)/python -m pytest tests/unit tests/reconcile -q --cov=glrt_operator.runners --cov=glrt_operator.controller \
		--cov=glrt_operator.core --cov=glrt_operator.deploytokens --cov-report=term-missing --cov-fail-under=85

lint: install
	$(BIN)/ruff check operator tests scripts
	$(BIN)/ruff format --check operator tests scripts
	$(BIN)/mypy

# Regenerate the CRDs (crds/ and the chart's files/crds/): the Runner's spec.config from runner_config/keys.json, and
# in both the deprecated versions from the storage version (docs/operations/api-versions.md).
crds: install
	$(BIN)/python scripts/gen-runner-crd.py

demo: install binaries
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

# Prints figures; not part of `make test`. Fleet scale (1,000 Runners; BENCH_ARGS="--runners N --slow-runners M"):
# time to Ready, GitLab calls per Runner, RSS, a new Runner under a slow GitLab, requests per minute vs the budget.
# Then each replica's blackout after a token rotation on a real node (ROTATION_ARGS="--rotations N").
# Then 40 CI jobs through the kubernetes executor while the token rotates and the Runner scales 2 -> 1 (on a node;
# JOBS_ARGS="--jobs N --job-seconds S"). BENCH=fleet, BENCH=rotation or BENCH=jobs runs one part only.
BENCH ?= all
bench: install binaries
	@if [ "$(BENCH)" = all ] || [ "$(BENCH)" = fleet ]; then $(BIN)/python scripts/benchmark.py $(BENCH_ARGS); fi
	@if [ "$(BENCH)" = all ] || [ "$(BENCH)" = rotation ]; then $(BIN)/python scripts/bench_rotation.py $(ROTATION_ARGS); fi
	@if [ "$(BENCH)" = all ] || [ "$(BENCH)" = jobs ]; then $(BIN)/python scripts/bench_jobs.py $(JOBS_ARGS); fi

# Kill points, GitLab faults and the bad-input corpus against the operator; prints figures (see scripts/chaos.py
# for CHAOS_ARGS, e.g. --trials 5 --fault-rate 0.2 --fault-seconds 600). Not part of `make test`.
chaos: install binaries
	$(BIN)/python scripts/chaos.py $(CHAOS_ARGS)

install: $(STAMP)

# Reinstall only when the project's dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

binaries:
	scripts/fetch-binaries.sh

# The node's Debian packages and its images (cached by their inputs; root only). `make test` does this itself
# before the first test that runs pods.
images: binaries
	scripts/setup-node.sh
	scripts/build-images.sh >/dev/null

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
