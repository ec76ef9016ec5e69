# The front door. Every verb is listed by `make help`; logic lives in tritonops/ and the folders.
# Versions, ports and paths come from versions.env (override any of them: make serve HTTP_PORT=9000).
include versions.env

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
URL ?= localhost:$(HTTP_PORT)
GRPC_URL ?= $(firstword $(subst :, ,$(URL))):$(GRPC_PORT)
REPO ?= $(MODEL_REPOSITORY)

.PHONY: help venv serve smoke validate train test test-fast lint lock clean

help: ## list every verb
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The virtualenv is rebuilt only when the pins change: a second `make serve` starts at once.
$(VENV_STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements.lock -e .
	touch $@

venv: $(VENV_STAMP) ## create .venv with every pinned dependency

lock: ## re-freeze requirements.lock from pyproject.toml's pins
	rm -rf .cache/lock-venv && $(PYTHON) -m venv .cache/lock-venv
	.cache/lock-venv/bin/pip install --quiet --upgrade pip && .cache/lock-venv/bin/pip install --quiet -e .
	.cache/lock-venv/bin/pip freeze --exclude-editable > requirements.lock

serve: $(VENV_STAMP) ## run the real Triton (wheel) on this machine: HTTP_PORT/GRPC_PORT/METRICS_PORT, REPO
	$(VENV)/bin/tritonops serve --repository $(REPO) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

smoke: $(VENV_STAMP) ## send the seed request over HTTP JSON/binary + gRPC to URL (default localhost:8000)
	$(VENV)/bin/tritonops smoke --url $(URL) --grpc-url $(GRPC_URL)

validate: $(VENV_STAMP) ## validate a model repository (REPO=path, default model_repository)
	$(VENV)/bin/tritonops validate $(REPO)

train: $(VENV_STAMP) ## re-fit the linear model and rewrite its committed weights
	$(VENV)/bin/tritonops train

lint: $(VENV_STAMP) ## ansible-lint (production profile, offline) and syntax checks
	$(VENV)/bin/python -m pytest -q tests/test_lint.py

test: $(VENV_STAMP) ## run the whole test suite (what CI runs)
	$(VENV)/bin/python -m pytest

test-fast: $(VENV_STAMP) ## tests that need no Docker engine or test host
	$(VENV)/bin/python -m pytest -m "not docker and not testhost"

clean: ## remove the virtualenv, caches and reports
	rm -rf $(VENV) .cache reports .pytest_cache
