#!/usr/bin/env bash
# The kinfer local control plane: real etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and metrics-server processes, with kwok playing the kubelets of
# fake GPU/CPU nodes, supervised by kwokctl's binary runtime; plus one real node
# (e2e/node.sh: kubelet, containerd, runc, CNI, kube-proxy) that runs kinfer's own
# images (e2e/images.sh). No Docker, no registry. KINFER_REAL_NODE=0 leaves the real
# node out (it needs root); it is on by default for root.
#
#   e2e/cluster.sh up          start (idempotent); prints the kubeconfig path last
#   e2e/cluster.sh down        stop everything and remove the cluster state
#   e2e/cluster.sh status      components, nodes; exit 1 when not running
#   e2e/cluster.sh kubeconfig  print the kubeconfig path (exit 1 when not running)
#
# State lives in ${CLUSTER_DIR:-<repo>/.cluster}; binaries come from
# e2e/tools/build-binaries.sh (${KINFER_CACHE:-$HOME/.cache/kinfer}). Nothing is
# downloaded and nothing is written to $HOME. See e2e/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=e2e/tools/versions.env
source "$HERE/tools/versions.env"

NAME=kinfer
CLUSTER_DIR=${CLUSTER_DIR:-$REPO/.cluster}
KINFER_CACHE=${KINFER_CACHE:-$HOME/.cache/kinfer}
BIN_DIR="$KINFER_CACHE/k8s-$K8S_VERSION/bin"
CONFIG_SRC="$HERE/cluster"
UP_TIMEOUT=${UP_TIMEOUT:-180}   # seconds for the whole readiness wait
if [[ -z ${KINFER_REAL_NODE:-} ]]; then
    KINFER_REAL_NODE=$([[ $(id -u) == 0 ]] && echo 1 || echo 0)
fi
NET_ENV="$CLUSTER_DIR/net.env"

# kwokctl keeps everything (config, pki, pids, logs) under $KWOK_WORKDIR.
export KWOK_WORKDIR="$CLUSTER_DIR/kwok"
WORK="$KWOK_WORKDIR/clusters/$NAME"
KUBECONFIG_PATH="$CLUSTER_DIR/kubeconfig"
LOG_DIR="$CLUSTER_DIR/logs"

log() { printf '[cluster %3ds] %s\n' "$SECONDS" "$*" >&2; }
die() {
    printf 'cluster.sh: error: %s\n' "$*" >&2
    exit 1
}

