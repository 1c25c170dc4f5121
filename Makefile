# kinfer: every entry point a developer or CI uses. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
KINFER_CACHE ?= $(HOME)/.cache/kinfer
CLUSTER_DIR ?= $(CURDIR)/.cluster
export KINFER_CACHE CLUSTER_DIR

.PHONY: help venv system-deps crds lint typecheck unit binaries cluster cluster-down e2e test demo demo-down bench clean

include e2e/tools/versions.env
K8S_BIN := $(KINFER_CACHE)/k8s-$(K8S_VERSION)/bin

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## create .venv with the operator, runtime, torch and dev tools

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[operator,runtime,torch,dev]'
	@touch $@

system-deps: ## Debian packages the e2e suite runs for real (Prometheus for canary analysis)
	@command -v prometheus >/dev/null || { \
	  echo "installing Debian's prometheus (canary e2e analysis)"; \
	  $$(command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$(command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] \
	    && echo sudo) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

crds: venv ## regenerate crds/ (and the chart's copy) from the pydantic API
	$(BIN)/python -m kinfer_operator.api.crdgen --out crds
	cp crds/*.yaml charts/kinfer/files/crds/

lint: venv ## ruff check and format check
	$(BIN)/ruff check operator runtime tests e2e bench
	$(BIN)/ruff format --check operator runtime tests e2e bench

typecheck: venv ## mypy --strict on our packages
	$(BIN)/mypy operator/kinfer_operator runtime/kinfer_runtime

unit: venv ## unit tests (no cluster)
	$(BIN)/pytest tests

binaries: ## build the pinned control-plane binaries from the Go module proxy (cached)
	bash e2e/tools/build-binaries.sh

cluster: binaries ## start the local control plane; prints the kubeconfig path
	bash e2e/cluster.sh up

cluster-down: ## stop the local control plane
	bash e2e/cluster.sh down

e2e: venv system-deps cluster ## e2e suite against $$KUBECONFIG_E2E (default: the local cluster)
	PATH=$(K8S_BIN):$$PATH KUBECONFIG=$${KUBECONFIG_E2E:-$(CLUSTER_DIR)/kubeconfig} \
	  $(BIN)/pytest e2e

test: ## everything CI runs: lint, types, unit, control plane, e2e (phases timed)
	bash .ci/phases.sh

demo: venv cluster ## local cluster + operator + sample InferenceModel, shown live
	bash e2e/demo.sh

demo-down: ## stop the demo operator and the cluster
	bash e2e/demo.sh down

bench: venv ## runtime benchmark (prints a markdown table)
	$(BIN)/python bench/runtime.py

clean: cluster-down
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
