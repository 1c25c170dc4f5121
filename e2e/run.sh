#!/usr/bin/env bash
# The e2e suite as `make test` runs it: the kwok lane and the real lane side by side, each a
# pytest session with its own namespace prefix and its own operator process, then the cases
# marked `exclusive` (a cluster-wide operator, or a quiet cluster) alone. Most of the suite's
# time is spent waiting on the cluster (pods, probes, canary pauses), so two lanes share two
# cores well. Each lane's output goes to a log, printed whole when the lane ends.
#   e2e/run.sh [PYTEST_ARGS...]   (KUBECONFIG and PATH as `make e2e` sets them)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTEST=${PYTEST:-.venv/bin/pytest}
LOGS=${CLUSTER_DIR:-$PWD/.cluster}/e2e-logs
mkdir -p "$LOGS"
common=(--durations=0 --durations-min=1.0 "$@")

# lane NAME PYTEST_ARGS...: one pytest session; a fresh namespace prefix per run.
lane() {
    local name=$1 started=$SECONDS rc=0
    shift
    KINFER_E2E_SESSION="$name$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')" \
        "$PYTEST" "${common[@]}" "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
    # pytest's 5: nothing selected (a lane whose cases are all exclusive, say): not a failure.
    [[ $rc == 5 ]] && rc=0
    printf '::: e2e lane %-9s %5ss  rc=%s\n' "$name" $((SECONDS - started)) "$rc" >>"$LOGS/lanes.txt"
    return "$rc"
}
show() { printf '\n===== e2e lane %s =====\n' "$1"; cat "$LOGS/$1.log"; }

: >"$LOGS/lanes.txt"
rc=0
lane kwok e2e -m "not exclusive and not real_node" &
kwok=$!
lane real e2e -m "real_node and not exclusive" &
real_lane=$!
wait "$kwok" || rc=1
show kwok
wait "$real_lane" || rc=1
show real
lane exclusive e2e -m exclusive || rc=1
show exclusive
echo
cat "$LOGS/lanes.txt"
exit "$rc"
