#!/usr/bin/env bash
# Build the pinned local-control-plane binaries from the Go module proxy alone.
#
#   e2e/tools/build-binaries.sh            build what is missing (called by `make binaries`)
#   e2e/tools/build-binaries.sh --bin-dir  print the binary directory and exit
#   e2e/tools/build-binaries.sh --force    rebuild (all groups, or the ones named)
#   e2e/tools/build-binaries.sh helm kwok  only these groups
#   groups: kubernetes etcd kwok metrics-server helm kubeconform (control plane)
#           node containerd runc cni crictl pause                    (the real node)
#           prometheus                                                (canary analysis)
#           traefik                                (the real lane's Gateway API controller)
#           jaeger                      (trace backend for the tracing tests; e2e only)
#
# Output: ${KINFER_CACHE:-$HOME/.cache/kinfer}/k8s-<K8S_VERSION>/bin/ (outside the repo).
# Versions come from e2e/tools/versions.env. Binaries are grouped so that one
# `go build` shares compilation inside a group; each group writes a stamp once all
# of its binaries are in place, so an interrupted cold build resumes at the first
# group without a stamp, and a warm run only compares stamps (no Go needed).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/tools/versions.env
source "$HERE/versions.env"

KINFER_CACHE=${KINFER_CACHE:-$HOME/.cache/kinfer}
ROOT="$KINFER_CACHE/k8s-$K8S_VERSION"
BIN="$ROOT/bin"
STAMPS="$ROOT/stamps"
SRC="$ROOT/src"   # generated wrapper modules (kept: go.sum makes a rebuild cheap)
LOGS="$ROOT/logs"
PROGRESS_EVERY=${PROGRESS_EVERY:-30}   # seconds between "still building" lines

ALL_GROUPS=(kubernetes etcd kwok metrics-server helm kubeconform node containerd runc cni crictl pause
    prometheus traefik jaeger)
NODE_SRC="$HERE/../node"   # sources of our own node binaries (pause)
START=$SECONDS

log() { printf '[binaries %4ds] %s\n' "$((SECONDS - START))" "$*" >&2; }
die() {
    printf 'build-binaries: error: %s\n' "$*" >&2
    exit 1
}

