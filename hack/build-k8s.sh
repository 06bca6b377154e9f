#!/usr/bin/env bash
# Build the Kubernetes binaries (one pinned release) from the Go module proxy, once.
# Output: $CACHE/k8s/<version>/{kube-apiserver,...,kubectl}; reused when present.
source "$(dirname "$0")/lib/common.sh"

BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
have_all() { local b; for b in "${BINS[@]}"; do [[ -x "$K8S_BIN/$b" ]] || return 1; done; }
if have_all; then exit 0; fi

command -v go >/dev/null || die "go is needed to build Kubernetes (install Go >= 1.24)"
log "building Kubernetes $K8S_VERSION into $K8S_BIN (cold: ~20-30 min on 2 cores)"
v="${K8S_VERSION#v}"; major="${v%%.*}"; rest="${v#*.}"; minor="${rest%%.*}"
ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
tmp="$K8S_BIN.tmp.$$"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
pkgs=(); for b in "${BINS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
(cd "$ROOT/hack/k8s" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "$ld" -o "$tmp/" "${pkgs[@]}")
rm -rf "$K8S_BIN"; mkdir -p "$(dirname "$K8S_BIN")"; mv "$tmp" "$K8S_BIN"
log "built: $(ls "$K8S_BIN" | tr '\n' ' ')"
