#!/usr/bin/env bash
# `make test`: every check CI runs, in phases, each timed. Fails fast on the first red phase.
# The local control plane is built once (cached under ~/.cache/kinfer) and torn down at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -a SUMMARY=()
phase() {
  local name=$1; shift
  local start=$SECONDS
  echo "::: phase ${name}: $*"
  if "$@"; then
    SUMMARY+=("$(printf '%-14s %5ss  ok' "$name" $((SECONDS - start)))")
  else
    local rc=$?
    SUMMARY+=("$(printf '%-14s %5ss  FAILED' "$name" $((SECONDS - start)))")
    report
    exit "$rc"
  fi
}
report() {
  echo
  echo "::: phase timings"
  printf '  %s\n' "${SUMMARY[@]}"
}
cleanup() {
  [[ -n ${BUILD_PID:-} ]] && kill -- "-$BUILD_PID" 2>/dev/null
  make --no-print-directory cluster-down >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Cold, the Go builds are the long pole: they run beside the venv and the Python checks (the
# venv is mostly downloads). System packages first: runc's build needs libseccomp-dev.
BUILD_LOG="${CLUSTER_DIR:-$PWD/.cluster}/binaries.log"
mkdir -p "$(dirname "$BUILD_LOG")"
set -m  # its own process group, so cleanup can stop the whole build
{ make --no-print-directory system-deps && make --no-print-directory binaries; } >"$BUILD_LOG" 2>&1 &
BUILD_PID=$!
set +m
binaries() {
  local rc=0
  wait "$BUILD_PID" || rc=$?
  BUILD_PID=""
  tail -n 25 "$BUILD_LOG"
  return "$rc"
}

phase venv       make --no-print-directory venv
phase lint       make --no-print-directory lint
phase typecheck  make --no-print-directory typecheck
# shellcheck source=../e2e/tools/versions.env
source e2e/tools/versions.env
K8S_BIN="${KINFER_CACHE:-$HOME/.cache/kinfer}/k8s-$K8S_VERSION/bin"
# Cold, helm is still being built while the unit tests run: its chart tests skip then, and run
# once the binaries are there.
HELM_AT_UNIT=$([[ -x $K8S_BIN/helm ]] && echo yes || echo no)
# Likewise the tracing test against Jaeger: it skips while jaeger is being built, and must run
# (KINFER_REQUIRE_JAEGER=1) once it is there.
JAEGER_AT_UNIT=$([[ -x $K8S_BIN/jaeger ]] && echo yes || echo no)
phase unit       make --no-print-directory unit
phase binaries   binaries
if [[ $HELM_AT_UNIT == no ]]; then
  phase unit-helm  .venv/bin/pytest -q tests/packaging
fi
if [[ $JAEGER_AT_UNIT == no ]]; then
  phase unit-jaeger  env KINFER_REQUIRE_JAEGER=1 .venv/bin/pytest -q tests/runtime/test_tracing_jaeger.py
fi
phase images     bash e2e/images.sh
phase chart      bash e2e/chart-check.sh
# What the host looks like before the cluster and the real node: compared after teardown.
SNAPSHOT="${CLUSTER_DIR:-$PWD/.cluster}/host-before.json"
python3 e2e/node/hostcheck.py snapshot "$SNAPSHOT"
phase cluster    bash e2e/cluster.sh up
phase e2e        env PATH="$K8S_BIN:$PATH" KUBECONFIG="${CLUSTER_DIR:-$PWD/.cluster}/kubeconfig" \
                   bash e2e/run.sh
phase teardown   bash e2e/cluster.sh down
phase hygiene    env KINFER_HOSTCHECK_SNAPSHOT="$SNAPSHOT" .venv/bin/pytest e2e/hygiene -q
report