# group_spec NAME sets G_MODULE, G_VERSION and G_PKGS ("import/path=binary" entries),
# plus G_CGO (1 for cgo builds) and G_TAGS (go build -tags). A G_MODULE starting with
# "./" is a module inside this repository, built in place (no wrapper, no download).
group_spec() {
    G_CGO=0 G_TAGS=""
    case "$1" in
    kubernetes)
        G_MODULE=k8s.io/kubernetes G_VERSION=v$K8S_VERSION
        G_PKGS=(k8s.io/kubernetes/cmd/kube-apiserver=kube-apiserver
            k8s.io/kubernetes/cmd/kube-controller-manager=kube-controller-manager
            k8s.io/kubernetes/cmd/kube-scheduler=kube-scheduler
            k8s.io/kubernetes/cmd/kubectl=kubectl) # matches the server; kwokctl needs one

        ;;
    etcd)
        # Since 3.5 the root package of the server module is etcd's main.
        G_MODULE=go.etcd.io/etcd/server/v3 G_VERSION=v$ETCD_VERSION
        G_PKGS=(go.etcd.io/etcd/server/v3=etcd)
        ;;
    kwok)
        G_MODULE=sigs.k8s.io/kwok G_VERSION=v$KWOK_VERSION
        G_PKGS=(sigs.k8s.io/kwok/cmd/kwok=kwok sigs.k8s.io/kwok/cmd/kwokctl=kwokctl)
        ;;
    metrics-server)
        G_MODULE=sigs.k8s.io/metrics-server G_VERSION=v$METRICS_SERVER_VERSION
        G_PKGS=(sigs.k8s.io/metrics-server/cmd/metrics-server=metrics-server)
        ;;
    helm)
        G_MODULE=helm.sh/helm/v3 G_VERSION=v$HELM_VERSION
        G_PKGS=(helm.sh/helm/v3/cmd/helm=helm)
        ;;
    kubeconform)
        G_MODULE=github.com/yannh/kubeconform G_VERSION=v$KUBECONFORM_VERSION
        G_PKGS=(github.com/yannh/kubeconform/cmd/kubeconform=kubeconform)
        ;;
    node)
        # Same module and replaces as the control plane: GOCACHE shares most of the work.
        G_MODULE=k8s.io/kubernetes G_VERSION=v$K8S_VERSION
        G_PKGS=(k8s.io/kubernetes/cmd/kubelet=kubelet k8s.io/kubernetes/cmd/kube-proxy=kube-proxy)
        ;;
    containerd)
        G_MODULE=github.com/containerd/containerd/v2 G_VERSION=v$CONTAINERD_VERSION
        G_PKGS=(github.com/containerd/containerd/v2/cmd/containerd=containerd
            github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2=containerd-shim-runc-v2
            github.com/containerd/containerd/v2/cmd/ctr=ctr)
        G_TAGS="no_btrfs no_zfs no_devmapper"
        ;;
    runc)
        # seccomp needs cgo and libseccomp-dev (make system-deps).
        G_MODULE=github.com/opencontainers/runc G_VERSION=v$RUNC_VERSION
        G_PKGS=(github.com/opencontainers/runc=runc)
        G_CGO=1 G_TAGS="seccomp urfave_cli_no_docs"
        ;;
    cni)
        G_MODULE=github.com/containernetworking/plugins G_VERSION=v$CNI_PLUGINS_VERSION
        G_PKGS=(github.com/containernetworking/plugins/plugins/main/bridge=bridge
            github.com/containernetworking/plugins/plugins/main/loopback=loopback
            github.com/containernetworking/plugins/plugins/ipam/host-local=host-local
            github.com/containernetworking/plugins/plugins/meta/portmap=portmap)
        ;;
    crictl)
        G_MODULE=sigs.k8s.io/cri-tools G_VERSION=v$CRICTL_VERSION
        G_PKGS=(sigs.k8s.io/cri-tools/cmd/crictl=crictl)
        ;;
    prometheus)
        # Debian's prometheus is built without Kubernetes discovery; this one has that and
        # the built-in ones (file, static, HTTP), and no other cloud's.
        G_MODULE=github.com/prometheus/prometheus G_VERSION=v$PROMETHEUS_MODULE_VERSION
        G_PKGS=(github.com/prometheus/prometheus/cmd/prometheus=prometheus)
        G_TAGS="remove_all_sd enable_kubernetes_sd"
        ;;
    traefik)
        # Its go.mod has three module-to-module replaces (copied into the wrapper by
        # replace_lines); v3.7 needs an unpublished nested module, so 3.6.x is the line.
        G_MODULE=github.com/traefik/traefik/v3 G_VERSION=v$TRAEFIK_VERSION
        G_PKGS=(github.com/traefik/traefik/v3/cmd/traefik=traefik)
        ;;
    jaeger)
        # Jaeger v2 all-in-one (cmd/jaeger: an OpenTelemetry Collector distribution with
        # OTLP receivers, in-memory storage and the query API on :16686). The module's
        # one module-to-module replace (sarama) is copied by replace_lines.
        G_MODULE=github.com/jaegertracing/jaeger G_VERSION=v$JAEGER_VERSION
        G_PKGS=(github.com/jaegertracing/jaeger/cmd/jaeger=jaeger)
        ;;
    pause)
        # The sandbox image's only binary: ours, so no image has to be pulled.
        G_MODULE=./e2e/node/pause G_VERSION=src-$(cat "$NODE_SRC/pause/main.go" "$NODE_SRC/pause/go.mod" | cksum | cut -d' ' -f1)
        G_PKGS=(kinfer.local/pause=pause)
        ;;
    *) die "unknown group $1" ;;
    esac
}

group_bins() {
    local p
    for p in "${G_PKGS[@]}"; do printf '%s\n' "${p#*=}"; done
}

# Build settings other than the defaults (cgo off, no tags) are part of the stamp too.
stamp_value() {
    local extra=""
    [[ $G_CGO == 1 || -n $G_TAGS ]] && extra=" cgo=$G_CGO tags=$G_TAGS"
    printf '%s@%s rev=%s%s %s\n' "$G_MODULE" "$G_VERSION" "$BUILD_REV" "$extra" "${G_PKGS[*]}"
}

# up_to_date NAME: stamp matches the pinned version and every binary is present.
up_to_date() {
    group_spec "$1"
    local b
    [[ -f "$STAMPS/$1" && "$(<"$STAMPS/$1")" == "$(stamp_value)" ]] || return 1
    for b in $(group_bins); do [[ -x "$BIN/$b" ]] || return 1; done
}

# --- toolchain and proxy checks (only when something must be built) --------

