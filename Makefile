# kinfer: every entry point a developer or CI uses. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
KINFER_CACHE ?= $(HOME)/.cache/kinfer
CLUSTER_DIR ?= $(CURDIR)/.cluster
export KINFER_CACHE CLUSTER_DIR

.PHONY: help venv system-deps crds lint typecheck unit binaries cluster-binaries images cluster cluster-down e2e test demo demo-down bench bench-operator clean

include e2e/tools/versions.env
K8S_BIN := $(KINFER_CACHE)/k8s-$(K8S_VERSION)/bin

# Only this file: MAKEFILE_LIST also holds the included versions.env, and grep given two
# files prefixes every line with its file name.
help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## create .venv with the operator, runtime, torch and dev tools

# The third-party packages come from a venv under $(KINFER_CACHE) keyed by pyproject.toml's
# hash (.ci/venv.sh); .venv holds kinfer itself, editable from this clone.
$(VENV)/.installed: pyproject.toml .ci/venv.sh
	PYTHON=$(PYTHON) bash .ci/venv.sh $(VENV) operator,runtime,torch,dev
	@touch $@

# Debian packages the real node needs: buildah and mmdebstrap (images without Docker),
# nftables/iptables/conntrack (kube-proxy, kubelet), socat (the API server relay),
# libseccomp-dev and gcc (runc's seccomp, built with cgo). Prometheus is built by
# `make binaries`: Debian's has no Kubernetes service discovery. nodejs and npm (separate
# packages on Debian; bookworm's node is 18): s3rver and azurite, the S3 and Azure Blob
# implementations the object-store e2e runs (e2e/tools/objectstores.sh; fake-gcs-server is
# built with Go like the binaries). Stock bookworm packages only: e2e/tools/fresh-host-check.sh
# installs this list in a clean bookworm root and starts the npm servers there. A host whose
# nodejs comes from elsewhere (NodeSource's bundles npm, and conflicts with Debian's npm) keeps
# the npm it has.
SYSTEM_PACKAGES := buildah mmdebstrap nftables iptables conntrack socat libseccomp-dev gcc nodejs npm
system-deps: ## Debian packages the e2e suite needs (buildah, mmdebstrap, netfilter tools, nodejs, npm)
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
	    | grep -q 'install ok installed' || { [ $$p = npm ] && command -v npm >/dev/null; } \
	    || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  sudo=$$(command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
	    --no-install-recommends $$missing >/dev/null; \
	fi

crds: venv ## regenerate crds/ (and the chart's copy) from the pydantic API
	$(BIN)/python -m kinfer_operator.api.crdgen --out crds
	cp crds/*.yaml charts/kinfer/files/crds/

lint: venv ## ruff check and format check
	$(BIN)/ruff check operator runtime tests e2e bench
	$(BIN)/ruff format --check operator runtime tests e2e bench

typecheck: venv ## mypy --strict on our packages
	$(BIN)/mypy operator/kinfer_operator runtime/kinfer_runtime runtime/kinfer_activator

unit: venv ## unit tests (no cluster)
	$(BIN)/pytest tests

# What the cluster (and so `make demo`) runs; the tests also need Traefik (the real lane's
# gateway), kubeconform (chart checks) and the object-store servers, built by `binaries`.
CLUSTER_GROUPS := kubernetes etcd kwok metrics-server helm node containerd runc cni crictl pause prometheus

binaries: ## build every pinned binary the tests use from the Go module proxy (cached)
	bash e2e/tools/build-binaries.sh
	bash e2e/tools/objectstores.sh

cluster-binaries: ## build only the pinned binaries the cluster and the demo run (cached)
	bash e2e/tools/build-binaries.sh $(CLUSTER_GROUPS)

images: system-deps cluster-binaries ## build the operator, runtime (CPU) and pause images with buildah (cached)
	bash e2e/images.sh

cluster: system-deps cluster-binaries ## start the control plane, kwok nodes and the real node; prints the kubeconfig path
	bash e2e/cluster.sh up

cluster-down: ## stop the control plane and the real node; leaves nothing on the host
	bash e2e/cluster.sh down

# With KUBECONFIG_E2E (your own cluster) no local cluster starts, and the cases that need
# it skip (KINFER_E2E_CLUSTER=own; README, "The kind path").
e2e: venv $(if $(KUBECONFIG_E2E),,system-deps binaries cluster) ## e2e suite against KUBECONFIG_E2E (default: the local cluster), both lanes side by side
	PATH=$(K8S_BIN):$$PATH KUBECONFIG=$(or $(KUBECONFIG_E2E),$(CLUSTER_DIR)/kubeconfig) \
	  KINFER_E2E_CLUSTER=$(if $(KUBECONFIG_E2E),own,local) PYTEST=$(BIN)/pytest bash e2e/run.sh

test: ## everything CI runs: lint, types, unit, images, cluster, e2e on both lanes, teardown check
	bash .ci/phases.sh

demo: venv cluster ## local cluster + operator + sample InferenceModel, shown live
	bash e2e/demo.sh

demo-down: ## stop the demo operator and the cluster
	bash e2e/demo.sh down

bench: venv ## runtime, activator and least-queue benchmarks (print markdown tables)
	$(BIN)/python bench/runtime.py
	$(BIN)/python bench/cache_tracing.py
	$(BIN)/python bench/activator.py
	$(BIN)/python bench/least_queue.py

bench-operator: venv cluster ## operator at 100/500/1000 models vs direct apply (kwok lane; prints tables)
	PATH=$(K8S_BIN):$$PATH KUBECONFIG=$(CLUSTER_DIR)/kubeconfig $(BIN)/python bench/operator_scale.py

clean: cluster-down
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
