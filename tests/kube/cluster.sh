#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, for the cluster tests and `make kube-demo`:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (Debian's), a kubelet,
# kube-proxy (iptables) and CoreDNS as a Deployment, with CNI's bridge and host-local plugins. The
# Kubernetes binaries come from tests/kube/build-tools.sh (pinned Go modules), the images from
# tests/kube/images.sh (built here with podman, imported into containerd).
#
#   cluster.sh up DIR     start a fresh cluster whose state lives in DIR (what a previous one
#                         left there is torn down first; its certificates and containerd's
#                         images are kept); prints KUBECONFIG=DIR/admin.kubeconfig when the node
#                         is Ready, kube-proxy routes Services and CoreDNS answers
#   cluster.sh down DIR   stop it and take back everything it added to the host: processes,
#                         containers, mounts, network links and namespaces, iptables chains, cgroups
#
# Needs root (a kubelet, containerd and iptables do). One cluster per machine: the addresses below
# are fixed so that the API server's certificate and the pods' DNS can name them.
# Logs: DIR/logs/<component>.log; pod logs: DIR/pod-logs.
set -euo pipefail

readonly NODE_NAME=zk0-node
readonly NODE_IP=10.201.0.1          # on a port-less bridge: the kubelet refuses a loopback node IP
readonly NODE_LINK=zk0-node0
readonly POD_CIDR=10.244.0.0/24
readonly POD_LINK=zk0-cni0
readonly SERVICE_CIDR=10.96.0.0/16
readonly API_SERVICE_IP=10.96.0.1
readonly DNS_SERVICE_IP=10.96.0.10
readonly API_PORT=6443
readonly ETCD_PORT=23790
readonly ETCD_PEER_PORT=23800
readonly KUBELET_PORT=10250
readonly MARKER=/run/zk0-cluster

