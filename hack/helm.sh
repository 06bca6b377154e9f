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

if [[ ! -x "$BIN" ]]; then
    command -v go >/dev/null 2>&1 || {
        echo "hack/helm.sh: Go is needed to build helm $HELM_VERSION (install Go >= 1.24)" >&2
        exit 1
    }
    mkdir -p "$CACHE"
    echo "hack/helm.sh: building helm $HELM_VERSION into $CACHE (one time, a few minutes)" >&2
    # GOPATH holds the module and build caches for this version only, so removing the
    # folder removes everything this script made.
    GOPATH="$CACHE/gopath" GOMODCACHE="$CACHE/gopath/pkg/mod" GOCACHE="$CACHE/gocache" \
        GOBIN="$CACHE/bin" GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -modcacherw" CGO_ENABLED=0 \
        nice -n 10 go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
    "$BIN" version --short >&2
fi

if [[ "${1:-}" == "--" ]]; then
    shift
    exec "$BIN" "$@"
fi
echo "$BIN"
