#!/usr/bin/env bash
# Local implementations of object-store APIs for the e2e suite, from the npm registry:
# s3rver (S3). Installed once per version into $KINFER_CACHE/objectstores/ (outside the repo);
# a warm run does nothing. Prints the s3rver executable's path.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=versions.env
source versions.env
KINFER_CACHE=${KINFER_CACHE:-$HOME/.cache/kinfer}
DIR="$KINFER_CACHE/objectstores/s3rver-$S3RVER_VERSION"
BIN="$DIR/node_modules/.bin/s3rver"
if [[ ! -x $BIN ]]; then
    command -v npm >/dev/null || { echo "objectstores.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
    mkdir -p "$DIR"
    npm install --prefix "$DIR" --no-audit --no-fund --omit=dev "s3rver@$S3RVER_VERSION" >&2
fi
echo "$BIN"
