#!/usr/bin/env bash
# Smoke test of the local control plane started by `e2e/cluster.sh up`: proves
# the features the kinfer e2e suite relies on, end to end, in about a minute.
#
#   e2e/cluster/smoke.sh            uses $CLUSTER_DIR/kubeconfig (default <repo>/.cluster)
#
# Checks: cluster-admin + RBAC enforced for service accounts, PodSecurity
# admission, GPU node capacity/labels/taints, scheduling + kwok Running/Ready
# with a pod IP, metrics.k8s.io fed by the usage annotations, and the real HPA
# controller scaling a Deployment on CPU, then garbage collection on delete.
# Everything happens in a throw-away namespace that is deleted at the end.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=e2e/tools/versions.env
source "$REPO/e2e/tools/versions.env"
PATH="${KINFER_CACHE:-$HOME/.cache/kinfer}/k8s-$K8S_VERSION/bin:$PATH"
CLUSTER_DIR=${CLUSTER_DIR:-$REPO/.cluster}
export KUBECONFIG=${KUBECONFIG_SMOKE:-$CLUSTER_DIR/kubeconfig}
export KUBECACHEDIR=${KUBECACHEDIR:-$CLUSTER_DIR/kube-cache} # not ~/.kube/cache
NS=kinfer-smoke-$$
START=$SECONDS

say() { printf '[smoke %3ds] %s\n' "$((SECONDS - START))" "$*"; }
fail() {
    printf 'smoke: FAIL: %s\n' "$*" >&2
    exit 1
}
cleanup() { kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

# poll SECONDS DESCRIPTION CMD...: retry CMD once a second.
poll() {
    local limit=$1 what=$2 t0=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS - t0 < limit)) || fail "$what (not within ${limit}s)"
        sleep 1
    done
    say "ok: $what ($((SECONDS - t0))s)"
}

[[ -f $KUBECONFIG ]] || fail "no kubeconfig at $KUBECONFIG; run e2e/cluster.sh up"

# --- API, authz, admission ---------------------------------------------------
[[ $(kubectl get --raw /version | sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p') == "v$K8S_VERSION" ]] ||
    fail "server version is not v$K8S_VERSION"
say "ok: server reports v$K8S_VERSION"
[[ $(kubectl auth can-i '*' '*' --all-namespaces) == yes ]] || fail "kubeconfig is not cluster-admin"
say "ok: kubeconfig is cluster-admin"
kubectl create namespace "$NS" >/dev/null
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
poll 30 "service account token controller created $NS/default" kubectl -n "$NS" get serviceaccount default
[[ $(kubectl auth can-i list pods -n "$NS" --as "system:serviceaccount:$NS:default") == no ]] ||
    fail "RBAC not enforced: a bare service account may list pods"
say "ok: RBAC enforced for service accounts"
if kubectl -n "$NS" run psa-probe --image=example.invalid/x --restart=Never --dry-run=server \
    --overrides='{"spec":{"containers":[{"name":"psa-probe","image":"example.invalid/x","securityContext":{"privileged":true}}]}}' \
    >/dev/null 2>&1; then
    fail "PodSecurity admission let a privileged pod into a restricted namespace"
fi
say "ok: PodSecurity admission rejects a privileged pod under 'restricted'"
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce- >/dev/null

# --- fake nodes ----------------------------------------------------------------
[[ $(kubectl get node kinfer-gpu-0 -o jsonpath='{.status.allocatable.nvidia\.com/gpu}') == 8 ]] ||
    fail "kinfer-gpu-0 does not advertise nvidia.com/gpu: 8"
[[ $(kubectl get nodes -l nvidia.com/gpu.present=true -o name | wc -l) -ge 2 ]] || fail "fewer than 2 GPU nodes"
say "ok: GPU nodes: $(kubectl get nodes -l nvidia.com/gpu.present=true -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.labels.nvidia\.com/gpu\.product} {end}')"

# --- a GPU pod: scheduled by product, Running/Ready with an IP --------------------
kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: gpu-probe}
spec:
  nodeSelector: {nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  containers:
  - name: c
    image: example.invalid/gpu:1
    resources: {limits: {nvidia.com/gpu: "2"}}
EOF
poll 30 "GPU pod Ready" kubectl -n "$NS" wait --for=condition=Ready pod/gpu-probe --timeout=2s
[[ $(kubectl -n "$NS" get pod gpu-probe -o jsonpath='{.spec.nodeName}') == kinfer-gpu-1 ]] ||
    fail "GPU pod did not land on the A100 node"
[[ -n $(kubectl -n "$NS" get pod gpu-probe -o jsonpath='{.status.podIP}') ]] || fail "GPU pod has no IP"
say "ok: GPU pod on kinfer-gpu-1 with IP $(kubectl -n "$NS" get pod gpu-probe -o jsonpath='{.status.podIP}')"

# --- metrics + HPA -------------------------------------------------------------
kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: hpa-probe}
spec:
  replicas: 1
  selector: {matchLabels: {app: hpa-probe}}
  template:
    metadata:
      labels: {app: hpa-probe}
      annotations:
        kwok.x-k8s.io/usage-cpu: 500m
        kwok.x-k8s.io/usage-memory: 300Mi
    spec:
      containers:
      - name: app
        image: example.invalid/app:1
        resources: {requests: {cpu: 100m, memory: 128Mi}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: hpa-probe}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: hpa-probe}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
EOF
# Usage is derived from a cumulative counter, so expect ~500m, not exactly 500m.
pod_cpu() {
    kubectl -n "$NS" top pod -l app=hpa-probe --no-headers 2>/dev/null |
        awk '{ sub(/m$/, "", $2) } $2 >= 450 && $2 <= 550 { ok = 1 } END { exit !ok }'
}
poll 90 "metrics.k8s.io reports the annotated ~500m CPU for the pod" pod_cpu
kubectl -n "$NS" top pod -l app=hpa-probe | sed 's/^/    /'
replicas_at_least_3() { (($(kubectl -n "$NS" get deploy hpa-probe -o jsonpath='{.status.readyReplicas}') >= 3)); }
poll 90 "HPA scaled hpa-probe from 1 to 3 ready replicas" replicas_at_least_3
kubectl -n "$NS" get deployment,hpa hpa-probe | sed 's/^/    /'

# --- garbage collector -------------------------------------------------------------
kubectl -n "$NS" delete deployment hpa-probe --wait=false >/dev/null
no_pods() {
    local out
    out=$(kubectl -n "$NS" get pods -l app=hpa-probe -o name) && [[ -z $out ]]
}
poll 60 "garbage collector removed the ReplicaSet's pods" no_pods
say "PASS ($((SECONDS - START))s)"
