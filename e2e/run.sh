#!/usr/bin/env bash
# The e2e suite as `make test` runs it: the kwok lane and the real lane side by side, each a
# pytest session with its own namespace prefix, then the cases marked `exclusive` (a
# cluster-wide operator, or a quiet cluster) alone. Most of the suite's time is spent waiting
# on the cluster (pods, probes, canary pauses), so the kwok and real lanes each run on several
# pytest-xdist workers (a whole module per worker, so module fixtures are set up once): each
# worker has its own namespace prefix, its own operator process and its own block of the
# lane's host ports (e2e/conftest.py, e2e/harness.py). Each lane's output goes to a log,
# printed whole when the lane ends.
#   e2e/run.sh [PYTEST_ARGS...]   (KUBECONFIG and PATH as `make e2e` sets them)
#   KINFER_E2E_KWOK_WORKERS (0), KINFER_E2E_REAL_WORKERS (0): workers per lane; 0: one process
#   (the real lane: its pods are CPU-bound on a 2-core machine, and each worker runs its own Traefik).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTEST=${PYTEST:-.venv/bin/pytest}
LOGS=${CLUSTER_DIR:-$PWD/.cluster}/e2e-logs
KWOK_WORKERS=${KINFER_E2E_KWOK_WORKERS:-0}
REAL_WORKERS=${KINFER_E2E_REAL_WORKERS:-0}
mkdir -p "$LOGS"
common=(--durations=0 --durations-min=1.0 "$@")

# workers N: pytest-xdist's arguments for N workers, a whole module per worker.
workers() { echo "-n $1 --dist loadfile"; }

# lane NAME PORTS PYTEST_ARGS...: one pytest session; a fresh namespace prefix per run, and
# PORTS (FIRST-LAST, below the kernel's ephemeral range and Kubernetes' NodePorts) for the
# servers its workers start on this host.
lane() {
    local name=$1 ports=$2 started=$SECONDS rc=0
    shift 2
    KINFER_E2E_SESSION="$name$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')" \
        KINFER_E2E_PORTS="$ports" \
        "$PYTEST" "${common[@]}" "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
    # pytest's 5: nothing selected (a lane whose cases are all exclusive, say): not a failure.
    [[ $rc == 5 ]] && rc=0
    printf '::: e2e lane %-9s %5ss  rc=%s\n' "$name" $((SECONDS - started)) "$rc" >>"$LOGS/lanes.txt"
    return "$rc"
}
show() { printf '\n===== e2e lane %s =====\n' "$1"; cat "$LOGS/$1.log"; }

: >"$LOGS/lanes.txt"
rc=0
# shellcheck disable=SC2046  # workers' output is meant to split into arguments
lane kwok 20000-23999 $(workers "$KWOK_WORKERS") e2e -m "not exclusive and not real_node" &
kwok=$!
# shellcheck disable=SC2046
lane real 24000-27999 $(workers "$REAL_WORKERS") e2e -m "real_node and not exclusive" &
real_lane=$!
wait "$kwok" || rc=1
show kwok
wait "$real_lane" || rc=1
show real
lane exclusive 28000-29999 e2e -m exclusive || rc=1
show exclusive
echo
cat "$LOGS/lanes.txt"
exit "$rc"
