#!/usr/bin/env bash
# A single-node Kubernetes made of local processes (in the manner of Kubernetes'
# hack/local-up-cluster.sh): etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# containerd + kubelet, kube-proxy, CoreDNS and an image registry on the node address (for the
# images environment builds push; containerd pulls from it over plain http). No Docker.
#   hack/cluster.sh up       start, or reuse a running cluster (seconds)
#   hack/cluster.sh down     stop every recorded process, remove pods, interfaces, rules
#   hack/cluster.sh status   one line per component; exit 0 only when all is well
# Kubeconfig: .cluster/kubeconfig. Logs: .cluster/logs/. PIDs: .cluster/pids/.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/deps.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/pki.sh"

COMPONENTS=(etcd registry containerd kube-apiserver kube-controller-manager kube-scheduler kubelet
            kube-proxy coredns)
CTRD_DIR="$STATE/containerd"
CTRD_SOCK="$CTRD_DIR/containerd.sock"
KUBECTL="$K8S_BIN/kubectl"
IMAGES="$CACHE/images"

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_OUT" "$@"; }
ctr_() { ctr --address "$CTRD_SOCK" -n k8s.io "$@"; }
pid_of() { cat "$PIDS/$1.pid" 2>/dev/null; }
# alive <name>: its recorded PID runs, and is still that program (PIDs get reused).
alive() {
  local p; p=$(pid_of "$1") && [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null &&
    tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q -- "$1"
}

# start <name> <command...>: run in its own session, log to logs/<name>.log, record the PID.
start() {
  local name=$1; shift
  if alive "$name"; then return 0; fi
  # The long-lived process must not inherit the lock of this run (it would hold it forever).
  if [[ -n "${_lock_fd:-}" ]]; then
    setsid nohup "$@" >> "$LOGS/$name.log" 2>&1 < /dev/null {_lock_fd}>&- &
  else
    setsid nohup "$@" >> "$LOGS/$name.log" 2>&1 < /dev/null &
  fi
  echo $! > "$PIDS/$name.pid"
  log "started $name (pid $!)"
}

check_alive() {  # fail with the tail of the log when a process died
  alive "$1" && return 0
  log "$1 exited; last lines of $LOGS/$1.log:"; tail -n 25 "$LOGS/$1.log" >&2 || true
  return 1
}

api_ready() { kc get --raw /readyz >/dev/null 2>&1; }
node_ready() {
  [[ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

healthy() {
  local c; for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
  api_ready && node_ready
}

# ---------------------------------------------------------------- host network
setup_network() {
  if ! ip link show "$HOST_IF" >/dev/null 2>&1; then
    # A veth pair: this kernel has no dummy links; the peer only keeps the carrier up.
    ip link add "$HOST_IF" type veth peer name "${HOST_IF}p"
  fi
  ip link set "${HOST_IF}p" up; ip link set "$HOST_IF" up
  ip addr replace "$NODE_IP/24" dev "$HOST_IF"
  # Host -> ClusterIP traffic leaves from the node address, not the machine's own one.
  ip route replace "$SERVICE_CIDR" dev "$HOST_IF" src "$NODE_IP"
  sysctl -qw net.ipv4.ip_forward=1
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] && sysctl -qw net.bridge.bridge-nf-call-iptables=1
  mkdir -p "$STATE/cni/net.d"
  cat > "$STATE/cni/net.d/10-modelrepo.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "modelrepo",
  "plugins": [
    {"type": "bridge", "bridge": "$POD_BRIDGE", "isGateway": true, "ipMasq": false,
     "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GW"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$STATE/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
JSON
}

teardown_network() {
  ip link del "$HOST_IF" 2>/dev/null || true
  ip link del "$POD_BRIDGE" 2>/dev/null || true
  # Rules left by kube-proxy and the CNI plugins (only chains they own).
  [[ -x "$K8S_BIN/kube-proxy" ]] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  local t c
  for t in nat filter; do
    for c in $(iptables -t "$t" -S 2>/dev/null | awk '/^-N (CNI-|KUBE-)/{print $2}'); do
      iptables -t "$t" -F "$c" 2>/dev/null || true
    done
  done
}

# ---------------------------------------------------------------- processes
start_etcd() {
  start etcd etcd --name modelrepo --data-dir "$STATE/etcd" \
    --listen-client-urls http://127.0.0.1:12379 --advertise-client-urls http://127.0.0.1:12379 \
    --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
    --initial-cluster modelrepo=http://127.0.0.1:12380 --listen-metrics-urls http://127.0.0.1:12381 \
    --quota-backend-bytes 4294967296 --snapshot-count 10000
  wait_for 60 "etcd" curl -sf http://127.0.0.1:12379/health || { check_alive etcd; return 1; }
}

start_containerd() {
  mkdir -p "$CTRD_DIR"
  cat > "$CTRD_DIR/config.toml" <<TOML
version = 2
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[debug]
  address = "$CTRD_DIR/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/modelrepo/pause:1"
  enable_selinux = false
  # This VM does not let root lower oom_score_adj (runc would fail every sandbox).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  # The node's registry speaks plain http (it listens on the node address only).
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$REGISTRY_ADDR"]
    endpoint = ["http://$REGISTRY_ADDR"]
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
TOML
  start containerd containerd --config "$CTRD_DIR/config.toml"
  wait_for 60 "containerd" ctr --address "$CTRD_SOCK" version || { check_alive containerd; return 1; }
}

# The node's registry: CNCF distribution (Debian's docker-registry) on the node address. Its
# storage lives in the cache, so built environment images survive `down` and a warm `up`.
start_registry() {
  mkdir -p "$STATE/registry" "$CACHE/registry"
  cat > "$STATE/registry/config.yml" <<YAML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $CACHE/registry}
  delete: {enabled: true}
http:
  addr: $REGISTRY_ADDR
  headers: {X-Content-Type-Options: [nosniff]}
YAML
  start registry docker-registry serve "$STATE/registry/config.yml"
  wait_for 30 "registry" curl -sf "http://$REGISTRY_ADDR/v2/" || { check_alive registry; return 1; }
}

# Runtime images per Python and the builder image, into the node's registry (only when changed).
push_images() {
  REGISTRY="$REGISTRY_ADDR" "$ROOT/hack/build-images.sh" push > "$LOGS/push-images.log" 2>&1 ||
    { tail -n 25 "$LOGS/push-images.log" >&2; return 1; }
}

import_images() {
  local f name key
  for f in pause modelrepo builder; do
    [[ -f "$IMAGES/$f.tar" ]] || continue
    key=$(cat "$IMAGES/$f.key")
    [[ "$(cat "$CTRD_DIR/$f.imported" 2>/dev/null)" == "$key" ]] && continue
    log "importing $f image into containerd (k8s.io namespace)"
    ctr_ images import --no-unpack=false "$IMAGES/$f.tar" >/dev/null
    echo "$key" > "$CTRD_DIR/$f.imported"
  done
}

start_control_plane() {
  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port "$API_PORT" \
    --etcd-servers http://127.0.0.1:12379 \
    --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range 30000-32767 \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" \
    --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --authorization-mode Node,RBAC --anonymous-auth=false \
    --enable-admission-plugins NodeRestriction --allow-privileged=true \
    --profiling=false --v=1
  wait_for 120 "kube-apiserver /readyz" api_ready || { check_alive kube-apiserver; return 1; }
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --cluster-cidr "$POD_CIDR" \
    --allocate-node-cidrs=false --profiling=false --v=1
  start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v=1
}

apply_addons() {
  # RBAC the components need beyond the defaults, and the kube-dns Service that points at
  # CoreDNS running on the node address (a selector-less Service + EndpointSlice).
  wait_for 60 "default RBAC" kc get clusterrole system:node-proxier
  kc apply --server-side --field-manager=modelrepo-cluster -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "modelrepo:apiserver-kubelet"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kubelet-api-admin"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "modelrepo:coredns"}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "modelrepo:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "modelrepo:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "modelrepo:coredns"}]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: $DNS_SVC_IP
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: modelrepo}
addressType: IPv4
endpoints:
- addresses: ["$NODE_IP"]
  conditions: {ready: true}
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
YAML
}

start_node() {
  mkdir -p "$STATE/kubelet"
  cat > "$STATE/kubelet-config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CTRD_SOCK
clusterDNS: [$DNS_SVC_IP]
clusterDomain: cluster.local
resolvConf: $STATE/resolv.conf
# Imported images cannot be pulled again: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
maxPods: 110
podPidsLimit: 4096
YAML
  # Pods with dnsPolicy Default get no upstream: the only names there are the cluster's.
  echo "nameserver $DNS_SVC_IP" > "$STATE/resolv.conf"
  start kubelet "$K8S_BIN/kubelet" --config "$STATE/kubelet-config.yaml" \
    --kubeconfig "$STATE/kubelet.kubeconfig" --hostname-override "$NODE_NAME" \
    --node-ip "$NODE_IP" --root-dir "$STATE/kubelet" --cert-dir "$STATE/kubelet/pki" --v=1
  cat > "$STATE/kube-proxy-config.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {masqueradeAll: false, localhostNodePorts: false, syncPeriod: 5s, minSyncPeriod: 0s}
YAML
  start kube-proxy "$K8S_BIN/kube-proxy" --config "$STATE/kube-proxy-config.yaml" --v=1
  cat > "$STATE/Corefile" <<COREFILE
.:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $STATE/coredns.kubeconfig modelrepo
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
    loop
    reload
}
COREFILE
  start coredns "$COREDNS_BIN/coredns" -conf "$STATE/Corefile"
}

# ---------------------------------------------------------------- commands
build_all() {
  # The Go builds are CPU-bound, the image builds mostly network and disk: run them together.
  local b pids=() names=(k8s coredns images) failed=0
  for b in "${names[@]}"; do
    ( lock "build-$b"; exec "$ROOT/hack/build-$b.sh" ) > "$LOGS/build-$b.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      log "building ${names[$i]} failed; last lines of $LOGS/build-${names[$i]}.log:"
      tail -n 25 "$LOGS/build-${names[$i]}.log" >&2; failed=1
    fi
  done
  return $failed
}

cmd_up() {
  mkdir -p "$LOGS" "$PIDS"
  if healthy; then
    "$ROOT/hack/build-images.sh" all && import_images && push_images
    log "cluster already running; reused (kubeconfig: $KUBECONFIG_OUT)"
    return 0
  fi
  [[ $(id -u) == 0 ]] || die "the local cluster needs root (network interfaces, containerd, kubelet)"
  if ls "$PIDS"/*.pid >/dev/null 2>&1; then log "cluster partly running; restarting it"; cmd_down; fi
  if ss -Hltn "( sport = :$API_PORT or sport = :12379 )" 2>/dev/null | grep -q .; then
    die "ports $API_PORT/12379 are taken: another local cluster (another checkout?) runs; stop it with its own 'make cluster-down'"
  fi
  mkdir -p "$LOGS" "$PIDS"
  ensure_debs "${CLUSTER_DEBS[@]}"
  build_all
  mkdir -p "$STATE/bin"; ln -sf "$KUBECTL" "$STATE/bin/kubectl"
  make_pki
  make_kubeconfig "$KUBECONFIG_OUT" admin
  local c; for c in controller-manager scheduler kubelet kube-proxy coredns; do
    make_kubeconfig "$STATE/$c.kubeconfig" "$c"
  done
  setup_network
  start_etcd
  start_registry
  start_containerd
  import_images
  push_images
  start_control_plane
  apply_addons
  start_node
  wait_for 180 "node $NODE_NAME Ready" node_ready || {
    for c in "${COMPONENTS[@]}"; do check_alive "$c" || true; done; tail -n 30 "$LOGS/kubelet.log" >&2
    return 1; }
  wait_for 60 "default service account" kc get serviceaccount default -n default
  for c in "${COMPONENTS[@]}"; do check_alive "$c"; done
  log "cluster up: kubeconfig $KUBECONFIG_OUT, node $NODE_NAME at $NODE_IP"
}

stop_pid() {  # stop_pid <name>: SIGTERM, then SIGKILL after a deadline
  local name=$1 p; p=$(pid_of "$name") || return 0
  if alive "$name"; then
    kill -TERM "$p" 2>/dev/null || true
    local end=$((SECONDS + 20))
    while kill -0 "$p" 2>/dev/null && (( SECONDS < end )); do sleep 0.2; done
    kill -KILL "$p" 2>/dev/null || true
    log "stopped $name (pid $p)"
  fi
  rm -f "$PIDS/$name.pid"
}

cmd_down() {
  local c
  for c in coredns kube-proxy kubelet; do stop_pid "$c"; done
  if alive containerd; then
    # Pods outlive the kubelet: stop their containers through containerd first.
    local t
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    sleep 1
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$t" >/dev/null 2>&1 || true; done
    for t in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$t" >/dev/null 2>&1 || true; done
  fi
  for c in kube-scheduler kube-controller-manager kube-apiserver containerd registry etcd; do stop_pid "$c"; done
  # Shims of this containerd (found by its socket path) that are still around.
  local p
  for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $CTRD_SOCK" 2>/dev/null); do
    kill -KILL "$p" 2>/dev/null || true
  done
  # Mounts left under the state directory (pod volumes, container root filesystems).
  if [[ -d "$STATE" ]]; then
    awk -v s="$STATE/" 'index($2, s) == 1 {print $2}' /proc/self/mounts | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || true; done
  fi
  teardown_network
  # Keep logs, the PKI and containerd's image store; drop everything with cluster state.
  rm -rf "$STATE/etcd" "$STATE/kubelet" "$STATE/cni" "$CTRD_DIR/state" "$PIDS"
  rm -rf "$CTRD_DIR/root/io.containerd.grpc.v1.cri" 2>/dev/null || true
  log "cluster down"
}

cmd_status() {
  local c ok=0
  for c in "${COMPONENTS[@]}"; do
    if alive "$c"; then printf '%-24s running (pid %s)\n' "$c" "$(pid_of "$c")"
    else printf '%-24s stopped\n' "$c"; ok=1; fi
  done
  if api_ready; then echo "api server              ready at https://$NODE_IP:$API_PORT"
  else echo "api server              not answering"; ok=1; fi
  if curl -sf "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1; then echo "registry                http://$REGISTRY_ADDR (plain http)"
  else echo "registry                not answering at $REGISTRY_ADDR"; ok=1; fi
  if node_ready; then echo "node $NODE_NAME         Ready ($NODE_IP)"
  else echo "node $NODE_NAME         not Ready"; ok=1; fi
  echo "kubeconfig              $KUBECONFIG_OUT"
  return $ok
}

cmd_env() {  # machine-readable facts for the test fixture
  echo "KUBECONFIG=$KUBECONFIG_OUT"
  echo "NODE_IP=$NODE_IP"
  echo "NODE_NAME=$NODE_NAME"
  echo "POD_CIDR=$POD_CIDR"
  echo "SERVICE_CIDR=$SERVICE_CIDR"
  echo "LOGS=$LOGS"
  echo "K8S_BIN=$K8S_BIN"
  echo "REGISTRY=$REGISTRY_ADDR"
}

main() {
  case "${1:-}" in
    up) lock cluster; cmd_up ;;
    env) cmd_env ;;
    down) lock cluster; cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
  esac
}

# Run only when executed (sourcing gives the functions, for debugging).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