find_go() {
    if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
        PATH="/usr/local/go/bin:$PATH"
    fi
    command -v go >/dev/null 2>&1 ||
        die "the Go toolchain is missing: 'go' is not on PATH (nor /usr/local/go/bin). Install Go >= $GO_MIN_VERSION from https://go.dev/dl/ and retry."
    local have
    have=$(go env GOVERSION) || die "'go env GOVERSION' failed; is the Go install broken?"
    have=${have#go}
    have=${have%%[!0-9.]*} # drop suffixes such as "rc1" or " X:..."
    if [[ "$(printf '%s\n%s\n' "$GO_MIN_VERSION" "$have" | sort -V | head -n1)" != "$GO_MIN_VERSION" ]]; then
        die "Go $have is too old: these pins need Go >= $GO_MIN_VERSION ($(command -v go)). Install a newer Go from https://go.dev/dl/."
    fi
    # Never let a go.mod 'toolchain' line trigger a toolchain download, never pick
    # up a go.work, and build static binaries (no C toolchain needed).
    export GOTOOLCHAIN=local GOWORK=off GO111MODULE=on CGO_ENABLED=0
    log "using $(go version) (GOPROXY=$(go env GOPROXY), GOCACHE=$(go env GOCACHE))"
}

# download_module MOD@VER: fetch into the module cache (a no-op when cached) and
# print the path of its go.mod. Fails fast, saying what could not be reached.
download_module() {
    local out gomod err
    if ! out=$(timeout "${GO_DOWNLOAD_TIMEOUT:-300}" go mod download -json "$1" 2>&1); then
        err=$(sed -n 's/.*"Error": "\(.*\)".*/\1/p' <<<"$out" | sed 's/\\"/"/g')
        die "cannot fetch $1 from the Go module proxy (GOPROXY=$(go env GOPROXY)): ${err:-$out}
  The build needs network access to the Go module proxy (or a GOMODCACHE that already holds $1)."
    fi
    gomod=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' <<<"$out")
    [[ -f "$gomod" ]] || die "go mod download $1 gave no go.mod path: $out"
    printf '%s\n' "$gomod"
}

# --- wrapper modules ---------------------------------------------------------

# replace_lines GROUP GOMOD: replace directives the wrapper module needs.
# `go install mod@ver` refuses modules whose go.mod has replace directives, and a
# dependency's replaces are ignored, so the wrapper has to restate them:
#  * k8s.io/kubernetes points its staging modules at ./staging/src/...; we pin
#    each of them to the published k8s.io/<name> v0.<minor>.<patch> instead.
#    The list is read from the downloaded go.mod, never typed by hand.
#  * module-to-module replaces (x => y vN) are copied verbatim.
#  * other local-path replaces (etcd's ../api ...) are dropped: those modules'
#    require lines already carry the matching published versions.
replace_lines() {
    local group=$1 gomod=$2 staging=""
    [[ $group == kubernetes || $group == node ]] && staging="v0.${K8S_VERSION#*.}"
    awk -v staging="$staging" '
        /^replace[ \t]*\($/ { inblock = 1; next }
        inblock && /^\)/     { inblock = 0; next }
        /^replace[ \t]/      { sub(/^replace[ \t]+/, ""); single = 1 }
        (inblock || single) && /=>/ {
            line = $0; sub(/[ \t]*\/\/.*$/, "", line); sub(/^[ \t]+/, "", line)
            split(line, lr, /[ \t]*=>[ \t]*/)
            n = split(lr[1], l, /[ \t]+/); left = (l[1] == "" ? l[2] : l[1])
            m = split(lr[2], r, /[ \t]+/)
            if (r[1] ~ /^\.\.?\//) {
                if (staging != "" && r[1] ~ /^\.\/staging\//) print "\t" left " => " left " " staging
            } else {
                print "\t" line
            }
        }
        { single = 0 }
    ' "$gomod"
}

# write_wrapper DIR GROUP GOMOD: a tiny main module that requires the target.
write_wrapper() {
    local dir=$1 group=$2 gomod=$3 godirective replaces
    godirective=$(awk '$1 == "go" { print $2; exit }' "$gomod")
    replaces=$(replace_lines "$group" "$gomod")
    mkdir -p "$dir"
    rm -f "$dir/go.mod"
    {
        echo "// Generated by e2e/tools/build-binaries.sh for $G_MODULE@$G_VERSION; do not edit."
        echo "module kinfer.local/build/$group"
        echo
        echo "go ${godirective:-1.26}"
        echo
        echo "require $G_MODULE $G_VERSION"
        if [[ -n "$replaces" ]]; then
            printf '\nreplace (\n%s\n)\n' "$replaces"
        fi
    } >"$dir/go.mod"
}

# --- version stamping (-ldflags -X) ------------------------------------------

# module_time MOD VER: the release time the proxy records, used as buildDate so
# that rebuilds are reproducible.
module_time() {
    local info
    info="$(go env GOMODCACHE)/cache/download/$1/@v/$2.info"
    sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info" 2>/dev/null || true
}

ldflags_for() {
    local group=$1 gomod=$2 date flags="-s -w" p minor
    date=$(module_time "$G_MODULE" "$G_VERSION")
    case "$group" in
    kubernetes | node)
        # Same variables hack/lib/version.sh sets: `kube-apiserver --version`,
        # /version and Helm's capability checks then report the real release.
        minor=${K8S_VERSION#*.}
        minor=${minor%%.*}
        for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
            flags+=" -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
            flags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
        done
        ;;
    metrics-server)
        # kwokctl parses `metrics-server --version`; the default is unparsable.
        p=k8s.io/client-go/pkg/version
        flags+=" -X $p.gitVersion=$G_VERSION -X $p.gitTreeState=clean -X $p.buildDate=$date"
        ;;
    kwok)
        p=sigs.k8s.io/kwok/pkg/consts
        flags+=" -X $p.Version=$G_VERSION -X $p.KubeVersion=$K8S_VERSION"
        ;;
    helm)
        # As helm's Makefile: version, plus the default Kubernetes version for
        # `helm template`/lint, derived from the client-go it is built against.
        local cg
        cg=$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")
        cg=${cg#v0.}
        p=helm.sh/helm/v3
        flags+=" -X $p/internal/version.version=$G_VERSION -X $p/internal/version.gitTreeState=clean"
        if [[ -n "$cg" ]]; then
            flags+=" -X $p/pkg/chartutil.k8sVersionMajor=1 -X $p/pkg/chartutil.k8sVersionMinor=${cg%%.*}"
            flags+=" -X $p/pkg/lint/rules.k8sVersionMajor=1 -X $p/pkg/lint/rules.k8sVersionMinor=${cg%%.*}"
        fi
        ;;
    kubeconform) flags+=" -X main.version=$G_VERSION" ;;
    containerd) flags+=" -X github.com/containerd/containerd/v2/version.Version=$G_VERSION" ;;
    runc) flags+=" -X main.version=${G_VERSION#v}" ;;
    crictl) flags+=" -X sigs.k8s.io/cri-tools/pkg/version.Version=$G_VERSION" ;;
    prometheus)
        # The module's v0.3XX.Y is Prometheus 3.XX.Y.
        local release=${G_VERSION#v0.}
        flags+=" -X github.com/prometheus/common/version.Version=3.${release:1}"
        ;;
    traefik) flags+=" -X github.com/traefik/traefik/v3/pkg/version.Version=$G_VERSION" ;;
    jaeger) flags+=" -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$G_VERSION" ;;
    etcd) ;; # etcd's version is a constant in go.etcd.io/etcd/api/v3/version
    esac
    printf '%s\n' "$flags"
}

