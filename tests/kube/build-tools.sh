#!/usr/bin/env bash
# Builds the real Kubernetes tools the operator, chart and cluster tests run, from their Go modules
# (versions pinned in tests/kube/tools/go.mod): kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy, kubectl and etcd, and CoreDNS, helm and Prometheus at the
# versions below (Debian's Prometheus is built without its Kubernetes service discovery). Output: $ZK0_KUBE_TOOLS (default ~/.cache/zk0/kube-tools/<hash of the pins>), so a warm
# machine rebuilds nothing and a changed pin builds into a new folder. Prints that folder.
#   tests/kube/build-tools.sh [--download-only]
# --download-only fetches the modules those builds read (several GB from the Go module proxy) and
# compiles nothing: `make test` runs it beside zk0's C++ build, which needs the cores, not the network.
set -euo pipefail
download_only=0
case "${1:-}" in
  --download-only) download_only=1 ;;
  "") ;;
  *) echo "build-tools.sh: unknown argument $1" >&2; exit 2 ;;
esac
here="$(cd "$(dirname "$0")" && pwd)"
helm_version=v3.21.4
coredns_version=v1.14.7
prometheus_version=v0.316.0  # the Go module's version of Prometheus 3.16
kube_tools=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
pins="$(cat "$here/tools/go.mod" "$here/tools/go.sum"; echo "helm $helm_version"; echo "coredns $coredns_version"; echo "prometheus $prometheus_version")"
key="$(printf '%s' "$pins" | sha256sum | cut -c1-16)"
out="${ZK0_KUBE_TOOLS:-$HOME/.cache/zk0/kube-tools/$key}"
complete=1
for tool in "${kube_tools[@]}" etcd helm coredns prometheus; do [ -x "$out/$tool" ] || complete=0; done
if ((complete)); then
  echo "$out"
  exit 0
fi
export GOFLAGS="-buildvcs=false -trimpath" CGO_ENABLED=0
installed=("helm.sh/helm/v3/cmd/helm@$helm_version" "github.com/coredns/coredns@$coredns_version")
# Only the Kubernetes service discovery (and the file and static ones every build has): the other
# discovery plugins would double the build. No web UI assets: the tests use the HTTP API.
prometheus=(-tags remove_all_sd,enable_kubernetes_sd "github.com/prometheus/prometheus/cmd/prometheus@$prometheus_version")
if ((download_only)); then
  # Loading the packages a build would compile downloads exactly their modules.
  (cd "$here/tools" && go list -deps "${kube_tools[@]/#/k8s.io/kubernetes/cmd/}" go.etcd.io/etcd/server/v3 > /dev/null)
  for target in "${installed[@]}"; do go install -n "$target" 2> /dev/null; done
  go install -n "${prometheus[@]}" 2> /dev/null
  exit 0
fi
mkdir -p "$out"
# The version the binaries report (kubectl version, the node's kubeletVersion, what helm checks a
# chart's kubeVersion against): the pinned release, as Kubernetes' own build stamps it.
version="$(awk '$1 == "k8s.io/kubernetes" {print $2}' "$here/tools/go.mod")"
minor="${version#v*.}"
minor="${minor%%.*}"
stamp="-s"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
# Two builds side by side, -p 2 each (the machines this runs on have two cores): this module's
# tools in one go build, which links each binary while the next one's packages compile, and the
# three other modules one after another. A lone go build leaves a core idle while it links.
cd "$here/tools"
(
  go build -p 2 -ldflags="$stamp" -o "$out/" "${kube_tools[@]/#/k8s.io/kubernetes/cmd/}" go.etcd.io/etcd/server/v3 >&2
  mv "$out/server" "$out/etcd"  # go build names a module's main package by the element before /v3
) &
module_tools=$!
(
  for target in "${installed[@]}"; do GOBIN="$out" go install -p 2 -ldflags=-s "$target" >&2; done
  GOBIN="$out" go install -p 2 -ldflags=-s "${prometheus[@]}" >&2
) &
other_tools=$!
failed=0
wait "$module_tools" || failed=1
wait "$other_tools" || failed=1
((failed == 0)) || { echo "build-tools.sh: a Go build failed (its errors are above)" >&2; exit 1; }
echo "$out"
