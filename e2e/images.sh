#!/usr/bin/env bash
# `make images`: kinfer's container images, built with no Docker engine and no registry.
#
#   e2e/images.sh          build what changed; write $CLUSTER_DIR/images.env naming the images
#   e2e/images.sh env      print the path of that file (exit 1 when an image is missing)
#
# - base: a Debian $DEBIAN_SUITE minbase with python3, bootstrapped by mmdebstrap from this
#   host's own apt sources (no image is pulled);
# - pause: the real node's sandbox image, our e2e/node/pause binary alone;
# - operator, runtime: Dockerfile.operator and Dockerfile.runtime as they are, built by buildah
#   with the base as their build arg (the runtime as its CPU flavour, KINFER_EXTRAS=runtime).
#
# Each image is stored as an OCI archive in $KINFER_CACHE/images, named after a key of its
# inputs (Dockerfile, build args, base, and every file of the build context), so a warm run
# rebuilds nothing that did not change. e2e/node.sh imports the archives into the node.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=e2e/tools/versions.env
source "$HERE/tools/versions.env"

KINFER_CACHE=${KINFER_CACHE:-$HOME/.cache/kinfer}
CLUSTER_DIR=${CLUSTER_DIR:-$REPO/.cluster}
BIN_DIR="$KINFER_CACHE/k8s-$K8S_VERSION/bin"
IMG="$KINFER_CACHE/images"
ENV_FILE="$CLUSTER_DIR/images.env"
START=$SECONDS

log() { printf '[images %4ds] %s\n' "$((SECONDS - START))" "$*" >&2; }
die() {
    printf 'images.sh: error: %s\n' "$*" >&2
    exit 1
}

key_of() { sha256sum | cut -c1-12; }

# context_key: every file the Dockerfiles' build context sends (see .dockerignore).
context_key() {
    (cd "$REPO" && find pyproject.toml README.md operator runtime -type f \
        ! -path '*/__pycache__/*' ! -name '*.py[co]' ! -path '*.egg-info/*' -print0 |
        sort -z | xargs -0 sha256sum) | key_of
}

# Our own containers-storage, under the cache: buildah never touches /var/lib/containers.
# skip_mount_home: the overlay driver would otherwise leave its home bind-mounted.
setup_storage() {
    mkdir -p "$IMG/storage" "$IMG/tmp"
    cat >"$IMG/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$IMG/storage"
runroot = "$IMG/run"
[storage.options.overlay]
skip_mount_home = "true"
EOF
    export CONTAINERS_STORAGE_CONF="$IMG/storage.conf" TMPDIR="$IMG/tmp"
}

have_archive() { [[ -s "$IMG/$1.oci.tar" ]]; }

# export_archive NAME IMAGE: containers-storage -> $IMG/NAME.oci.tar, atomically; older
# archives of the same image are dropped so the cache stays bounded.
export_archive() {
    local name=$1 image=$2 prefix=${1%-*}
    rm -f "$IMG/$name.oci.tar.tmp"
    buildah push --quiet "$image" "oci-archive:$IMG/$name.oci.tar.tmp:$image" >/dev/null
    mv -f "$IMG/$name.oci.tar.tmp" "$IMG/$name.oci.tar"
    find "$IMG" -maxdepth 1 -name "$prefix-*.oci.tar" ! -name "$name.oci.tar" -delete
}

