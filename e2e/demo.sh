#!/usr/bin/env bash
# `make demo`: the local control plane with its real node, the operator installed by Helm from
# its image, a real model answering real images through its Service, then a model-version bump
# rolled out live as a canary judged by Prometheus. `make demo-down` undoes it.
#
# The model is the digits bundle (e2e/digits.py): a small CNN trained here in seconds on
# scikit-learn's bundled handwritten digits, with its labels and handler, served from a
# PersistentVolume on the real node; the held-out digits, as PNGs, are the requests, and the
# answers are labels checked against the truth.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=tools/versions.env
source e2e/tools/versions.env
export PATH="${KINFER_CACHE:-$HOME/.cache/kinfer}/k8s-$K8S_VERSION/bin:$PATH"
CLUSTER_DIR=${CLUSTER_DIR:-$PWD/.cluster}
DEMO_DIR=$PWD/.demo
NS=kinfer-demo
export KUBECONFIG=$CLUSTER_DIR/kubeconfig
# The real node's state dir (e2e/node.sh); `node.sh down` removes it, and the digits volume
# with it: nothing of the demo lives elsewhere on the host.
NODE_DIR=${KINFER_NODE_DIR:-/var/lib/kinfer-node}
DIGITS_DIR=$NODE_DIR/volumes/$NS-digits

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

stop_pidfile() {
  if [[ -f $1 ]]; then
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    # Prometheus and the load client stop on SIGTERM; give them time, then insist.
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$1"
  fi
}
stop_demo() {
  if [[ -f $KUBECONFIG ]]; then
    helm uninstall kinfer -n kinfer-system --wait >/dev/null 2>&1 || true
    kubectl -n kinfer-system delete lease kinfer --ignore-not-found >/dev/null 2>&1 || true
  fi
  stop_pidfile "$DEMO_DIR/load.pid"
  stop_pidfile "$DEMO_DIR/prometheus.pid"
}

