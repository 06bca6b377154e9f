#!/usr/bin/env bash
# Build the cluster's images without Docker, each only when its inputs changed:
#   localhost/modelrepo/pause:1      sandbox image (hack/pause, a static Go binary)
#   localhost/debian-py:bookworm     base: debootstrap minbase + python3 3.11, venv, git, git-lfs, CA certs
#   docker.io/library/modelrepo:dev  the project image from runtime/Dockerfile on that base
# Each is exported to $CACHE/images/<file>.tar (OCI archive) with a .key file holding the
# hash of its inputs; hack/cluster.sh imports them into containerd's k8s.io namespace.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/deps.sh"

IMAGES="$CACHE/images"
# overlay: layer commits are diffs, not copies of the whole tree as with vfs (minutes saved).
BUILDAH=(buildah --root "$CACHE/containers/overlay" --runroot "$CACHE/containers/overlay-run"
         --storage-driver overlay)
PAUSE_IMAGE="localhost/modelrepo/pause:1"
BASE_IMAGE="localhost/debian-py:bookworm"
# A branch can build its own image beside the cluster's one, e.g.
#   PROJECT_IMAGE=docker.io/library/modelrepo:mine PROJECT_FILE=modelrepo-mine hack/build-images.sh project
PROJECT_IMAGE="${PROJECT_IMAGE:-docker.io/library/modelrepo:dev}"
PROJECT_FILE="${PROJECT_FILE:-modelrepo}"
APT_SOURCES="${APT_SOURCES:-/etc/apt}"  # where apt_mirror looks (tests point it elsewhere)
BASE_PKGS="python3,python3-venv,git,git-lfs,ca-certificates"

