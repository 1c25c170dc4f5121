#!/usr/bin/env bash
# Print the directory holding the pinned Gateway API standard CRDs, fetched from the Go
# module proxy (the sigs.k8s.io/gateway-api module zip carries config/crd/standard/).
# The e2e suite installs HTTPRoute from there to test kinfer's Gateway API traffic mode.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
command -v go >/dev/null || { echo "gateway-api-crds: Go is not installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
dir=$(GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json \
        "sigs.k8s.io/gateway-api@v${GATEWAY_API_VERSION}" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d $dir/config/crd/standard ]] || {
  echo "gateway-api-crds: module proxy gave no CRDs for v${GATEWAY_API_VERSION}" >&2; exit 1; }
echo "$dir/config/crd/standard"