if [[ ${1:-up} == down ]]; then
  stop_demo
  # node.sh down removes the node's state dir, this with it; removed first all the same.
  rm -rf -- "$DIGITS_DIR"
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
  kubectl get im demo -n "$NS" -o jsonpath='{.status.rollout.phase} weight {.status.rollout.weight}% analysis {.status.rollout.lastAnalysis.decision} {.status.rollout.lastAnalysis.message}' 2>/dev/null
}
stable_version() {
  kubectl get im demo -n "$NS" -o jsonpath='{.status.stableModelVersion}' 2>/dev/null
}
is_ready() {
  [[ $(kubectl get im demo -n "$NS" \
       -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

mkdir -p "$DEMO_DIR"
# shellcheck source=/dev/null
source "$CLUSTER_DIR/images.env"
# shellcheck source=/dev/null
source "$CLUSTER_DIR/net.env"
[[ -n ${KINFER_RUNTIME_IMAGE:-} && -n ${NODE_IP:-} && -f $NODE_DIR/net.env ]] || {
  echo "make demo needs the real node (root), its state in $NODE_DIR: see e2e/README.md" >&2
  exit 1; }

say "Nodes: two fake GPU nodes and a CPU node (kwok), and a real kubelet node"
kubectl get nodes -o wide -L nvidia.com/gpu.product,node.kinfer.io/real

say "Installing the CRD"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/inferencemodels.serving.kinfer.io --timeout=60s
stop_demo
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl delete im --all -n "$NS" --wait=true >/dev/null 2>&1 || true

say "Training the digits CNN on scikit-learn's bundled digits (seconds, no download) into $DIGITS_DIR, bound as the PVC digits"
# A volume left Released (its claim deleted with the namespace) cannot bind again: renew it.
if [[ $(kubectl get pv "$NS-digits" -o jsonpath='{.status.phase}' 2>/dev/null) == Released ]]; then
  kubectl delete pv "$NS-digits" --wait=true >/dev/null
fi
.venv/bin/python e2e/demo_digits.py prepare "$DIGITS_DIR" "$NS"

say "Starting Prometheus (built by make binaries), discovering runtime pods as examples/observability/prometheus-scrape.yaml does"
PROM_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$DEMO_DIR/prometheus"
{
  echo "global: {scrape_interval: 2s, evaluation_interval: 2s}"
  echo "scrape_configs:"
  grep -v '^#' examples/observability/prometheus-scrape.yaml | sed -e 's/^/  /' \
    -e 's|scrape_interval: 15s|scrape_interval: 2s|' \
    -e "s|^    - role: pod|    - role: pod\n      kubeconfig_file: $KUBECONFIG|"
} >"$DEMO_DIR/prometheus/prometheus.yml"
prometheus --config.file="$DEMO_DIR/prometheus/prometheus.yml" \
  --storage.tsdb.path="$DEMO_DIR/prometheus/data" --web.listen-address="$NODE_IP:$PROM_PORT" \
  >"$DEMO_DIR/prometheus.log" 2>&1 &
echo $! >"$DEMO_DIR/prometheus.pid"

say "helm install kinfer charts/kinfer: the operator image on the real node (2 replicas, one Lease)"
helm install kinfer charts/kinfer -n kinfer-system --create-namespace --wait --timeout 180s \
  --set image.repository="${KINFER_OPERATOR_IMAGE%:*}" --set image.tag="${KINFER_OPERATOR_IMAGE##*:}" \
  --set image.pullPolicy=Never --set crds.install=false \
  --set runtime.image="$KINFER_RUNTIME_IMAGE" --set runtime.imagePullPolicy=Never \
  --set-string 'nodeSelector.node\.kinfer\.io/real=true' \
  --set 'tolerations[0].key=node.kinfer.io/real' --set 'tolerations[0].operator=Exists' \
  --set operator.prometheusURL="http://$NODE_IP:$PROM_PORT" --set operator.resyncSeconds=10
kubectl get pods -n kinfer-system -o wide

# The digits bundle served on the real node as InferenceModel $1, model version $2; the caller
# adds the rest of the spec (replicas and rollout, or autoscaling).
digits_model() {
  cat <<EOF
apiVersion: serving.kinfer.io/v1alpha1
kind: InferenceModel
metadata:
  name: $1
spec:
  model: {uri: "pvc://digits/digits.tar.gz", version: "$2"}
  runtime:
    image: $KINFER_RUNTIME_IMAGE
    imagePullPolicy: Never
    resources: {requests: {cpu: 100m, memory: 256Mi}, limits: {memory: 1Gi}}
  scheduling:
    nodeSelector: {node.kinfer.io/real: "true"}
    tolerations: [{key: node.kinfer.io/real, operator: Exists}]
EOF
}
manifest() {
  digits_model demo "$1"
  cat <<EOF
  replicas: 4
  rollout:
    canary:
      steps: [{weight: 25, pauseSeconds: 6}, {weight: 50, pauseSeconds: 6}, {weight: 75, pauseSeconds: 6}]
      scaleDownDelaySeconds: 5
    analysis: {intervalSeconds: 4, minRequestCount: 5}
EOF
}
sleepy_manifest() {
  digits_model sleepy 1
  echo "  autoscaling: {minReplicas: 0, maxReplicas: 2, idleSeconds: 30}"
}
phase_of() {
  kubectl get im "$1" -n "$NS" -o jsonpath='{.status.phase}' 2>/dev/null
}

say "Applying the demo model (the digits bundle as version 1, 4 replicas of the CPU runtime image)"
manifest 1 | kubectl apply -n "$NS" -f -
watch_until "demo is Ready" is_ready 240
URL="http://$(kubectl get svc demo -n "$NS" -o jsonpath='{.spec.clusterIP}'):8080"

say "A real image through the Service ($URL): a held-out handwritten digit as PNG, answered with its label"
.venv/bin/python e2e/demo_digits.py "$URL" demo "$DIGITS_DIR" once

say "Bumping the model to version 2 (as a git commit would) under live traffic: canary 25% -> 50% -> 75%"
.venv/bin/python e2e/demo_digits.py "$URL" demo "$DIGITS_DIR" load 600 >"$DEMO_DIR/load.log" 2>&1 &
echo $! >"$DEMO_DIR/load.pid"
sleep 3
manifest 2 | kubectl apply -n "$NS" -f -
watch_until "version 2 passed every step and is stable" \
  '[[ $(stable_version) == 2 ]] && is_ready' 300
stop_pidfile "$DEMO_DIR/load.pid"
say "Answers per second by model version and the share labelled right during the rollout (every 5th second of $DEMO_DIR/load.log)"
awk 'NR % 5 == 1' "$DEMO_DIR/load.log" | tail -n 20

say "The same image after the rollout"
.venv/bin/python e2e/demo_digits.py "$URL" demo "$DIGITS_DIR" once

say "Scale to zero: a second model, sleepy (minReplicas 0), goes to zero after 30 s without requests"
sleepy_manifest | kubectl apply -n "$NS" -f -
watch_until "sleepy is Ready" '[[ $(phase_of sleepy) == Ready ]]' 240
watch_until "sleepy is Idle at zero replicas: its Service now points at the activator" \
  '[[ $(phase_of sleepy) == Idle && -z $(kubectl get pods -n "$NS" -l serving.kinfer.io/model=sleepy -o name) ]]' 180
SLEEPY_URL="http://$(kubectl get svc sleepy -n "$NS" -o jsonpath='{.spec.clusterIP}'):8080"
say "One image to sleepy at zero: the activator holds it, wakes the model and forwards it"
started=$SECONDS
.venv/bin/python e2e/demo_digits.py "$SLEEPY_URL" sleepy "$DIGITS_DIR" once
echo "answered $((SECONDS - started)) s after it was sent (the pod's model load included)"
kubectl get im sleepy -n "$NS" -o wide

say "Status and events"
kubectl get im demo -n "$NS" -o yaml | sed -n '/^status:/,$p'
kubectl get events -n "$NS" --field-selector involvedObject.kind=InferenceModel \
  --sort-by=.lastTimestamp
say "Done. The cluster, operator and Prometheus keep running; KUBECONFIG=$KUBECONFIG. Tear down: make demo-down"
