#!/usr/bin/env bash
# Build git-lfs's reference LFS server (the tests' Git LFS remote) from its Go module, once;
# cached under $CACHE/lfs-test-server/<version>/. Prints the binary's path.
# The module predates Go modules (no go.mod), so its dependencies are pinned here; go.sum is
# filled and checked against the checksum database by the build.
source "$(dirname "$0")/lib/common.sh"

LFS_SERVER_VERSION="${LFS_SERVER_VERSION:-v0.4.0}"
LFS_SERVER_BIN="$CACHE/lfs-test-server/$LFS_SERVER_VERSION"
LFS_SERVER_REQUIRES=(
  "github.com/GeertJohan/go.rice v1.0.0"
  "github.com/boltdb/bolt v1.3.1"
  "github.com/gorilla/context v1.1.2"
  "github.com/gorilla/mux v1.8.1"
  "github.com/daaku/go.zipexe v1.0.0"
  "golang.org/x/sys v0.50.0"
)

if [[ ! -x "$LFS_SERVER_BIN/lfs-test-server" ]]; then
  command -v go >/dev/null || die "go is needed to build lfs-test-server"
  lock lfs-test-server
  if [[ ! -x "$LFS_SERVER_BIN/lfs-test-server" ]]; then
    log "building lfs-test-server $LFS_SERVER_VERSION into $LFS_SERVER_BIN"
    tmp="$LFS_SERVER_BIN.tmp.$$"
    mkdir -p "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    mod=github.com/git-lfs/lfs-test-server
    src=$(GOFLAGS= go mod download -json "$mod@$LFS_SERVER_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [[ -d "$src" ]] || die "downloading $mod@$LFS_SERVER_VERSION failed"
    cp -r "$src" "$tmp/src"; chmod -R u+w "$tmp/src"
    { echo "module $mod"; echo; echo "go 1.21"; echo; echo "require ("
      printf '\t%s\n' "${LFS_SERVER_REQUIRES[@]}"; echo ")"; } > "$tmp/src/go.mod"
    (cd "$tmp/src" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "-s -w" \
       -o "$tmp/lfs-test-server" . >&2)
    rm -rf "$tmp/src"
    rm -rf "$LFS_SERVER_BIN"; mkdir -p "$(dirname "$LFS_SERVER_BIN")"; mv "$tmp" "$LFS_SERVER_BIN"
  fi
fi
echo "$LFS_SERVER_BIN/lfs-test-server"
