#!/usr/bin/env bash
# make kube-demo: zk0 on Kubernetes on this machine, no cloud account. Brings up the single-node
# cluster of the cluster tests (tests/kube/cluster.sh: a real kubelet, containerd, kube-proxy,
# CoreDNS; zk0's images built here by tests/kube/images.sh), installs the chart with helm,
# provisions four robot owners' datasets and the run's certificates (examples/k8s/provision.sh),
# applies examples/k8s/kube-demo.yaml and follows it to Succeeded. The cluster stays up for a
# look around (the commands are printed at the end); `make kube-down` stops it.
#
# Needs root (a kubelet does), and what `make demo` builds (zk0, for the datasets).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
state="$root/outputs/kube-demo"
ns=zk0-system
run=kube-demo

step() { printf '\n== %s\n' "$*"; }

step "Kubernetes binaries (tests/kube/build-tools.sh, cached in ~/.cache/zk0/kube-tools)"
tools="$("$root/tests/kube/build-tools.sh")"
export PATH="$tools:$PATH" KUBECTL="$tools/kubectl" ZK0="$root/build/bin/zk0"

step "Cluster (tests/kube/cluster.sh up $state/cluster; images built and imported on first use)"
kubeconfig_line="$("$root/tests/kube/cluster.sh" up "$state/cluster" | tail -n 1)"
export KUBECONFIG="${kubeconfig_line#KUBECONFIG=}"
kubectl get nodes -o wide

step "helm install zk0 helm/zk0 (the CPU images' tag)"
helm upgrade --install zk0 "$root/helm/zk0" --namespace "$ns" --create-namespace \
  --set image.aggregator.tag=0.1.0-cpu --set image.worker.tag=0.1.0-cpu --wait --timeout 5m
kubectl -n "$ns" get deployment,pods

step "Datasets on volume claims, the checkpoint volume, mutual-TLS Secrets (examples/k8s/provision.sh)"
volumes="$state/volumes"
provision() { "$root/examples/k8s/provision.sh" "$@"; }
synth=(--episodes 40 --episode-length 80 --cameras 1 --height 96 --width 128)
provision dataset "$ns" pick-red-lego "$volumes/pick-red-lego" --version v3.0 --seed 1 --task "Put the red LEGO in the bin" "${synth[@]}"
provision dataset "$ns" turn-right "$volumes/turn-right" --version v2.1 --seed 2 --task "turn to the right side" "${synth[@]}"
provision dataset "$ns" rub-plush "$volumes/rub-plush" --version v3.0 --seed 3 --task "rub the plush toy with the bottle" "${synth[@]}"
provision dataset "$ns" mug-animal "$volumes/mug-animal" --version v2.1 --seed 4 --task "put the stuffed animal in the mug" "${synth[@]}"
provision dataset "$ns" two-cubes "$volumes/two-cubes" --version v3.0 --seed 5 --task "Two cubes and two buckets" "${synth[@]}"
provision checkpoints "$ns" "$run" "$volumes/checkpoints" 1Gi
provision tls "$ns" "$run" "$state/ca" pick-red-lego turn-right rub-plush mug-animal

step "kubectl apply -f examples/k8s/kube-demo.yaml"
kubectl delete fedrun "$run" -n "$ns" --ignore-not-found --wait=true > /dev/null
rm -rf "${volumes:?}/checkpoints"/*
kubectl apply -f "$root/examples/k8s/kube-demo.yaml"

step "Following the run (kubectl get fedrun $run -n $ns)"
last=""
deadline=$((SECONDS + 1800))
while ((SECONDS < deadline)); do
  line="$(kubectl -n "$ns" get fedrun "$run" --no-headers 2> /dev/null || true)"
  # A line when the phase, round, clients or loss change, not the age alone.
  if [ -n "$line" ] && [ "${line% *}" != "$last" ]; then
    printf '%s  %s\n' "$(date +%T)" "$line"
    last="${line% *}"
  fi
  phase="$(kubectl -n "$ns" get fedrun "$run" -o 'jsonpath={.status.phase}' 2> /dev/null || true)"
  case "$phase" in
    Succeeded) break ;;
    Failed)
      kubectl -n "$ns" get fedrun "$run" -o 'jsonpath={.status.message}{"\n"}'
      exit 1
      ;;
  esac
  sleep 2
done
[ "$phase" = Succeeded ] || { echo "the run did not finish within 30 minutes" >&2; exit 1; }

step "Done: the run's outputs are on its checkpoint volume, $volumes/checkpoints"
ls "$volumes/checkpoints"
cat << EOF

The cluster is still up. Look around:
  export KUBECONFIG=$KUBECONFIG PATH=$tools:\$PATH
  kubectl -n $ns get fedrun,pods
  kubectl -n $ns describe fedrun $run
  kubectl -n $ns logs deployment/zk0
Stop it and remove everything it added to this machine:
  make kube-down
EOF
