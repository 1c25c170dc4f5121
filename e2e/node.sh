#!/usr/bin/env bash
# The real node: one kubelet that runs kinfer's own images as containers, beside the kwok
# nodes of the local control plane. kubelet, kube-proxy (nftables), containerd 2.x, runc and
# the CNI bridge, all pinned in tools/versions.env and built by tools/build-binaries.sh.
#
#   e2e/node.sh up       join the node to the running control plane (e2e/cluster.sh calls it)
#   e2e/node.sh down     stop it and remove everything it made on the host
#   e2e/node.sh status   processes and the Node object; exit 1 when not running
#
# Everything lives under $KINFER_NODE_DIR (default /var/lib/kinfer-node), outside the repo:
# processes (pid files), mounts, the bridge, netfilter rules (tagged), cgroups and logs.
# Nothing listens on an external interface: the node's address is on a port-less bridge of
# its own, in a private range that e2e/node/netplan.py chose to overlap no host route.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=e2e/tools/versions.env
source "$HERE/tools/versions.env"

CLUSTER_DIR=${CLUSTER_DIR:-$REPO/.cluster}
KINFER_CACHE=${KINFER_CACHE:-$HOME/.cache/kinfer}
BIN_DIR="$KINFER_CACHE/k8s-$K8S_VERSION/bin"
NODE_DIR=${KINFER_NODE_DIR:-/var/lib/kinfer-node}
NODE_NAME=kinfer-real-0
# The label and taint that keep stray pods off the node: tests and the demo opt in.
NODE_KEY=node.kinfer.io/real
NODE_LINK=kinfer0     # holds the node IP (a bridge with no ports: this kernel has no dummy)
POD_BRIDGE=kinferbr0  # the CNI bridge of the pods
RULE_TAG=kinfer-real-node
SOCK="$NODE_DIR/run/containerd/containerd.sock"
KUBECONFIG_PATH="$CLUSTER_DIR/kubeconfig"
UP_TIMEOUT=${NODE_UP_TIMEOUT:-120}
# Sysctls kubelet sets (kernel tunables) or we set (ip_forward): restored on down.
SAVED_SYSCTLS=(net/ipv4/ip_forward vm/overcommit_memory vm/panic_on_oom kernel/panic
    kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
# Paths that kubelet, containerd and libcni write no matter which flags they get.
HOST_PATHS=(/var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /run/containerd
    /var/run/netns /etc/cni /opt/cni)

log() { printf '[node %3ds] %s\n' "$SECONDS" "$*" >&2; }
die() {
    printf 'node.sh: error: %s\n' "$*" >&2
    exit 1
}
kc() { "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
ctr() { "$BIN_DIR/ctr" --address "$SOCK" --namespace k8s.io "$@"; }

# --- processes: started by us, recorded by PID, stopped by PID -------------------------------

start_daemon() {
    local name=$1
    shift
    mkdir -p "$NODE_DIR/log" "$NODE_DIR/pids"
    # 7>&-: daemons must not inherit the lock (see lock()), or they would hold it for life.
    PATH="$BIN_DIR:$PATH" setsid "$@" >>"$NODE_DIR/log/$name.log" 2>&1 </dev/null 7>&- &
    echo $! >"$NODE_DIR/pids/$name"
}

pid_of() { [[ -f $NODE_DIR/pids/$1 ]] && cat "$NODE_DIR/pids/$1"; }

alive() {
    local pid
    pid=$(pid_of "$1") || return 1
    kill -0 "$pid" 2>/dev/null
}

# Each daemon leads its own process group (setsid), so its children go with it: the
# relay's per-connection forks, for one.
stop_daemon() {
    local name=$1 pid i
    pid=$(pid_of "$name") || return 0
    if kill -0 -- "-$pid" 2>/dev/null; then
        kill -- "-$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 -- "-$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$NODE_DIR/pids/$name"
}

show_logs() {
    local f
    for f in "$NODE_DIR"/log/*.log; do
        [[ -f $f ]] || continue
        printf '== %s (last 15 lines)\n' "$f" >&2
        tail -n 15 "$f" | cut -c1-300 >&2
    done
}

fail() {
    log "error: $*"
    show_logs
    exit 1
}

wait_for() {
    local what=$1 deadline=$((SECONDS + $2))
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "timed out waiting for $what"
        sleep 0.5
    done
    log "ok: $what"
}

# --- up -------------------------------------------------------------------------------------

render() {
    local src=$1 dst=$2
    sed -e "s|@NODE_DIR@|$NODE_DIR|g" -e "s|@BIN_DIR@|$BIN_DIR|g" \
        -e "s|@PAUSE_IMAGE@|$KINFER_PAUSE_IMAGE|g" -e "s|@NODE_IP@|$NODE_IP|g" \
        -e "s|@POD_CIDR@|$POD_CIDR|g" -e "s|@POD_GATEWAY@|$POD_GATEWAY|g" \
        -e "s|@SERVICE_CIDR@|$SERVICE_CIDR|g" -e "s|@POD_BRIDGE@|$POD_BRIDGE|g" \
        -e "s|@CA_FILE@|$CA_FILE|g" -e "s|@KUBECONFIG@|$KUBECONFIG_PATH|g" \
        -e "s|@NODE_NAME@|$NODE_NAME|g" -e "s|@KUBELET_HEALTHZ_PORT@|$KUBELET_HEALTHZ_PORT|g" \
        -e "s|@PROXY_METRICS_PORT@|$PROXY_METRICS_PORT|g" \
        -e "s|@PROXY_HEALTHZ_PORT@|$PROXY_HEALTHZ_PORT|g" "$src" >"$dst"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# record_host: what existed before, so that down removes only what we made.
record_host() {
    local s p
    : >"$NODE_DIR/sysctls.saved"
    for s in "${SAVED_SYSCTLS[@]}"; do
        printf '%s=%s\n' "$s" "$(cat "/proc/sys/$s")" >>"$NODE_DIR/sysctls.saved"
    done
    : >"$NODE_DIR/paths.preexisting"
    for p in "${HOST_PATHS[@]}"; do
        [[ -e $p || -L $p ]] && printf '%s\n' "$p" >>"$NODE_DIR/paths.preexisting"
    done
    nft list tables >"$NODE_DIR/nft-tables.preexisting" 2>/dev/null || true
    { iptables-save 2>/dev/null; ip6tables-save 2>/dev/null; } | grep -c '^:KUBE-' \
        >"$NODE_DIR/kube-chains.preexisting" || true
}

setup_network() {
    ip link add "$NODE_LINK" type bridge
    ip addr add "$NODE_IP/32" dev "$NODE_LINK"
    ip link set "$NODE_LINK" up
    # ClusterIP traffic that kube-proxy did not rewrite dies here, never on the default route.
    ip route add "$SERVICE_CIDR" dev "$NODE_LINK"
    # Pod -> ClusterIP -> pod needs forwarding; pods have no default route, and this rule
    # drops anything from a pod that would leave through another interface than its bridge.
    echo 1 >/proc/sys/net/ipv4/ip_forward
    iptables -w -I FORWARD -s "$POD_CIDR" ! -o "$POD_BRIDGE" -m comment --comment "$RULE_TAG" -j DROP
}

setup_cni() {
    mkdir -p "$NODE_DIR/cni/bin" "$NODE_DIR/cni/net.d"
    local b
    for b in bridge loopback host-local portmap; do ln -sf "$BIN_DIR/$b" "$NODE_DIR/cni/bin/$b"; done
    render "$HERE/node/cni.conflist" "$NODE_DIR/cni/net.d/10-kinfer.conflist"
}

start_containerd() {
    render "$HERE/node/containerd.toml" "$NODE_DIR/etc/containerd.toml"
    # --address as well: containerd 2.3 ignored [grpc] address from this file.
    start_daemon containerd containerd --config "$NODE_DIR/etc/containerd.toml" --address "$SOCK"
    wait_for "containerd" 30 ctr version
}

import_images() {
    local a t0=$SECONDS
    for a in $KINFER_IMAGE_ARCHIVES; do
        ctr images import "$KINFER_IMAGE_DIR/$a.oci.tar" >>"$NODE_DIR/log/import.log" 2>&1 ||
            fail "importing $a into containerd (see $NODE_DIR/log/import.log)"
    done
    log "ok: images imported in $((SECONDS - t0))s: $KINFER_IMAGE_ARCHIVES"
}

start_kubelet() {
    render "$HERE/node/kubelet.yaml" "$NODE_DIR/etc/kubelet.yaml"
    start_daemon kubelet kubelet --config "$NODE_DIR/etc/kubelet.yaml" \
        --kubeconfig "$KUBECONFIG_PATH" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
        --root-dir "$NODE_DIR/var/lib/kubelet" --cert-dir "$NODE_DIR/var/lib/kubelet/pki" \
        --node-labels "$NODE_KEY=true" --register-with-taints "$NODE_KEY=true:NoSchedule"
    wait_for "node $NODE_NAME Ready" "$UP_TIMEOUT" \
        kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
}

start_kube_proxy() {
    render "$HERE/node/kube-proxy.yaml" "$NODE_DIR/etc/kube-proxy.yaml"
    start_daemon kube-proxy kube-proxy --config "$NODE_DIR/etc/kube-proxy.yaml"
    wait_for "kube-proxy healthz" 60 curl -fsS "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"
}

# The API server listens on loopback only; pods reach it at the node IP (its advertised
# address, the `kubernetes` Service's endpoint) through this relay on the node's own bridge.
start_apiserver_relay() {
    start_daemon apiserver-relay socat "TCP-LISTEN:$APISERVER_PORT,bind=$NODE_IP,reuseaddr,fork" \
        "TCP:127.0.0.1:$APISERVER_PORT"
    wait_for "API server relay on $NODE_IP:$APISERVER_PORT" 10 \
        curl -ksS -o /dev/null "https://$NODE_IP:$APISERVER_PORT/readyz"
}

cmd_up() {
    local t0=$SECONDS f
    [[ $(id -u) == 0 ]] || die "the real node needs root (network, mounts, cgroups)"
    for f in "$CLUSTER_DIR/net.env" "$CLUSTER_DIR/images.env" "$KUBECONFIG_PATH"; do
        [[ -f $f ]] || die "$f is missing: start the node through 'make cluster'"
    done
    for f in kubelet kube-proxy containerd containerd-shim-runc-v2 ctr runc crictl bridge; do
        [[ -x $BIN_DIR/$f ]] || die "$BIN_DIR/$f is missing: run 'make binaries'"
    done
    command -v socat >/dev/null || die "socat is missing: run 'make system-deps'"
    # shellcheck source=/dev/null
    source "$CLUSTER_DIR/net.env"
    # shellcheck source=/dev/null
    source "$CLUSTER_DIR/images.env"
    if alive kubelet; then
        log "already running"
        return 0
    fi
    [[ -d $NODE_DIR ]] && { log "found leftovers in $NODE_DIR; cleaning up first"; cmd_down; }
    mkdir -p "$NODE_DIR/etc" "$NODE_DIR/run" "$NODE_DIR/log" "$NODE_DIR/pids"
    cp "$CLUSTER_DIR/net.env" "$NODE_DIR/net.env"
    # The control plane's CA (e2e/cluster.sh passes kwokctl's): it signed the client
    # certificate that the API server presents to the kubelet.
    [[ -f ${CA_FILE:-} ]] || die "CA_FILE (the control plane's CA) is not set or missing"
    KUBELET_HEALTHZ_PORT=$(free_port) PROXY_METRICS_PORT=$(free_port) PROXY_HEALTHZ_PORT=$(free_port)
    record_host
    # Any failure from here on (a fail, a failing command under set -e) tears the node down.
    trap 'rc=$?; if ((rc)); then log "bring-up failed; tearing the node down"; cmd_down; fi' EXIT
    setup_network
    setup_cni
    start_containerd
    import_images
    start_kubelet
    start_kube_proxy
    start_apiserver_relay
    trap - EXIT
    log "up in $((SECONDS - t0))s: node $NODE_NAME at $NODE_IP, pods $POD_CIDR, Services $SERVICE_CIDR"
}

# --- down -----------------------------------------------------------------------------------

# Our processes that no pid file names: shims and container processes. Shims carry our socket
# path on their command line; container processes sit in our kubepods cgroups.
stray_pids() {
    local p cmd
    for p in /proc/[0-9]*; do
        cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
        if [[ $cmd == *"$NODE_DIR/"* ]] || grep -qs ':/kubepods' "$p/cgroup"; then
            printf '%s\n' "${p#/proc/}"
        fi
    done
    return 0
}

remove_pods() {
    [[ -S $SOCK ]] || return 0
    local crictl=("$BIN_DIR/crictl" --runtime-endpoint "unix://$SOCK" --timeout 20s)
    local pods
    pods=$("${crictl[@]}" pods -q 2>/dev/null) || return 0
    [[ -n $pods ]] || return 0
    # stopp runs CNI DEL (veth, IP), rmp unmounts and ends the shims.
    # shellcheck disable=SC2086
    "${crictl[@]}" stopp $pods >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    "${crictl[@]}" rmp -f $pods >/dev/null 2>&1 || true
}

kill_strays() {
    local left i
    for i in 1 2 3; do
        left=$(stray_pids)
        [[ -z $left ]] && return 0
        # shellcheck disable=SC2086
        kill -9 $left 2>/dev/null || true
        sleep 0.5
    done
    log "warning: processes still running: $(stray_pids | tr '\n' ' ')"
}

unmount_all() {
    local m
    # Deepest first; kubelet's root dir is an rshared bind mount of itself.
    for m in $(awk -v d="$NODE_DIR" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: cannot unmount $m"
    done
}

# iptables chains kubelet makes (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT) and
# kube-proxy leftovers; our tagged rule. Only run when the host had no KUBE-* chains before.
clean_iptables() {
    local cmd table chain rule
    for cmd in iptables ip6tables; do
        while read -r rule; do
            eval "$cmd -w ${rule/-A/-D}" 2>/dev/null || true
        done < <($cmd-save 2>/dev/null | grep -- "--comment $RULE_TAG" || true)
        for table in filter nat mangle; do
            # Jumps from built-in chains into KUBE-* chains, then the chains themselves.
            while read -r rule; do
                eval "$cmd -w -t $table ${rule/-A/-D}" 2>/dev/null || true
            done < <($cmd-save -t "$table" 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' || true)
            for chain in $($cmd-save -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p'); do
                $cmd -w -t "$table" -F "$chain" 2>/dev/null || true
            done
            for chain in $($cmd-save -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p'); do
                $cmd -w -t "$table" -X "$chain" 2>/dev/null || true
            done
        done
    done
}

# nftables: kube-proxy's own tables, and the iptables-nft tables that did not exist before.
clean_nftables() {
    local family table
    [[ -f $NODE_DIR/nft-tables.preexisting ]] || return 0 # nothing was recorded, nor started
    while read -r _ family table; do
        [[ -n $table ]] || continue
        grep -qx "table $family $table" "$NODE_DIR/nft-tables.preexisting" 2>/dev/null && continue
        nft delete table "$family" "$table" 2>/dev/null || log "warning: cannot delete nft table $family $table"
    done < <(nft list tables 2>/dev/null)
}

restore_sysctls() {
    [[ -f $NODE_DIR/sysctls.saved ]] || return 0
    while IFS='=' read -r key value; do
        [[ -n $key ]] && printf '%s\n' "$value" >"/proc/sys/$key" 2>/dev/null || true
    done <"$NODE_DIR/sysctls.saved"
}

remove_cgroups() {
    local d
    for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
        [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    return 0
}

remove_host_paths() {
    local p
    [[ -f $NODE_DIR/paths.preexisting ]] || return 0 # nothing was recorded, nor started
    for p in "${HOST_PATHS[@]}"; do
        grep -qx "$p" "$NODE_DIR/paths.preexisting" || rm -rf "$p"
    done
    # Paths that existed before keep what was there; only the files we know of go.
    rm -f /var/lib/kubelet/device-plugins/kubelet.sock /etc/cni/net.d/cni.lock
    find /var/log/containers -maxdepth 1 -lname "$NODE_DIR/*" -delete 2>/dev/null || true
}

# The daemons' logs outlive the node, for a post-mortem of a failed run: the tail of each
# goes to $CLUSTER_DIR/node-logs (ignored by git, replaced by the next run).
keep_logs() {
    local f
    rm -rf "$CLUSTER_DIR/node-logs"
    mkdir -p "$CLUSTER_DIR/node-logs"
    for f in "$NODE_DIR"/log/*.log; do
        [[ -f $f ]] && tail -n 5000 "$f" >"$CLUSTER_DIR/node-logs/$(basename "$f")"
    done
    return 0
}

cmd_down() {
    local t0=$SECONDS
    if [[ ! -d $NODE_DIR ]]; then
        log "down: no node state in $NODE_DIR"
        return 0
    fi
    if [[ -f $NODE_DIR/net.env ]]; then
        # shellcheck source=/dev/null
        source "$NODE_DIR/net.env"
    fi
    stop_daemon kube-proxy
    if [[ -f $NODE_DIR/etc/kube-proxy.yaml ]]; then
        "$BIN_DIR/kube-proxy" --cleanup --config "$NODE_DIR/etc/kube-proxy.yaml" >>"$NODE_DIR/log/kube-proxy-cleanup.log" 2>&1 || true
    fi
    stop_daemon apiserver-relay
    stop_daemon kubelet
    remove_pods
    stop_daemon containerd
    kill_strays
    unmount_all
    # A host that had KUBE-* chains before (a real cluster on it) keeps them: not ours to clean.
    if [[ $(cat "$NODE_DIR/kube-chains.preexisting" 2>/dev/null) == 0 ]]; then
        clean_iptables
    else
        log "warning: the host had KUBE-* iptables chains before; leaving KUBE-* chains alone"
    fi
    clean_nftables
    ip link del "$POD_BRIDGE" 2>/dev/null || true
    ip link del "$NODE_LINK" 2>/dev/null || true
    restore_sysctls
    remove_cgroups
    remove_host_paths
    keep_logs
    rm -rf "$NODE_DIR"
    log "down in $((SECONDS - t0))s: node processes, mounts, links, rules, cgroups and paths removed"
}

cmd_status() {
    alive kubelet || {
        echo "real node: not running (state: $NODE_DIR)"
        return 1
    }
    local n
    for n in containerd kubelet kube-proxy apiserver-relay; do
        printf '  %-16s pid %-8s %s\n' "$n" "$(pid_of "$n")" "$(alive "$n" && echo running || echo STOPPED)"
    done
    kc get node "$NODE_NAME" -o wide
}

lock() {
    mkdir -p "$KINFER_CACHE"
    exec 7>"$KINFER_CACHE/node.lock"
    flock -w 600 7 || die "another node.sh holds the lock"
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
*)
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
