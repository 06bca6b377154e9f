# Install the Debian packages the local cluster needs, only those missing (sourced).
# containerd/runc/CNI plugins/iptables run the node; buildah/debootstrap build images;
# etcd-server is the API server's store; docker-registry (CNCF distribution) is the node's registry.
CLUSTER_DEBS=(containerd runc containernetworking-plugins iptables conntrack ethtool socat iproute2 openssl
              buildah debootstrap etcd-server docker-registry ca-certificates curl)

ensure_debs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  (( ${#missing[@]} == 0 )) && return 0
  [[ $(id -u) == 0 ]] || die "missing Debian packages (${missing[*]}); run as root or install them"
  command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get here"
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
