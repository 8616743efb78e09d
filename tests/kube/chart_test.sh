#!/usr/bin/env bash
# The Helm chart, CRD, dashboards and Dockerfiles, checked statically with the real tools: helm
# lint and helm template (helm built from its Go module), every rendered manifest and the CRD
# against Kubernetes' strict JSON schemas, dashboards regenerated from helm/gen_dashboards.py,
# and hadolint on every Dockerfile.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
python="$root/.venv/bin/python"
helm="$("$root/tests/kube/build-tools.sh" 2>/dev/null)/helm"
chart="$root/helm/zk0"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

all_on=(--set metrics.serviceMonitor.enabled=true --set metrics.podMonitor.enabled=true
        --set metrics.prometheusRule.enabled=true --set networkPolicy.enabled=true)

echo "== helm lint"
"$helm" lint --strict "$chart" 2>/dev/null || fail "helm lint (defaults)"
"$helm" lint --strict "$chart" "${all_on[@]}" 2>/dev/null || fail "helm lint (all toggles on)"

echo "== helm template, validated against the Kubernetes and prometheus-operator schemas"
for scope in cluster namespace; do
  "$helm" template zk0 "$chart" --namespace zk0-system --include-crds --set rbac.scope=$scope "${all_on[@]}" \
    2>/dev/null > "$work/$scope.yaml"
  "$python" "$root/tests/kube/validate_manifests.py" "$work/$scope.yaml" || fail "rendered chart ($scope scope)"
  for kind in Deployment ServiceAccount Lease ServiceMonitor PodMonitor PrometheusRule ConfigMap CustomResourceDefinition; do
    grep -q "^kind: $kind$" "$work/$scope.yaml" || fail "$kind missing from the rendered chart ($scope scope)"
  done
done
grep -q "^kind: ClusterRole$" "$work/cluster.yaml" || fail "cluster scope renders no ClusterRole"
if grep -q "^kind: ClusterRole$" "$work/namespace.yaml"; then fail "namespace scope renders a ClusterRole"; fi
grep -q -- "--watch-namespace" "$work/namespace.yaml" || fail "namespace scope does not restrict the operator's watch"
grep -q -- "--mutual-tls" "$work/cluster.yaml" || fail "mutual TLS is not on by default"
# Toggles off: no monitoring objects (clusters without prometheus-operator must install cleanly).
"$helm" template zk0 "$chart" 2>/dev/null > "$work/defaults.yaml"
for kind in ServiceMonitor PodMonitor PrometheusRule; do
  if grep -q "^kind: $kind$" "$work/defaults.yaml"; then fail "$kind rendered although its toggle is off"; fi
done
[ "$(grep -c '^    grafana_dashboard: "1"$' "$work/defaults.yaml")" -eq 4 ] || fail "expected 4 dashboard ConfigMaps labelled grafana_dashboard"

echo "== CRD"
"$python" "$root/tests/kube/validate_manifests.py" "$root/crds/zk0.io_federationruns.yaml" "$root/crds/zk0.io_federationmemberships.yaml" || fail "CRD schema"

echo "== dashboards up to date with helm/gen_dashboards.py"
"$python" "$root/helm/gen_dashboards.py" --check || fail "dashboards differ from their generator; run python3 helm/gen_dashboards.py"

echo "== hadolint"
"$root/.venv/bin/hadolint" -c "$root/docker/.hadolint.yaml" "$root"/docker/*.Dockerfile || fail "hadolint"
echo "chart, CRD, dashboards and Dockerfiles: ok"