# The Debian mirror this machine's apt uses: the first `deb` source whose suites are not the
# security ones, from sources.list and sources.list.d/*.list (one-line) or *.sources (deb822).
apt_mirror() {
  local files=() f
  [[ -f "$APT_SOURCES/sources.list" ]] && files+=("$APT_SOURCES/sources.list")
  for f in "$APT_SOURCES"/sources.list.d/*.list "$APT_SOURCES"/sources.list.d/*.sources; do
    [[ -f "$f" ]] && files+=("$f")
  done
  ((${#files[@]})) || return 0
  awk '
    function emit(uri) { sub(/\/+$/, "", uri); print uri; found = 1; exit }
    function flush() {
      if (types ~ /(^| )deb( |$)/ && suites !~ /security/ && uris != "") { split(uris, u, " "); emit(u[1]) }
      types = ""; uris = ""; suites = ""
    }
    FNR == 1 { flush() }
    /^[ \t]*#/ { next }
    FILENAME ~ /\.sources$/ {
      if ($0 ~ /^[ \t]*$/) { flush(); next }
      key = tolower($1); $1 = ""; sub(/^ +/, "")
      if (key == "types:") types = $0; else if (key == "uris:") uris = $0; else if (key == "suites:") suites = $0
      next
    }
    $1 == "deb" {
      i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) !~ /security/) emit($i)
    }
    END { if (!found) flush() }
  ' "${files[@]}"
}

DEBIAN_MIRROR="${DEBIAN_MIRROR:-$(apt_mirror)}"

hash_stdin() { sha256sum | cut -c1-16; }
up_to_date() { [[ -f "$IMAGES/$1.tar" && "$(cat "$IMAGES/$1.key" 2>/dev/null)" == "$2" ]]; }
export_image() {  # export_image <file> <image> <key>
  rm -f "$IMAGES/$1.tar.tmp"
  "${BUILDAH[@]}" push -q "$2" "oci-archive:$IMAGES/$1.tar.tmp:$2" >/dev/null
  mv "$IMAGES/$1.tar.tmp" "$IMAGES/$1.tar"
  echo "$3" > "$IMAGES/$1.key"
}

build_pause() {
  local key; key=$(cat "$ROOT/hack/pause/main.go" "$ROOT/hack/pause/go.mod" | hash_stdin)
  up_to_date pause "$key" && return 0
  log "building $PAUSE_IMAGE"
  local dir; dir=$(mktemp -d)
  (cd "$ROOT/hack/pause" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir/pause" .)
  local c; c=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" copy -q "$c" "$dir/pause" /pause >/dev/null
  "${BUILDAH[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$c"
  "${BUILDAH[@]}" commit -q --rm "$c" "$PAUSE_IMAGE" >/dev/null
  rm -rf "$dir"
  export_image pause "$PAUSE_IMAGE" "$key"
}

base_key() { echo "debootstrap minbase bookworm $BASE_PKGS v1" | hash_stdin; }

build_base() {
  local key; key=$(base_key)
  if [[ "$("${BUILDAH[@]}" inspect -t image -f '{{index .OCIv1.Config.Labels "modelrepo.inputs"}}' \
          "$BASE_IMAGE" 2>/dev/null)" == "$key" ]]; then return 0; fi
  local root="$CACHE/rootfs/debian-py" tarball="$CACHE/rootfs/debian-py.tar"
  if [[ "$(cat "$tarball.key" 2>/dev/null)" != "$key" ]]; then
    [[ -n "$DEBIAN_MIRROR" ]] || die "no Debian mirror: none in $APT_SOURCES/sources.list{,.d/*} and DEBIAN_MIRROR is not set"
    log "building $BASE_IMAGE with debootstrap (1-3 min) from $DEBIAN_MIRROR"
    rm -rf "$root" "$tarball"; mkdir -p "$root"
    debootstrap --variant=minbase --include="$BASE_PKGS" bookworm "$root" "$DEBIAN_MIRROR" \
      > "$CACHE/rootfs/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/rootfs/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/dev/*
    (cd "$root" && tar --numeric-owner -cf "$tarball.tmp" .)
    mv "$tarball.tmp" "$tarball"; echo "$key" > "$tarball.key"
    rm -rf "$root"
  fi
  log "committing $BASE_IMAGE"
  local c; c=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" add -q "$c" "$tarball" / >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd /bin/bash --label "modelrepo.inputs=$key" "$c"
  "${BUILDAH[@]}" commit -q --rm "$c" "$BASE_IMAGE" >/dev/null
  rm -rf "$root"
}

project_key() {
  # What `pip install /src` turns into the image: the Dockerfile, packaging and the packages.
  (cd "$ROOT" && { echo "base=$(base_key)"; cat runtime/Dockerfile .dockerignore;
    git ls-files -co --exclude-standard -- pyproject.toml README.md modelrepo operator runtime \
      | LC_ALL=C sort | while read -r f; do [[ -f "$f" ]] && { echo "$f"; cat "$f"; }; done; } \
    | hash_stdin)
}

build_project() {
  local key; key=$(project_key)
  up_to_date "$PROJECT_FILE" "$key" && return 0
  [[ -f "$ROOT/runtime/Dockerfile" ]] || die "runtime/Dockerfile is missing"
  build_base
  log "building $PROJECT_IMAGE from runtime/Dockerfile"
  local mounts=() conf="$CACHE/containers/pip.conf"
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    # pip inside the build must trust this machine's CA bundle (PIP_CERT is not inherited).
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$conf"
    mounts+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro
             -v "$conf:/etc/pip.conf:ro")
  fi
  "${BUILDAH[@]}" bud -q --layers --pull=never --isolation chroot --network host "${mounts[@]}" \
    --build-arg "BASE=$BASE_IMAGE" --label "modelrepo.inputs=$key" \
    -f "$ROOT/runtime/Dockerfile" -t "$PROJECT_IMAGE" "$ROOT" >/dev/null
  export_image "$PROJECT_FILE" "$PROJECT_IMAGE" "$key"
}

main() {
  ensure_debs buildah debootstrap
  mkdir -p "$IMAGES"
  case "${1:-all}" in
    pause) build_pause ;;
    base) build_base ;;
    project) build_project ;;
    all) build_pause; build_project ;;
    *) die "usage: $0 [pause|base|project|all]" ;;
  esac
}
# Run unless sourced (tests source it to call apt_mirror).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
