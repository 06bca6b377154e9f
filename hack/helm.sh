#!/usr/bin/env bash
# Print the path of a helm binary, building it from its Go module the first time.
# Why from the Go module: release downloads are not reachable from this machine; the Go
# module proxy is. Idempotent: a second run only prints the path. A fresh machine needs Go.
#   hack/helm.sh            -> installs if missing, prints the binary path on stdout
#   hack/helm.sh -- ARGS    -> runs helm with ARGS
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.19.5}"
CACHE="${MODELREPO_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelrepo/helm/$HELM_VERSION}"
BIN="$CACHE/bin/helm"

built_version() { "$BIN" version --template '{{.Version}}' 2>/dev/null || true; }

if [[ "$(built_version)" != "$HELM_VERSION" ]]; then
    command -v go >/dev/null 2>&1 || {
        echo "hack/helm.sh: Go is needed to build helm $HELM_VERSION (install Go >= 1.24)" >&2
        exit 1
    }
    mkdir -p "$CACHE"
    echo "hack/helm.sh: building helm $HELM_VERSION into $CACHE (one time, a few minutes)" >&2
    # GOPATH holds the module and build caches for this version only, so removing the
    # folder removes everything this script made.
    export GOPATH="$CACHE/gopath" GOMODCACHE="$CACHE/gopath/pkg/mod" GOCACHE="$CACHE/gocache" \
        GOBIN="$CACHE/bin" GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -modcacherw" CGO_ENABLED=0
    # The link flags of helm's own Makefile: its version, and the Kubernetes version its
    # client libraries speak (else `helm template` assumes Kubernetes 1.20).
    mod=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    client_go=$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$mod" | head -1)
    [[ -n "$client_go" ]] || { echo "hack/helm.sh: cannot read k8s.io/client-go from $mod" >&2; exit 1; }
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$client_go"
    done
    nice -n 10 go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
    "$BIN" version --short >&2
fi

if [[ "${1:-}" == "--" ]]; then
    shift
    exec "$BIN" "$@"
fi
echo "$BIN"
