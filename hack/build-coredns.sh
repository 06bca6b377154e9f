#!/usr/bin/env bash
# Build CoreDNS (cluster DNS) from its Go module, once; cached under $CACHE/coredns/<version>/.
source "$(dirname "$0")/lib/common.sh"

[[ -x "$COREDNS_BIN/coredns" ]] && exit 0
command -v go >/dev/null || die "go is needed to build CoreDNS"
log "building CoreDNS $COREDNS_VERSION into $COREDNS_BIN"
tmp="$COREDNS_BIN.tmp.$$"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
# `go install pkg@version` builds the module as published (its own go.sum, checked by sumdb).
GOFLAGS= CGO_ENABLED=0 GOBIN="$tmp" nice -n 10 go install -trimpath -ldflags "-s -w" \
  "github.com/coredns/coredns@$COREDNS_VERSION"
rm -rf "$COREDNS_BIN"; mkdir -p "$(dirname "$COREDNS_BIN")"; mv "$tmp" "$COREDNS_BIN"