# --- building ----------------------------------------------------------------

# run_logged WHAT LOGFILE CMD...: run CMD with output in LOGFILE, printing a
# "still <WHAT>" line every PROGRESS_EVERY seconds (a cold Kubernetes build
# takes many minutes on two cores, and silence looks like a hang).
run_logged() {
    local what=$1 logfile=$2 pid t0=$SECONDS rc=0 next=$((SECONDS + PROGRESS_EVERY))
    shift 2
    "$@" >>"$logfile" 2>&1 &
    pid=$!
    CHILD=$pid
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        if ((SECONDS >= next)); then
            next=$((SECONDS + PROGRESS_EVERY))
            log "   still $what ... $((SECONDS - t0))s, $(grep -c . "$logfile") log lines"
        fi
    done
    wait "$pid" || rc=$?
    CHILD=""
    if ((rc != 0)); then
        printf '%s\n' "---- last 40 lines of $logfile ----" >&2
        tail -n 40 "$logfile" >&2
        die "$what failed (exit $rc); full log: $logfile"
    fi
}

build_group() {
    local group=$1 t0=$SECONDS gomod dir logfile ldflags p pkgs=() b
    group_spec "$group"
    log "== $group: $G_MODULE@$G_VERSION -> $(group_bins | tr '\n' ' ')"
    logfile="$LOGS/$group.log"
    : >"$logfile"
    for p in "${G_PKGS[@]}"; do pkgs+=("${p%%=*}"); done
    if [[ $G_MODULE == ./* ]]; then
        dir="$HERE/../../$G_MODULE" # our own module: no dependencies to resolve
        ldflags="-s -w"
    else
        gomod=$(download_module "$G_MODULE@$G_VERSION")
        dir="$SRC/$group"
        write_wrapper "$dir" "$group" "$gomod"
        ldflags=$(ldflags_for "$group" "$gomod")
        log "   resolving dependencies (go get)"
        local gets=()
        for p in "${pkgs[@]}"; do gets+=("$p@$G_VERSION"); done
        run_logged "resolving $group dependencies (go get; needs the module proxy unless cached)" \
            "$logfile" go -C "$dir" get "${gets[@]}"
    fi

    # One `go build` per group so the packages the binaries share compile once.
    TMP_OUT=$(mktemp -d "$ROOT/.tmp-$group.XXXXXX")
    log "   compiling ${#pkgs[@]} package(s) (go build -v output in $logfile)"
    CGO_ENABLED=$G_CGO run_logged "building $group" "$logfile" \
        go -C "$dir" build -v -trimpath -tags "$G_TAGS" -ldflags "$ldflags" -o "$TMP_OUT/" "${pkgs[@]}"

    # `go build -o dir/` names a binary after its import path, dropping a /vN
    # suffix (go.etcd.io/etcd/server/v3 -> server); rename to what we want.
    for p in "${G_PKGS[@]}"; do
        local path=${p%%=*} want=${p#*=} got
        got=${path##*/}
        [[ $got =~ ^v[0-9]+$ ]] && got=$(basename "$(dirname "$path")")
        [[ -x "$TMP_OUT/$got" ]] || die "go build produced no $got for $path (see $logfile)"
        [[ $got == "$want" ]] || mv -f "$TMP_OUT/$got" "$TMP_OUT/$want"
    done
    # rename(2) within one filesystem is atomic: bin/ never holds a half binary.
    for b in $(group_bins); do mv -f "$TMP_OUT/$b" "$BIN/$b"; done
    rmdir "$TMP_OUT" 2>/dev/null || rm -rf "$TMP_OUT"
    TMP_OUT=""
    stamp_value >"$STAMPS/.$group.tmp"
    mv -f "$STAMPS/.$group.tmp" "$STAMPS/$group"
    log "== $group built in $((SECONDS - t0))s"
    printf '%s %s@%s %ss\n' "$(date -u +%FT%TZ)" "$group" "$G_VERSION" "$((SECONDS - t0))" >>"$LOGS/timings.txt"
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$?
    [[ -n "${CHILD:-}" ]] && kill "$CHILD" 2>/dev/null && wait "$CHILD" 2>/dev/null
    [[ -n "${TMP_OUT:-}" && -d "$TMP_OUT" ]] && rm -rf "$TMP_OUT"
    exit "$rc"
}

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }

