#!/usr/bin/env bash
# The Debian packages of the single-node Kubernetes cluster (tests/kube/cluster.sh, `make
# kube-demo`, the cluster tests): the images built here without a registry (podman, buildah,
# mmdebstrap; tests/kube/images.sh) and the node that runs them (containerd, runc, the CNI
# plugins, catatonit as the pause process, iptables and conntrack for Services, uidmap for user
# namespaces, iproute2 for the network namespaces of the CNI and of a remote owner's site in
# tests/join_test.cpp). Idempotent, as scripts/setup.sh.
set -euo pipefail
"$(dirname "$0")/install-packages.sh" setup-cluster \
  podman buildah mmdebstrap containerd runc containernetworking-plugins catatonit iptables conntrack uidmap iproute2
