#!/usr/bin/env bash
# What a FederationRun's pods mount, made by hand on a cluster that has neither a storage
# provisioner nor cert-manager (the local cluster of `make kube-demo`, the cluster tests): LeRobot
# datasets on volume claims, a volume for the aggregator's checkpoint claim, and the mutual-TLS
# Secrets cert-manager would write (examples/k8s/certificate.yaml says what each holds).
#
#   provision.sh dataset NAMESPACE CLAIM HOSTDIR SYNTH_ARGS...
#       writes a synthetic LeRobot dataset (zk0 dataset synth HOSTDIR SYNTH_ARGS...) and serves it
#       read-only as PersistentVolumeClaim CLAIM, on a hostPath PersistentVolume bound to it alone
#   provision.sh checkpoints NAMESPACE RUN HOSTDIR [SIZE]
#       a hostPath PersistentVolume, writable by the pods' user (65532), reserved for the claim
#       <RUN>-checkpoints that the operator creates for the run's aggregator
#   provision.sh state NAMESPACE MEMBERSHIP HOSTDIR [SIZE]
#       the same for the claim <MEMBERSHIP>-state that the operator creates for a
#       FederationMembership's worker (its key, certificate and kept state)
#   provision.sh tls NAMESPACE RUN CADIR CLIENT...
#       a CA in CADIR (made once), the Secret <RUN>-aggregator-tls naming the aggregator's
#       Service, and one Secret <RUN>-<CLIENT>-tls per client naming it by its URI SAN
#       spiffe://zk0.io/run/<RUN>/client/<CLIENT>
#
# Environment: KUBECONFIG (or kubectl's default), KUBECTL (default kubectl), ZK0 (the zk0 CLI,
# default build/bin/zk0 beside this checkout). hostPath volumes live on the node: run this there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kubectl="${KUBECTL:-kubectl}"
zk0="${ZK0:-$here/../../build/bin/zk0}"
readonly POD_UID=65532  # the images' non-root user

usage() { sed -n '2,22p' "$0" >&2; exit 2; }

# A PersistentVolume on a node directory, pre-bound to one claim (claimRef), so that no other
# claim can take it and the claim binds without a provisioner.
host_volume() {  # host_volume NAMESPACE CLAIM HOSTDIR SIZE ACCESS_MODE
  local ns="$1" claim="$2" path="$3" size="$4" mode="$5"
  "$kubectl" apply -f - > /dev/null << EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $ns-$claim
  labels: {app.kubernetes.io/part-of: zk0-provisioned}
spec:
  capacity: {storage: $size}
  accessModes: [$mode]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  claimRef: {namespace: $ns, name: $claim}
  hostPath: {path: $path, type: Directory}
EOF
}

dataset() {
  [ "$#" -ge 4 ] || usage
  local ns="$1" claim="$2" path="$3"
  shift 3
  rm -rf "$path"
  "$zk0" dataset synth "$path" "$@" > /dev/null
  chmod -R a+rX "$path"
  host_volume "$ns" "$claim" "$path" 1Gi ReadOnlyMany
  "$kubectl" apply -f - > /dev/null << EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $claim, namespace: $ns}
spec:
  accessModes: [ReadOnlyMany]
  storageClassName: ""
  volumeName: $ns-$claim
  resources: {requests: {storage: 1Gi}}
EOF
  echo "dataset $path -> $ns/$claim"
}

writable_volume() {  # writable_volume NAMESPACE CLAIM HOSTDIR SIZE
  mkdir -p "$3"
  chown "$POD_UID:$POD_UID" "$3"
  host_volume "$1" "$2" "$3" "$4" ReadWriteOnce
  echo "volume $3 -> $1/$2"
}

checkpoints() {
  [ "$#" -ge 3 ] || usage
  writable_volume "$1" "$2-checkpoints" "$3" "${4:-10Gi}"
}

state() {
  [ "$#" -ge 3 ] || usage
  writable_volume "$1" "$2-state" "$3" "${4:-1Gi}"
}

# sign CADIR NAME EXTENSIONS: a P-256 key and a certificate from the CA, as cert-manager's
# Certificate with privateKey {algorithm: ECDSA, size: 256} makes them.
sign() {
  local ca="$1" name="$2" ext="$3"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$name" \
    -keyout "$ca/$name.key" -out "$ca/$name.csr" 2> /dev/null
  printf '%s\n' "$ext" > "$ca/$name.ext"
  openssl x509 -req -days 30 -in "$ca/$name.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial \
    -extfile "$ca/$name.ext" -out "$ca/$name.crt" 2> /dev/null
}

tls_secret() {  # tls_secret NAMESPACE SECRET CADIR NAME
  "$kubectl" -n "$1" create secret generic "$2" --type=kubernetes.io/tls --from-file=ca.crt="$3/ca.crt" --from-file=tls.crt="$3/$4.crt" \
    --from-file=tls.key="$3/$4.key" --dry-run=client -o yaml | "$kubectl" apply -f - > /dev/null
}

tls() {
  [ "$#" -ge 4 ] || usage
  local ns="$1" run="$2" ca="$3"
  shift 3
  mkdir -p "$ca"
  if [ ! -s "$ca/ca.crt" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=zk0-run-ca \
      -keyout "$ca/ca.key" -out "$ca/ca.crt" 2> /dev/null
  fi
  local service="$run-aggregator"
  sign "$ca" "$service" "subjectAltName=DNS:$service,DNS:$service.$ns.svc,DNS:$service.$ns.svc.cluster.local
extendedKeyUsage=serverAuth"
  tls_secret "$ns" "$run-aggregator-tls" "$ca" "$service"
  local client
  for client in "$@"; do
    sign "$ca" "$run-$client" "subjectAltName=URI:spiffe://zk0.io/run/$run/client/$client
extendedKeyUsage=clientAuth"
    tls_secret "$ns" "$run-$client-tls" "$ca" "$run-$client"
  done
  echo "tls secrets for $ns/$run: aggregator and $# clients"
}

[ "$#" -ge 1 ] || usage
command="$1"
shift
case "$command" in
  dataset | checkpoints | state | tls) "$command" "$@" ;;
  *) usage ;;
esac
