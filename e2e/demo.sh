#!/usr/bin/env bash
# `make demo`: the local control plane, the CRDs, the operator, a sample InferenceModel going
# Ready on fake GPU nodes, then a model-version bump rolled out live. `make demo-down` undoes it.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=tools/versions.env
source e2e/tools/versions.env
export PATH="${KINFER_CACHE:-$HOME/.cache/kinfer}/k8s-$K8S_VERSION/bin:$PATH"
CLUSTER_DIR=${CLUSTER_DIR:-$PWD/.cluster}
DEMO_DIR=$PWD/.demo
NS=kinfer-demo
export KUBECONFIG=$CLUSTER_DIR/kubeconfig

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

stop_pidfile() {
  if [[ -f $1 ]]; then
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    # The data plane stops its runtimes and Prometheus on SIGTERM; give it time, then insist.
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$1"
  fi
}
stop_operator() {
  stop_pidfile "$DEMO_DIR/operator.pid"
  stop_pidfile "$DEMO_DIR/dataplane.pid"
}

if [[ ${1:-up} == down ]]; then
  stop_operator
  bash e2e/cluster.sh down
  exit 0
fi

# Show the model and its pods each time something changes, until the condition holds.
watch_until() {
  local what=$1 check=$2 deadline=$((SECONDS + ${3:-120})) last=""
  while ((SECONDS < deadline)); do
    local now
    now=$(kubectl get im -n "$NS" -o wide 2>/dev/null; echo "rollout: $(rollout_line)"; echo; \
          kubectl get pods -n "$NS" -o wide --sort-by=.metadata.creationTimestamp 2>/dev/null \
            | awk '{print $1, $2, $3, $7}' | column -t)
    if [[ $now != "$last" ]]; then
      printf '\n--- %s (+%ss)\n%s\n' "$(date +%T)" "$SECONDS" "$now"
      last=$now
    fi
    if eval "$check"; then say "$what"; return 0; fi
    sleep 1
  done
  echo "timed out waiting: $what" >&2
  return 1
}

rollout_line() {
  kubectl get im resnet50 -n "$NS" -o jsonpath='{.status.rollout.phase} weight {.status.rollout.weight}% analysis {.status.rollout.lastAnalysis.decision} {.status.rollout.lastAnalysis.message}' 2>/dev/null
}
stable_version() {
  kubectl get im resnet50 -n "$NS" -o jsonpath='{.status.stableModelVersion}' 2>/dev/null
}
is_ready() {
  [[ $(kubectl get im resnet50 -n "$NS" \
       -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

mkdir -p "$DEMO_DIR"
say "Installing the InferenceModel CRD"
kubectl apply --server-side --force-conflicts -f crds/
kubectl wait --for=condition=Established crd/inferencemodels.serving.kinfer.io --timeout=60s

stop_operator
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl delete im --all -n "$NS" --wait=true >/dev/null 2>&1 || true

say "Starting the stand-in data plane: Prometheus + one real kinfer-runtime per revision"
echo "    (kwok pods run no containers; see e2e/dataplane.py. Log: $DEMO_DIR/dataplane.log)"
rm -f "$DEMO_DIR/prometheus-url"
.venv/bin/python e2e/demo_dataplane.py --namespace "$NS" --model resnet50 \
  --workdir "$DEMO_DIR/dataplane" --prometheus-url-file "$DEMO_DIR/prometheus-url" \
  >"$DEMO_DIR/dataplane.log" 2>&1 &
echo $! >"$DEMO_DIR/dataplane.pid"
for _ in $(seq 120); do [[ -s $DEMO_DIR/prometheus-url ]] && break; sleep 0.5; done
[[ -s $DEMO_DIR/prometheus-url ]] || { tail -20 "$DEMO_DIR/dataplane.log"; exit 1; }

say "Starting the operator (log: $DEMO_DIR/operator.log)"
KINFER_PROMETHEUS_URL=$(cat "$DEMO_DIR/prometheus-url") \
  .venv/bin/kinfer-operator --log-format plain --health-port 0 --metrics-port 0 \
  >"$DEMO_DIR/operator.log" 2>&1 &
echo $! >"$DEMO_DIR/operator.pid"

say "Nodes: two fake GPU nodes (8 GPUs each) and a CPU node"
kubectl get nodes -L nvidia.com/gpu.product,nvidia.com/gpu.present

say "Applying examples/canary.yaml (model version 1, 1 H100 per replica, 4 replicas)"
kubectl apply -n "$NS" -f examples/canary.yaml
watch_until "resnet50 is Ready" is_ready 120

say "Bumping the model to version 2 (as a git commit would): canary 25% -> 50% -> 75%"
sed 's/version: "1"/version: "2"/' examples/canary.yaml | kubectl apply -n "$NS" -f -
watch_until "version 2 passed every step and is stable" \
  '[[ $(stable_version) == 2 ]] && is_ready' 240

say "Status and events"
kubectl get im resnet50 -n "$NS" -o yaml | sed -n '/^status:/,$p'
kubectl get events -n "$NS" --field-selector involvedObject.kind=InferenceModel \
  --sort-by=.lastTimestamp
say "Done. The cluster and operator keep running; KUBECONFIG=$KUBECONFIG. Tear down: make demo-down"