main() {
    local force=0 g todo=() want=()
    while (($#)); do
        case "$1" in
        --bin-dir)
            printf '%s\n' "$BIN"
            return 0
            ;;
        --force) force=1 ;;
        -h | --help)
            usage
            return 0
            ;;
        -*) die "unknown option '$1' (try --help)" ;;
        *)
            [[ " ${ALL_GROUPS[*]} " == *" $1 "* ]] || die "unknown group '$1' (groups: ${ALL_GROUPS[*]})"
            want+=("$1")
            ;;
        esac
        shift
    done
    ((${#want[@]})) || want=("${ALL_GROUPS[@]}")

    for g in "${want[@]}"; do
        if ((force)) || ! up_to_date "$g"; then todo+=("$g"); fi
    done
    if ((${#todo[@]} == 0)); then
        log "binaries up to date in $BIN"
        return 0
    fi

    mkdir -p "$BIN" "$STAMPS" "$SRC" "$LOGS"
    # Two concurrent `make binaries` would fight over the same files: serialise.
    exec 9>"$ROOT/.lock"
    if ! flock -n 9; then
        log "another build holds $ROOT/.lock; waiting for it"
        flock 9
    fi
    trap cleanup EXIT
    trap 'log "interrupted; completed groups are kept, rerun to resume"; exit 130' INT TERM
    rm -rf "$ROOT"/.tmp-* # leftovers of an interrupted run
    find_go
    # Fetch every top-level module first: an unreachable proxy fails now, not
    # after the Kubernetes group has compiled for many minutes.
    for g in "${todo[@]}"; do
        group_spec "$g"
        [[ $G_MODULE == ./* ]] || download_module "$G_MODULE@$G_VERSION" >/dev/null
    done
    log "to build: ${todo[*]} (cold builds take a while; the Kubernetes group is the long pole)"
    for g in "${todo[@]}"; do
        if ((force)) || ! up_to_date "$g"; then build_group "$g"; fi
    done
    log "done: binaries in $BIN ($((SECONDS - START))s)"
}

# One line: bash has read all of it before main runs, so editing this file
# during a (long) build cannot make bash read on into a half-written line.
main "$@"; exit
