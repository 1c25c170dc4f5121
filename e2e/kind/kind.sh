#!/usr/bin/env bash
# kinfer on kind: real kubelets and real containers. NEEDS DOCKER (and kind).
# NOT RUN IN CI: CI uses the Docker-free control plane of e2e/cluster.sh.
#
#   e2e/kind/kind.sh up     create the kind cluster, build and load both images,
#                           helm install charts/kinfer, apply examples/
#   e2e/kind/kind.sh test   run the e2e suite against it (operator in-cluster)
#   e2e/kind/kind.sh down   delete the kind cluster
#
# Env: KIND_CLUSTER (default kinfer), KIND_NODE_IMAGE (default: versions.env, else kind's own),
#      KINFER_KIND_METRICS_SERVER=0 to skip installing metrics-server (it is
#      fetched from its GitHub release), KINFER_HELM_ARGS extra `helm install` flags.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
user_node_image=${KIND_NODE_IMAGE:-}
# shellcheck source=e2e/tools/versions.env
source "$REPO/e2e/tools/versions.env"
KIND_NODE_IMAGE=${user_node_image:-$KIND_NODE_IMAGE}

CLUSTER=${KIND_CLUSTER:-kinfer}
KUBECONFIG_PATH="$REPO/.cluster/kind-kubeconfig"
OPERATOR_IMAGE=kinfer/operator:dev
RUNTIME_IMAGE=kinfer/runtime:dev
# helm/kubectl: prefer the pinned builds from `make binaries` when present.
PATH="${KINFER_CACHE:-$HOME/.cache/kinfer}/k8s-$K8S_VERSION/bin:$PATH"

log() { printf '[kind] %s\n' "$*" >&2; }
die() {
    printf 'kind.sh: error: %s\n' "$*" >&2
    exit 1
}

need() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || die "'$t' not found on PATH (this script needs docker, kind, kubectl and helm)"
    done
    docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable ('docker info' failed)"
}

kc() { kubectl --kubeconfig "$KUBECONFIG_PATH" "$@"; }

create_cluster() {
    if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
        log "kind cluster '$CLUSTER' exists"
    else
        local image=()
        [[ -n "${KIND_NODE_IMAGE:-}" ]] && image=(--image "$KIND_NODE_IMAGE")
        kind create cluster --name "$CLUSTER" --config "$HERE/kind-config.yaml" "${image[@]}" --wait 120s
    fi
    mkdir -p "$(dirname "$KUBECONFIG_PATH")"
    kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_PATH"
}

# label_nodes: make the kind workers look like the fake nodes of the local
# control plane (same labels, taint and nvidia.com/gpu capacity), so the same
# e2e tests and examples schedule the same way. The GPUs are advertised by
# patching node status, the documented way to add extended resources; no
# device is behind them, so the runtime image must run on CPU here.
label_nodes() {
    local node product
    for node in "$CLUSTER-worker" "$CLUSTER-worker2"; do
        product=NVIDIA-H100-80GB-HBM3
        [[ $node == "$CLUSTER-worker2" ]] && product=NVIDIA-A100-SXM4-80GB
        kc label node "$node" --overwrite nvidia.com/gpu.present=true nvidia.com/gpu.product="$product"
        kc taint node "$node" nvidia.com/gpu=present:NoSchedule --overwrite
        kc patch node "$node" --subresource=status --type=json \
            -p '[{"op":"add","path":"/status/capacity/nvidia.com~1gpu","value":"8"}]'
    done
}

install_metrics_server() {
    [[ "${KINFER_KIND_METRICS_SERVER:-1}" == 1 ]] || return 0
    # The HPA needs metrics.k8s.io; kind's kubelets use self-signed serving certs.
    kc apply -f "https://github.com/kubernetes-sigs/metrics-server/releases/download/v$METRICS_SERVER_VERSION/components.yaml"
    kc -n kube-system patch deployment metrics-server --type=json \
        -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'
}

build_images() {
    log "building $OPERATOR_IMAGE and $RUNTIME_IMAGE"
    docker build -f "$REPO/Dockerfile.operator" -t "$OPERATOR_IMAGE" "$REPO"
    docker build -f "$REPO/Dockerfile.runtime" -t "$RUNTIME_IMAGE" "$REPO"
    kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$RUNTIME_IMAGE"
}

install_kinfer() {
    [[ -d "$REPO/charts/kinfer" ]] || die "charts/kinfer not found: the Helm chart is needed for the in-cluster install"
    log "helm install kinfer"
    # values.yaml: pullPolicy Never, the images exist only inside the kind nodes.
    # shellcheck disable=SC2086 # KINFER_HELM_ARGS is a list of extra helm flags
    helm upgrade --install kinfer "$REPO/charts/kinfer" --kubeconfig "$KUBECONFIG_PATH" \
        --namespace kinfer-system --create-namespace --wait --timeout 5m \
        -f "$HERE/values.yaml" ${KINFER_HELM_ARGS:-}
    if compgen -G "$REPO/examples/*.yaml" >/dev/null; then
        kc apply -f "$REPO/examples/"
    fi
}

cmd_up() {
    need docker kind kubectl helm
    create_cluster
    label_nodes
    install_metrics_server
    build_images
    install_kinfer
    log "ready; export KUBECONFIG=$KUBECONFIG_PATH"
}

cmd_test() {
    [[ -f "$KUBECONFIG_PATH" ]] || die "no kind kubeconfig at $KUBECONFIG_PATH; run '$0 up' first"
    local py="$REPO/.venv/bin/pytest"
    [[ -x "$py" ]] || die "$py missing; run 'make venv' first"
    # incluster: the suite drives the operator that helm installed instead of
    # starting one in-process.
    KUBECONFIG="$KUBECONFIG_PATH" KINFER_E2E_OPERATOR=incluster "$py" "$REPO/e2e" "$@"
}

cmd_down() {
    command -v kind >/dev/null || die "'kind' not found on PATH"
    kind delete cluster --name "$CLUSTER"
    rm -f "$KUBECONFIG_PATH"
}

case "${1:-}" in
up) cmd_up ;;
test)
    shift
    cmd_test "$@"
    ;;
down) cmd_down ;;
*)
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
