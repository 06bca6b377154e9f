# Shared settings of the local cluster scripts (sourced, not run).
# Why one file: every script must agree on versions, paths and addresses.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.4}"
CACHE="${MODELREPO_CACHE:-$HOME/.cache/modelrepo}"
K8S_BIN="$CACHE/k8s/$K8S_VERSION"
COREDNS_BIN="$CACHE/coredns/$COREDNS_VERSION"
STATE="${CLUSTER_DIR:-$ROOT/.cluster}"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
PKI="$STATE/pki"

# Addresses: everything inside 198.18.0.0/15 (RFC 2544 benchmark range).
HOST_IF="${HOST_IF:-mrepo0}"          # dummy interface made by the script
NODE_IP="${NODE_IP:-198.18.0.1}"      # node InternalIP, API server, CoreDNS, test servers
POD_CIDR="${POD_CIDR:-198.18.128.0/17}"
POD_BRIDGE="${POD_BRIDGE:-mrepo-cni0}"
POD_GW="${POD_GW:-198.18.128.1}"
SERVICE_CIDR="${SERVICE_CIDR:-198.19.0.0/16}"
KUBE_SVC_IP="${KUBE_SVC_IP:-198.19.0.1}"
DNS_SVC_IP="${DNS_SVC_IP:-198.19.0.10}"
NODE_NAME="${NODE_NAME:-modelrepo-node}"
API_PORT="${API_PORT:-6443}"
REGISTRY_PORT="${REGISTRY_PORT:-5000}"  # the node's image registry (plain http, node address only)
REGISTRY_ADDR="$NODE_IP:$REGISTRY_PORT"
KUBECONFIG_OUT="$STATE/kubeconfig"

export GOMODCACHE="${GOMODCACHE_OVERRIDE:-$CACHE/go/mod}"
export GOCACHE="${GOCACHE_OVERRIDE:-$CACHE/go/build}"
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export PATH="/usr/local/go/bin:/usr/sbin:/sbin:$PATH"

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# wait_for <seconds> <description> <command...>: poll a condition with a deadline.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < end )) || { log "timed out after ${secs}s waiting for $what"; return 1; }
    sleep 0.5
  done
}

# lock <name>: hold an exclusive lock (until this shell exits) so that concurrent runs
# (two test sessions, two terminals) wait for each other instead of racing.
lock() {
  mkdir -p "$CACHE/locks"
  exec {_lock_fd}>"$CACHE/locks/$1.lock"
  if ! flock -n "$_lock_fd"; then
    log "waiting for another run holding the $1 lock"
    flock "$_lock_fd"
  fi
}