here="$(cd "$(dirname "$0")" && pwd)"
log() { printf '%s component=cluster %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "event=failed $*"; exit 1; }
elapsed() { echo $((SECONDS - $1)); }

# Polls CONDITION (a command) every half second until it succeeds or SECONDS_MAX pass.
wait_for() {
  local what="$1" max="$2"
  shift 2
  local deadline=$((SECONDS + max))
  until "$@" > /dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      die "waiting=\"$what\" seconds=$max"
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------------------------
# PKI: one CA signs every serving and client certificate (what kubeadm does with its own CA).
# ---------------------------------------------------------------------------------------------
issue() {  # issue NAME SUBJECT EXTENSIONS
  local name="$1" subject="$2" ext="$3" pki="$dir/pki"
  [ -s "$pki/$name.crt" ] && return 0
  printf '%s\n' "$ext" > "$pki/$name.ext"
  openssl req -newkey rsa:2048 -nodes -subj "$subject" -keyout "$pki/$name.key" -out "$pki/$name.csr" 2> /dev/null
  openssl x509 -req -days 30 -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2> /dev/null
}

make_pki() {
  local pki="$dir/pki"
  mkdir -p "$pki"
  if [ ! -s "$pki/ca.crt" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=zk0-local-cluster-ca \
      -keyout "$pki/ca.key" -out "$pki/ca.crt" 2> /dev/null
  fi
  # Pods reach the API server through the `kubernetes` Service, so its ClusterIP and DNS names
  # are in the serving certificate beside the node address.
  issue apiserver /CN=kube-apiserver "subjectAltName=IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost
extendedKeyUsage=serverAuth"
  issue kubelet-serving "/CN=system:node:$NODE_NAME/O=system:nodes" "subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME
extendedKeyUsage=serverAuth"
  local client="extendedKeyUsage=clientAuth"
  issue admin "/CN=admin/O=system:masters" "$client"
  issue apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client/O=system:masters" "$client"
  issue kubelet "/CN=system:node:$NODE_NAME/O=system:nodes" "$client"
  issue controller-manager /CN=system:kube-controller-manager "$client"
  issue scheduler /CN=system:kube-scheduler "$client"
  issue kube-proxy /CN=system:kube-proxy "$client"
  if [ ! -s "$pki/sa.key" ]; then
    openssl genrsa -out "$pki/sa.key" 2048 2> /dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2> /dev/null
  fi
  for who in admin kubelet controller-manager scheduler kube-proxy; do
    cat > "$dir/$who.kubeconfig" << EOF
apiVersion: v1
kind: Config
clusters:
- name: zk0-local
  cluster: {server: "https://$NODE_IP:$API_PORT", certificate-authority: "$pki/ca.crt"}
users:
- name: $who
  user: {client-certificate: "$pki/$who.crt", client-key: "$pki/$who.key"}
contexts:
- name: zk0-local
  context: {cluster: zk0-local, user: $who, namespace: default}
current-context: zk0-local
EOF
  done
}

# ---------------------------------------------------------------------------------------------
# Processes: each in its own session (setsid), its pid in DIR/run/NAME.pid, its log in DIR/logs.
# ---------------------------------------------------------------------------------------------
start() {  # start NAME COMMAND...
  local name="$1"
  shift
  setsid "$@" < /dev/null >> "$dir/logs/$name.log" 2>&1 &
  echo $! > "$dir/run/$name.pid"
}

running() { [ -s "$dir/run/$1.pid" ] && kill -0 "$(cat "$dir/run/$1.pid")" 2> /dev/null; }

stop() {  # stop NAME...: SIGTERM to all, then SIGKILL to those still running after 10 s
  local name pids=()
  for name in "$@"; do
    [ -s "$dir/run/$name.pid" ] && pids+=("$(cat "$dir/run/$name.pid")")
    rm -f "$dir/run/$name.pid"
  done
  ((${#pids[@]})) || return 0
  kill -TERM "${pids[@]}" 2> /dev/null || true
  local deadline=$((SECONDS + 10)) pid
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2> /dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2> /dev/null || true
  done
}

kubectl() { "$tools/kubectl" --kubeconfig "$dir/admin.kubeconfig" "$@"; }

# ---------------------------------------------------------------------------------------------
# Control plane
# ---------------------------------------------------------------------------------------------
start_control_plane() {
  local pki="$dir/pki" t=$SECONDS
  start etcd "$tools/etcd" --data-dir "$dir/etcd" --log-level warn --quota-backend-bytes 4294967296 \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT"
  start kube-apiserver "$tools/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=false --enable-priority-and-fairness=false --profiling=false --v=0
  wait_for "kube-apiserver ready" 120 kubectl get --raw /readyz
  log "event=control_plane_ready seconds=$(elapsed "$t")"
  # The controllers a Deployment, a Service and a pod with a service-account token need, the
  # garbage collector (a run's children go with it), claims binding to volumes, and the node
  # lifecycle controller: a new node carries the not-ready taint until it lifts it.
  start kube-controller-manager "$tools/kube-controller-manager" \
    --kubeconfig "$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
    --controllers "$CONTROLLERS" \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 --concurrent-gc-syncs 5 --v=0
  start kube-scheduler "$tools/kube-scheduler" \
    --kubeconfig "$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig "$dir/scheduler.kubeconfig" --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 --v=0
}

readonly CONTROLLERS=serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,endpoints-controller,endpointslice-controller,garbage-collector-controller,namespace-controller,node-lifecycle-controller,deployment-controller,replicaset-controller,clusterrole-aggregation-controller,persistentvolume-binder-controller,persistentvolume-protection-controller,persistentvolumeclaim-protection-controller,pod-garbage-collector-controller

# ---------------------------------------------------------------------------------------------
# Node: network, containerd, kubelet, kube-proxy
# ---------------------------------------------------------------------------------------------
make_network() {
  shared_netns_dir
  ip link show "$NODE_LINK" > /dev/null 2>&1 || ip link add "$NODE_LINK" type bridge
  ip addr replace "$NODE_IP/32" dev "$NODE_LINK"
  ip link set "$NODE_LINK" up
  sysctl -qw net.ipv4.ip_forward=1
  mkdir -p "$dir/cni/net.d" "$dir/cni/ipam"
  cat > "$dir/cni/net.d/10-zk0.conflist" << EOF
{
  "cniVersion": "1.0.0",
  "name": "zk0",
  "plugins": [
    {"type": "bridge", "bridge": "$POD_LINK", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$dir/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

# /run/netns, where containerd mounts each pod sandbox's network namespace, made a shared mount
# point of its own before any sandbox exists, as `ip netns add` makes it on first use. Made later
# (a test's `ip netns add` while pods run, on a host whose / is private), its recursive bind
# covers the sandboxes' mounts: containerd then unmounts the copy, cannot unlink the one beneath
# (EBUSY), and the kubelet never reports those pods' end (measured: a run stuck in Running).
shared_netns_dir() {
  mkdir -p /run/netns
  mount --make-rshared /run/netns 2> /dev/null && return  # already a mount point
  mount --rbind /run/netns /run/netns
  mount --make-rshared /run/netns
}

start_containerd() {
  local c="$dir/containerd" t=$SECONDS
  mkdir -p "$c"
  cat > "$c/config.toml" << EOF
version = 2
root = "$c/root"
state = "$c/state"
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Without it pod sandboxes fail here ("can't get final child's PID"): the container may not
  # lower its oom_score_adj below containerd's own.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
EOF
  start containerd containerd --config "$c/config.toml"
  wait_for "containerd socket" 30 ctr --address "$c/containerd.sock" version
  log "event=containerd_ready seconds=$(elapsed "$t")"
}

import_images() {
  local t=$SECONDS
  "$here/images.sh" --containerd-socket "$dir/containerd/containerd.sock" --coredns-binary "$tools/coredns" >&2 ||
    die "step=images"
  log "event=images_imported seconds=$(elapsed "$t")"
}

start_kubelet() {
  local pki="$dir/pki" t=$SECONDS
  mkdir -p "$dir/kubelet" "$dir/kubelet-plugins" "$dir/pod-logs"
  cat > "$dir/kubelet.yaml" << EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host runs cgroup v1 (hybrid) without systemd managing it, and has swap.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
imageServiceEndpoint: unix://$dir/containerd/containerd.sock
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzPort: 0
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: $dir/pod-logs
# A test machine's disk and memory are what they are: evict only when they are truly gone, and
# never garbage-collect the images imported here (nothing could pull them again).
evictionHard: {memory.available: 1Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
  start kubelet "$tools/kubelet" --config "$dir/kubelet.yaml" --kubeconfig "$dir/kubelet.kubeconfig" \
    --root-dir "$dir/kubelet" --volume-plugin-dir "$dir/kubelet-plugins" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1
  wait_for "node $NODE_NAME Ready" 120 kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
  # The node lifecycle controller lifts the not-ready taint once it sees the node Ready.
  wait_for "node $NODE_NAME untainted" 60 node_untainted
  log "event=node_ready seconds=$(elapsed "$t")"
}

node_untainted() { [ -z "$(kubectl get node "$NODE_NAME" -o 'jsonpath={.spec.taints}')" ]; }

start_kube_proxy() {
  local t=$SECONDS
  cat > "$dir/kube-proxy.yaml" << EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
clientConnection: {kubeconfig: $dir/kube-proxy.kubeconfig}
# Leave the host's conntrack sysctls alone (they are read-only here).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
nodePortAddresses: ["$NODE_IP/32"]
metricsBindAddress: "127.0.0.1:10249"
healthzBindAddress: "127.0.0.1:10256"
EOF
  start kube-proxy "$tools/kube-proxy" --config "$dir/kube-proxy.yaml" --v=0
  # A client must not connect before the Service's DNAT rule exists.
  wait_for "kube-proxy rule for the kubernetes Service" 60 service_routed default kubernetes
  log "event=kube_proxy_ready seconds=$(elapsed "$t")"
}

# service_routed NAMESPACE NAME: kube-proxy wrote the Service's rule (iptables-save names it).
service_routed() { iptables-save -t nat | grep -q -- "--comment \"$1/$2"; }

start_dns() {
  local t=$SECONDS
  kubectl apply -f - > /dev/null << EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:1053 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: coredns
        image: $COREDNS_IMAGE
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 1053, protocol: UDP}
        - {name: dns-tcp, containerPort: 1053, protocol: TCP}
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
        livenessProbe: {httpGet: {path: /health, port: 8080}, periodSeconds: 10}
        securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
        resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 128Mi}}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_SERVICE_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
EOF
  wait_for "CoreDNS available" 120 kubectl -n kube-system wait --for=condition=Available deployment/coredns --timeout=1s
  wait_for "kube-proxy rule for kube-dns" 30 service_routed kube-system kube-dns
  log "event=dns_ready seconds=$(elapsed "$t")"
}

# ---------------------------------------------------------------------------------------------
# down: everything the cluster made, in the order that lets each part release what it holds
# ---------------------------------------------------------------------------------------------
teardown() {
  local sock="$dir/containerd/containerd.sock"
  # Pods go through the kubelet first, so that CNI takes back their addresses, routes and masquerade
  # rules; the controllers stop first, or they would make new ones.
  stop kube-controller-manager kube-scheduler
  if running kube-apiserver && running kubelet; then
    kubectl delete pods --all --all-namespaces --force --grace-period=0 --wait=false > /dev/null 2>&1 || true
    local deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)) && [ -n "$(kubectl get pods --all-namespaces -o name 2> /dev/null)" ]; do sleep 0.5; done
    while ((SECONDS < deadline)) && ctr --address "$sock" -n k8s.io tasks ls 2> /dev/null | grep -q RUNNING; do sleep 0.5; done
  fi
  stop kube-proxy kubelet
  # What is left (a kubelet that died hard): kill the tasks and remove the containers through
  # containerd, then stop it.
  if running containerd && [ -S "$sock" ]; then
    local c
    for c in $(ctr --address "$sock" -n k8s.io tasks ls -q 2> /dev/null); do
      ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$c" > /dev/null 2>&1 || true
    done
    for c in $(ctr --address "$sock" -n k8s.io tasks ls -q 2> /dev/null); do
      ctr --address "$sock" -n k8s.io tasks delete -f "$c" > /dev/null 2>&1 || true
    done
    for c in $(ctr --address "$sock" -n k8s.io containers ls -q 2> /dev/null); do
      ctr --address "$sock" -n k8s.io containers delete "$c" > /dev/null 2>&1 || true
    done
  fi
  stop containerd
  # Shims left behind by a containerd that died hard.
  pkill -KILL -f "containerd-shim-runc-v2 -namespace k8s.io -address $sock" 2> /dev/null || true
  stop kube-apiserver
  stop etcd
  # Mounts under DIR (the kubelet's root bind-mounts itself, volumes are tmpfs or binds, and
  # containerd's rootfs are overlays), deepest first.
  local m
  while read -r m; do umount -l "$m" 2> /dev/null || true; done < <(
    awk -v d="$dir" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r)
  # Network namespaces of sandboxes nobody stopped.
  for m in $(ip netns list 2> /dev/null | awk '/^cni-/ {print $1}'); do ip netns delete "$m" 2> /dev/null || true; done
  ip link delete "$POD_LINK" 2> /dev/null || true
  ip link delete "$NODE_LINK" 2> /dev/null || true
  [ -x "$tools/kube-proxy" ] && "$tools/kube-proxy" --cleanup > /dev/null 2>&1 || true
  remove_iptables_chains
  # The kubelet's pod cgroups (cgroup v1: one tree per controller), children before parents.
  for m in /sys/fs/cgroup/*/kubepods; do
    [ -d "$m" ] && find "$m" -depth -type d -exec rmdir {} + 2> /dev/null || true
  done
  rm -rf /var/lib/kubelet/device-plugins /var/lib/kubelet/plugins_registry /var/log/containers /var/log/pods 2> /dev/null || true
  rmdir /var/lib/kubelet 2> /dev/null || true
}

# The chains kube-proxy --cleanup leaves (the kubelet's KUBE-*), and the masquerade chains of
# this cluster's CNI network ("zk0") whose sandboxes nobody stopped; other CNI users' chains stay.
remove_iptables_chains() {
  local table chain
  for table in filter nat mangle; do
    local chains
    chains="$(iptables -t "$table" -S 2> /dev/null | awk '
      $1 == "-N" && $2 ~ /^KUBE-/ {print $2}
      $1 == "-A" && /name: \\"zk0\\"/ {for (i = 1; i < NF; i++) if ($i == "-j" && $(i + 1) ~ /^CNI-/) print $(i + 1)}' | sort -u)"
    [ -n "$chains" ] || continue
    for chain in $chains; do  # first every jump into them, then their rules, then the chains
      iptables -t "$table" -S 2> /dev/null | awk -v c="$chain" '$1 == "-A" && $0 ~ ("-j " c "( |$)") {sub(/^-A/, "-D"); print}' |
        while read -r rule; do eval "iptables -t $table $rule" 2> /dev/null || true; done
    done
    for chain in $chains; do iptables -t "$table" -F "$chain" 2> /dev/null || true; done
    for chain in $chains; do iptables -t "$table" -X "$chain" 2> /dev/null || true; done
  done
}

# One cluster per machine (fixed addresses): MARKER names the folder of the one that is up. A
# live one elsewhere is refused; a dead one's leftovers are taken back first.
claim_the_machine() {
  local other
  other="$(cat "$MARKER" 2> /dev/null || true)"
  if [ -n "$other" ] && [ "$other" != "$dir" ]; then
    local pid_file
    for pid_file in "$other"/run/*.pid; do
      [ -s "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2> /dev/null &&
        die "reason=\"another cluster is up in $other; stop it first: tests/kube/cluster.sh down $other\""
    done
    local mine="$dir"
    dir="$other"
    teardown
    dir="$mine"
  fi
  echo "$dir" > "$MARKER"
}

# ---------------------------------------------------------------------------------------------
main() {
  [ "$#" -eq 2 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
  local command="$1"
  dir="$(mkdir -p "$2" && cd "$2" && pwd)"
  [ "$(id -u)" -eq 0 ] || die "reason=\"the kubelet, containerd and iptables need root\""
  tools="$("$here/build-tools.sh")"
  case "$command" in
    up)
      local t=$SECONDS
      claim_the_machine
      teardown
      # A fresh cluster every time; the certificates and containerd's images are kept.
      rm -rf "$dir/etcd" "$dir/kubelet" "$dir/kubelet-plugins" "$dir/pod-logs" "$dir/cni" "$dir/containerd/state" "$dir/logs"
      mkdir -p "$dir/logs" "$dir/run"
      make_pki
      make_network
      start_control_plane
      start_containerd
      import_images
      start_kubelet
      start_kube_proxy
      start_dns
      log "event=up seconds=$(elapsed "$t") kubeconfig=$dir/admin.kubeconfig node_ip=$NODE_IP"
      echo "KUBECONFIG=$dir/admin.kubeconfig"
      ;;
    down)
      teardown
      [ "$(cat "$MARKER" 2> /dev/null)" != "$dir" ] || rm -f "$MARKER"
      log "event=down dir=$dir"
      ;;
    *) sed -n '2,15p' "$0" >&2; exit 2 ;;
  esac
}

readonly PAUSE_IMAGE=localhost/zk0/pause:3.10
readonly COREDNS_IMAGE=localhost/zk0/coredns:1.14.7
main "$@"