host_sources() {
    local f found=()
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -s $f ]] && found+=("$f")
    done
    ((${#found[@]})) || die "no apt sources on this host (/etc/apt/sources.list[.d])"
    printf '%s\n' "${found[@]}"
}

build_base() {
    local sources key tar
    mapfile -t sources < <(host_sources)
    key=$( (printf '%s %s\n' "$DEBIAN_SUITE" "$IMAGE_REV" && cat "${sources[@]}") | key_of)
    BASE_IMAGE="localhost/kinfer-base:$DEBIAN_SUITE-$key"
    if buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
        log "base $BASE_IMAGE: cached"
        return
    fi
    tar="$IMG/base-$DEBIAN_SUITE-$key.tar"
    if [[ ! -s $tar ]]; then
        log "base: mmdebstrap $DEBIAN_SUITE minbase + python3 from the host's apt sources"
        # Docs, man pages and translations are dropped (copyright files kept): a smaller base.
        mmdebstrap --quiet --variant=minbase --format=tar \
            --include=python3,python3-venv,python-is-python3,ca-certificates \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            "$DEBIAN_SUITE" "$tar.tmp" "${sources[@]}" >"$IMG/mmdebstrap.log" 2>&1 ||
            { tail -n 20 "$IMG/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
        mv -f "$tar.tmp" "$tar"
        find "$IMG" -maxdepth 1 -name "base-*.tar" ! -name "${tar##*/}" -delete
    fi
    local c
    c=$(buildah from --quiet scratch)
    buildah add --quiet "$c" "$tar" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd /bin/bash "$c"
    buildah commit --quiet --rm "$c" "$BASE_IMAGE" >/dev/null
    log "base $BASE_IMAGE: built"
}

build_pause() {
    local key
    key=$(key_of <"$BIN_DIR/pause")
    PAUSE_IMAGE="localhost/kinfer-pause:$key"
    PAUSE_ARCHIVE="pause-$key"
    have_archive "$PAUSE_ARCHIVE" && { log "pause: cached"; return; }
    local c
    c=$(buildah from --quiet scratch)
    buildah copy --quiet --chmod 0755 "$c" "$BIN_DIR/pause" /pause >/dev/null
    buildah config --entrypoint '["/pause"]' --user 65535:65535 "$c"
    buildah commit --quiet --rm "$c" "$PAUSE_IMAGE" >/dev/null
    export_archive "$PAUSE_ARCHIVE" "$PAUSE_IMAGE"
    log "pause $PAUSE_IMAGE: built"
}

# build_dockerfile NAME DOCKERFILE BASE_ARG [BUILD_ARG...]: sets <NAME>_IMAGE/_ARCHIVE.
build_dockerfile() {
    local name=$1 dockerfile=$2 base_arg=$3 key args=()
    shift 3
    args=(--build-arg "$base_arg=$BASE_IMAGE")
    local a
    for a in "$@"; do args+=(--build-arg "$a"); done
    key=$( (cat "$REPO/$dockerfile" "$REPO/.dockerignore" && printf '%s\n' "${args[@]}" && context_key) | key_of)
    local image="localhost/kinfer-$name:$key" archive="$name-$key"
    printf -v "${name^^}_IMAGE" %s "$image"
    printf -v "${name^^}_ARCHIVE" %s "$archive"
    have_archive "$archive" && { log "$name $image: cached"; return; }
    log "$name: buildah bud -f $dockerfile ${*:-} (log: $IMG/$name.log)"
    local mounts=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
    # Where this host reaches PyPI through a TLS-inspecting proxy, RUN steps need its CA bundle
    # and pip settings; the images themselves keep Debian's stock bundle.
    [[ -f /etc/pip.conf ]] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
    if ! buildah bud --quiet --layers --pull=never --network host --runtime "$BIN_DIR/runc" \
        "${mounts[@]}" "${args[@]}" -f "$REPO/$dockerfile" -t "$image" "$REPO" \
        >"$IMG/$name.log" 2>&1; then
        tail -n 30 "$IMG/$name.log" >&2
        die "building $dockerfile failed (full log: $IMG/$name.log)"
    fi
    export_archive "$archive" "$image"
    log "$name $image: built ($(du -m "$IMG/$archive.oci.tar" | cut -f1) MiB archive)"
    drop_older "localhost/kinfer-$name" "$image"
}

# drop_older REPOSITORY KEEP: earlier builds of an image leave the storage (their archives
# are gone already), so the cache stays bounded.
drop_older() {
    local ref
    for ref in $(buildah images --format '{{.Name}}:{{.Tag}}' 2>/dev/null | grep -F "$1:"); do
        [[ $ref == "$2" ]] || buildah rmi "$ref" >/dev/null 2>&1 || true
    done
}

require() {
    local t
    for t in buildah mmdebstrap; do
        command -v "$t" >/dev/null || die "$t is missing: run 'make system-deps'"
    done
    for t in runc pause; do
        [[ -x $BIN_DIR/$t ]] || die "$BIN_DIR/$t is missing: run 'make binaries'"
    done
}

write_env() {
    mkdir -p "$CLUSTER_DIR"
    cat >"$ENV_FILE.tmp" <<EOF
# Written by e2e/images.sh: kinfer's images, as e2e/node.sh imports them into the real node.
KINFER_IMAGE_DIR=$IMG
KINFER_PAUSE_IMAGE=$PAUSE_IMAGE
KINFER_OPERATOR_IMAGE=$OPERATOR_IMAGE
KINFER_RUNTIME_IMAGE=$RUNTIME_IMAGE
KINFER_IMAGE_ARCHIVES="$PAUSE_ARCHIVE $OPERATOR_ARCHIVE $RUNTIME_ARCHIVE"
EOF
    mv -f "$ENV_FILE.tmp" "$ENV_FILE"
}

# Paths buildah writes outside its storage no matter what (its blob cache, and the CNI config
# directory it creates even with --network host); removed when we created them.
HOST_PATHS=(/var/lib/containers /run/containers /etc/cni)
cleanup_host_paths() {
    local p
    for p in "${HOST_PATHS[@]}"; do
        [[ " ${PREEXISTING[*]} " == *" $p "* ]] || rm -rf "$p"
    done
}

cmd_build() {
    require
    PREEXISTING=()
    local p
    for p in "${HOST_PATHS[@]}"; do [[ -e $p ]] && PREEXISTING+=("$p"); done
    trap cleanup_host_paths EXIT
    mkdir -p "$IMG"
    exec 9>"$IMG/.lock"
    flock 9
    setup_storage
    build_base
    build_pause
    build_dockerfile operator Dockerfile.operator PYTHON_IMAGE
    build_dockerfile runtime Dockerfile.runtime CUDA_IMAGE KINFER_EXTRAS=runtime
    # Untagged intermediate layers: a changed build context invalidates most of them anyway.
    buildah rmi --prune >/dev/null 2>&1 || true
    write_env
    log "done: $ENV_FILE"
}

case "${1:-build}" in
build) cmd_build ;;
env)
    [[ -f $ENV_FILE ]] || die "no $ENV_FILE: run 'make images'"
    printf '%s\n' "$ENV_FILE"
    ;;
*)
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
