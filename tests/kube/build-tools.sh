#!/usr/bin/env bash
# Builds the real Kubernetes tools the operator and chart tests run: kube-apiserver,
# kube-controller-manager, kubectl and etcd from their Go modules (versions pinned in tests/kube/tools/go.mod) and helm from its
# module. Output: $ZK0_KUBE_TOOLS (default ~/.cache/zk0/kube-tools/<hash of the pins>), so a warm
# machine rebuilds nothing and a changed pin builds into a new folder. Prints that folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
helm_version=v3.21.4
pins="$(cat "$here/tools/go.mod" "$here/tools/go.sum"; echo "helm $helm_version")"
key="$(printf '%s' "$pins" | sha256sum | cut -c1-16)"
out="${ZK0_KUBE_TOOLS:-$HOME/.cache/zk0/kube-tools/$key}"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-controller-manager" ] && [ -x "$out/kubectl" ] && [ -x "$out/etcd" ] &&
  [ -x "$out/helm" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
export GOFLAGS="-buildvcs=false -trimpath" CGO_ENABLED=0
# -p 2: the machines this runs on have two cores; go build would otherwise use all of them anyway.
(cd "$here/tools" &&
  go build -p 2 -ldflags=-s -o "$out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2 &&
  go build -p 2 -ldflags=-s -o "$out/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager >&2 &&
  go build -p 2 -ldflags=-s -o "$out/kubectl" k8s.io/kubernetes/cmd/kubectl >&2 &&
  go build -p 2 -ldflags=-s -o "$out/etcd" go.etcd.io/etcd/server/v3 >&2)
GOBIN="$out" go install -ldflags=-s "helm.sh/helm/v3/cmd/helm@$helm_version" >&2
echo "$out"
