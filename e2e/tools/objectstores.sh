#!/usr/bin/env bash
# Local implementations of object-store APIs for the e2e suite, each from a package registry:
#   s3rver          (S3)                  npm registry
#   fake-gcs-server (Google Cloud Storage) Go module proxy, built with the local Go toolchain
#   azurite         (Azure Blob Storage)  npm registry
# The npm servers install with `npm ci --ignore-scripts` from the lockfile in npm/<name>/
# (exact versions and integrity hashes) into $KINFER_CACHE/objectstores/<name>-<version>-<key>/,
# the key a hash of that lockfile; the Go one into <name>-<version>/ (outside the repo). A warm
# run does nothing. `objectstores.sh NAME` prints that server's executable;
# with no argument, all three are installed and nothing is printed.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=versions.env
source versions.env
KINFER_CACHE=${KINFER_CACHE:-$HOME/.cache/kinfer}
ROOT="$KINFER_CACHE/objectstores"

npm_server() { # package version executable
    local src="$PWD/npm/$1" key dir bin locked
    # The cache key covers the lockfile: a regenerated lockfile installs afresh.
    key=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-12)
    dir="$ROOT/$1-$2-$key"
    bin="$dir/node_modules/.bin/$3"
    if [[ ! -x $bin ]]; then
        command -v npm >/dev/null || { echo "objectstores.sh: npm is needed (make system-deps)" >&2; exit 1; }
        locked=$(node -p 'require(process.argv[1]).packages["node_modules/" + process.argv[2]].version' \
            "$src/package-lock.json" "$1")
        [[ $locked == "$2" ]] || {
            echo "objectstores.sh: npm/$1/package-lock.json has $1 $locked, versions.env $2:" \
                "regenerate the lockfile (e2e/README.md, Object stores)" >&2
            exit 1
        }
        # Exactly the locked tree (versions and integrity hashes), no install scripts, from a
        # copy: npm writes node_modules next to package.json.
        rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
        cp "$src/package.json" "$src/package-lock.json" "$dir.tmp/"
        npm ci --prefix "$dir.tmp" --ignore-scripts --omit=dev --no-audit --no-fund >&2
        rm -rf "$dir" && mv "$dir.tmp" "$dir"
        find "$ROOT" -mindepth 1 -maxdepth 1 -name "$1-*" ! -name "${dir##*/}" -exec rm -rf {} +
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