# The pinned kubectl (same release as the server) comes first on PATH, also for
# kwokctl, which otherwise would try to download one.
export PATH="$BIN_DIR:$PATH"
# kubectl's discovery cache would otherwise land in ~/.kube/cache.
export KUBECACHEDIR="$CLUSTER_DIR/kube-cache"
# 8>&-: the daemons kwokctl starts must not inherit the lock fd (see lock()),
# or they would hold the lock for as long as the cluster runs.
kwokctl() { "$BIN_DIR/kwokctl" --name "$NAME" "$@" 8>&-; }
kc() { kubectl --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# healthy: the API server answers /readyz with our kubeconfig.
healthy() {
    [[ -f "$KUBECONFIG_PATH" ]] && kc get --raw /readyz --request-timeout=5s >/dev/null 2>&1
}

# our_pids: live processes started for this cluster. kwokctl symlinks every
# binary into $WORK/bin and passes $WORK paths as flags, so matching the
# command line on that unique directory finds exactly ours.
our_pids() {
    local p cmd
    for p in /proc/[0-9]*; do
        cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
        [[ $cmd == *"$WORK/"* ]] && printf '%s\n' "${p#/proc/}"
    done
    return 0
}

show_logs() {
    local f
    printf '%s\n' "---- component logs ($LOG_DIR) ----" >&2
    for f in "$WORK"/logs/*.log "$CLUSTER_DIR/kwokctl.log"; do
        [[ -f $f ]] || continue
        printf '== %s (last 10 lines)\n' "$f" >&2
        tail -n 10 "$f" | cut -c1-400 >&2
    done
}

fail() {
    show_logs
    die "$*"
}

# wait_for DESCRIPTION CMD...: retry CMD until it succeeds or the deadline passes.
wait_for() {
    local what=$1
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < DEADLINE)) || fail "timed out after ${UP_TIMEOUT}s waiting for $what"
        sleep 1
    done
    log "ok: $what"
}

require_binaries() {
    # A no-op in well under a second when the cache is warm; builds otherwise.
    bash "$HERE/tools/build-binaries.sh"
    command -v kubectl >/dev/null || die "kubectl not found in $BIN_DIR"
}

render_config() {
    mkdir -p "$CLUSTER_DIR"
    # Addresses for the Services and the real node, in a range no host route overlaps.
    python3 "$HERE/node/netplan.py" >"$NET_ENV.tmp" || die "could not plan the cluster's addresses"
    mv -f "$NET_ENV.tmp" "$NET_ENV"
    # shellcheck source=/dev/null
    source "$NET_ENV"
    sed -e "s|@BIN_DIR@|$BIN_DIR|g" -e "s|@CLUSTER_CONFIG_DIR@|$CONFIG_SRC|g" \
        -e "s|@NODE_IP@|$NODE_IP|g" -e "s|@SERVICE_CIDR@|$SERVICE_CIDR|g" \
        -e "s|@SERVICE_IP@|$SERVICE_IP|g" -e "s|@APISERVER_PORT@|$APISERVER_PORT|g" \
        -e "s|@PKI_DIR@|$WORK/pki|g" "$CONFIG_SRC/kwokctl.yaml" >"$CLUSTER_DIR/kwokctl.yaml"
}

# real_node_up: images (cached by content) and the node; its own script tears it down on
# failure, and this one then fails (the EXIT trap of `make test` stops the rest).
real_node_up() {
    ((KINFER_REAL_NODE)) || return 0
    bash "$HERE/images.sh" || die "building the images failed"
    # 8>&-: the node's daemons must not inherit our lock (see lock()).
    CA_FILE="$WORK/pki/ca.crt" bash "$HERE/node.sh" up 8>&- || die "the real node did not come up (logs above)"
}

create_cluster() {
    render_config
    log "creating cluster '$NAME' (kwokctl binary runtime, Kubernetes v$K8S_VERSION)"
    # --kubeconfig '' : do not merge a context into ~/.kube/config.
    # kwok-metrics.yaml: the usage annotations and the kubelet metrics endpoint.
    if ! kwokctl --config "$CLUSTER_DIR/kwokctl.yaml" --config "$CONFIG_SRC/kwok-metrics.yaml" create cluster \
        --kubeconfig '' --timeout "${UP_TIMEOUT}s" >"$CLUSTER_DIR/kwokctl.log" 2>&1; then
        fail "kwokctl create cluster failed (see $CLUSTER_DIR/kwokctl.log)"
    fi
}

write_kubeconfig() {
    local tmp="$KUBECONFIG_PATH.tmp"
    (umask 077 && kwokctl get kubeconfig >"$tmp") || fail "kwokctl get kubeconfig failed"
    mv -f "$tmp" "$KUBECONFIG_PATH"
}

link_logs() {
    # Component logs live in kwokctl's workdir; expose them at $CLUSTER_DIR/logs.
    rm -rf "$LOG_DIR"
    ln -s "$WORK/logs" "$LOG_DIR"
}

wait_ready() {
    DEADLINE=$((SECONDS + UP_TIMEOUT))
    wait_for "API server /readyz" kc get --raw /readyz
    kc apply -f "$CONFIG_SRC/nodes.yaml" -f "$CONFIG_SRC/metrics-reader-rbac.yaml" >/dev/null ||
        fail "could not create the fake nodes and the metrics-reader ClusterRole"
    wait_for "nodes Ready" kc wait --for=condition=Ready node --all --timeout=5s
    # Pods are rejected until the ServiceAccount admission finds 'default'.
    wait_for "default service account" kc -n default get serviceaccount default
    wait_for "metrics.k8s.io APIService Available" \
        kc wait --for=condition=Available apiservice/v1beta1.metrics.k8s.io --timeout=5s
    wait_for "node metrics served" kc get --raw /apis/metrics.k8s.io/v1beta1/nodes/kinfer-cpu-0
}

cmd_up() {
    local t0=$SECONDS
    require_binaries
    if healthy; then
        # Still check nodes and metrics: a previous `up` may have timed out.
        log "already running; checking readiness"
        wait_ready
        real_node_up
        printf '%s\n' "$KUBECONFIG_PATH"
        return 0
    fi
    # Leftovers of an earlier run whose processes are gone (reboot, kill -9, a
    # failed start): recreate from scratch. A fresh cluster takes ~20s, and
    # `kwokctl start` trusts stale pid files, so restarting is not worth it.
    if [[ -d "$WORK" ]] || [[ -n "$(our_pids)" ]]; then
        log "found a stopped or broken cluster in $CLUSTER_DIR; recreating it"
        cmd_down || die "could not clean up the previous cluster"
    fi
    create_cluster
    write_kubeconfig
    link_logs
    wait_ready
    real_node_up
    log "up in $((SECONDS - t0))s; export KUBECONFIG=$KUBECONFIG_PATH"
    printf '%s\n' "$KUBECONFIG_PATH"
}

cmd_down() {
    local pids left i
    # The node first: its kubelet and kube-proxy need the API server to stop cleanly.
    bash "$HERE/node.sh" down || log "warning: the real node's teardown reported errors"
    pids=$(our_pids)
    if [[ -d "$WORK" ]]; then
        log "deleting cluster '$NAME'"
        # Keep the last run's logs for post-mortems (CI uploads $CLUSTER_DIR/logs).
        if [[ -d "$WORK/logs" ]]; then
            rm -rf "$LOG_DIR"
            cp -r "$WORK/logs" "$LOG_DIR"
        fi
        kwokctl delete cluster >"$CLUSTER_DIR/kwokctl-delete.log" 2>&1 ||
            log "kwokctl delete cluster failed (see $CLUSTER_DIR/kwokctl-delete.log); cleaning up by hand"
    fi
    # Anything kwokctl missed: TERM, then KILL after 10s.
    left=$(our_pids)
    pids=$(printf '%s\n%s\n' "$pids" "$left" | sort -u | grep . || true)
    if [[ -n "$pids" ]]; then
        # shellcheck disable=SC2086 # word splitting of the pid list is intended
        kill $pids 2>/dev/null || true
        for ((i = 0; i < 10; i++)); do
            left=$(our_pids)
            [[ -z "$left" ]] && break
            sleep 1
        done
        if [[ -n "$left" ]]; then
            log "force-killing: $(tr '\n' ' ' <<<"$left")"
            # shellcheck disable=SC2086
            kill -9 $left 2>/dev/null || true
        fi
    fi
    rm -rf "$KWOK_WORKDIR" "$KUBECONFIG_PATH" "$CLUSTER_DIR/kwokctl.yaml" "$KUBECACHEDIR" "$NET_ENV"
    left=$(our_pids)
    if [[ -n "$left" ]]; then
        log "error: processes still running: $(tr '\n' ' ' <<<"$left")"
        return 1
    fi
    log "down: no cluster processes left"
}

cmd_status() {
    if ! healthy; then
        echo "cluster '$NAME': not running (state: $CLUSTER_DIR)"
        return 1
    fi
    echo "cluster '$NAME': running, Kubernetes $(kc version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -n1)"
    echo "kubeconfig: $KUBECONFIG_PATH"
    echo "processes:"
    local p
    for p in $(our_pids); do
        printf '  %-8s %s\n' "$p" "$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | cut -c1-110)"
    done
    kc get nodes -L nvidia.com/gpu.product
    kc get apiservice v1beta1.metrics.k8s.io
    bash "$HERE/node.sh" status || true
}

cmd_kubeconfig() {
    healthy || die "cluster '$NAME' is not running; run 'make cluster' (or e2e/cluster.sh up)"
    printf '%s\n' "$KUBECONFIG_PATH"
}

# Serialise up/down: `make e2e` in one shell and `make cluster-down` in another
# must not interleave. Waits at most LOCK_TIMEOUT seconds.
lock() {
    local f="$CLUSTER_DIR/.cluster-sh.lock"
    mkdir -p "$CLUSTER_DIR"
    exec 8>"$f"
    if ! flock -n 8; then
        log "waiting for another cluster.sh holding $f"
        flock -w "${LOCK_TIMEOUT:-600}" 8 || die "timed out waiting for $f (held by: $(fuser "$f" 2>/dev/null || echo unknown))"
    fi
}

case "${1:-}" in
up)
    lock
    cmd_up
    ;;
down)
    lock
    cmd_down
    ;;
status) cmd_status ;;
kubeconfig) cmd_kubeconfig ;;
*)
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
