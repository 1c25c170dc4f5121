#!/usr/bin/env bash
# Local implementations of object-store APIs for the e2e suite, each from a package registry:
#   s3rver          (S3)                  npm registry
#   fake-gcs-server (Google Cloud Storage) Go module proxy, built with the local Go toolchain
#   azurite         (Azure Blob Storage)  npm registry
# Installed once per version into $KINFER_CACHE/objectstores/<name>-<version>/ (outside the
# repo); a warm run does nothing. `objectstores.sh NAME` prints that server's executable;
# with no argument, all three are installed and nothing is printed.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=versions.env
source versions.env
KINFER_CACHE=${KINFER_CACHE:-$HOME/.cache/kinfer}
ROOT="$KINFER_CACHE/objectstores"

npm_server() { # package version executable
    local dir="$ROOT/$1-$2" bin
    bin="$dir/node_modules/.bin/$3"
    if [[ ! -x $bin ]]; then
        command -v npm >/dev/null || { echo "objectstores.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
        mkdir -p "$dir"
        npm install --prefix "$dir" --no-audit --no-fund --omit=dev "$1@$2" >&2
    fi
    echo "$bin"
}

go_server() { # module version executable
    local dir="$ROOT/$3-$2"
    if [[ ! -x $dir/$3 ]]; then
        command -v go >/dev/null || { echo "objectstores.sh: a Go toolchain is needed" >&2; exit 1; }
        mkdir -p "$dir"
        GOTOOLCHAIN=local GOWORK=off GO111MODULE=on CGO_ENABLED=0 GOBIN="$dir.tmp" \
            go install "$1@v$2" >&2
        mv "$dir.tmp/$3" "$dir/$3" && rmdir "$dir.tmp"
    fi
    echo "$dir/$3"
}

s3rver() { npm_server s3rver "$S3RVER_VERSION" s3rver; }
fake-gcs-server() { go_server github.com/fsouza/fake-gcs-server "$FAKE_GCS_SERVER_VERSION" fake-gcs-server; }
azurite() { npm_server azurite "$AZURITE_VERSION" azurite-blob; }

case "${1:-all}" in
    s3rver | fake-gcs-server | azurite) "$1" ;;
    all) s3rver >/dev/null && fake-gcs-server >/dev/null && azurite >/dev/null ;;
    *) echo "usage: objectstores.sh [s3rver|fake-gcs-server|azurite]" >&2; exit 2 ;;
esac
