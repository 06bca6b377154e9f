#!/usr/bin/env bash
# Build the cluster's images without Docker, each only when its inputs changed:
#   localhost/modelrepo/pause:1         sandbox image (hack/pause, a static Go binary)
#   localhost/debian-py:<suite>         base: debootstrap minbase + python3, venv, git, git-lfs, CA certs
#   docker.io/library/modelrepo:dev     the project image from runtime/Dockerfile on bookworm (3.11)
#   docker.io/library/modelrepo:dev-py3.9 / -py3.13   the same on bullseye / trixie (`bases`)
#   localhost/modelrepo/builder:1       buildah on bookworm: the image of environment build Jobs
# Each is exported to $CACHE/images/<file>.tar (OCI archive) with a .key file holding the
# hash of its inputs; hack/cluster.sh imports them into containerd's k8s.io namespace.
# With REGISTRY=host:port set, the runtime images are also pushed there as
# modelrepo/runtime:py<version>, labelled with their `pip freeze` (modelrepo.packages), which
# the operator reads to decide that a folder needs no build (docs/cluster.md).
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/deps.sh"

IMAGES="$CACHE/images"
# overlay: layer commits are diffs, not copies of the whole tree as with vfs (minutes saved).
BUILDAH=(buildah --root "$CACHE/containers/overlay" --runroot "$CACHE/containers/overlay-run"
         --storage-driver overlay)
PAUSE_IMAGE="localhost/modelrepo/pause:1"
BUILDER_IMAGE="localhost/modelrepo/builder:1"
REGISTRY="${REGISTRY:-}"  # host:port of a plain-http registry to push runtime images to
# Debian suite of each Python the project builds a runtime image for.
declare -A SUITE_OF=([3.9]=bullseye [3.11]=bookworm [3.13]=trixie)
PYTHONS="${PYTHONS:-3.9 3.11 3.13}"  # which of them `bases` builds
# The runtime images `make cluster` builds besides 3.11 (`all`, `push`).
CLUSTER_PYTHONS="${CLUSTER_PYTHONS-3.9 3.13}"  # empty: 3.11 only
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

base_key() { echo "debootstrap minbase ${1:-bookworm} $BASE_PKGS v1" | hash_stdin; }
base_image() { echo "localhost/debian-py:${1:-bookworm}"; }
base_tarball() {  # bookworm keeps its historic name (warm caches stay warm)
  if [[ "${1:-bookworm}" == bookworm ]]; then echo "$CACHE/rootfs/debian-py.tar"
  else echo "$CACHE/rootfs/debian-py-$1.tar"; fi
}

build_base() {  # build_base [suite]
  local suite=${1:-bookworm} key image tarball root
  key=$(base_key "$suite"); image=$(base_image "$suite"); tarball=$(base_tarball "$suite")
  if [[ "$("${BUILDAH[@]}" inspect -t image -f '{{index .OCIv1.Config.Labels "modelrepo.inputs"}}' \
          "$image" 2>/dev/null)" == "$key" ]]; then return 0; fi
  root="$CACHE/rootfs/debian-py-$suite"
  mkdir -p "$CACHE/rootfs"
  if [[ "$(cat "$tarball.key" 2>/dev/null)" != "$key" ]]; then
    [[ -n "$DEBIAN_MIRROR" ]] || die "no Debian mirror: none in $APT_SOURCES/sources.list{,.d/*} and DEBIAN_MIRROR is not set"
    log "building $image with debootstrap (1-3 min) from $DEBIAN_MIRROR"
    rm -rf "$root" "$tarball"; mkdir -p "$root"
    debootstrap --variant=minbase --include="$BASE_PKGS" "$suite" "$root" "$DEBIAN_MIRROR" \
      > "$CACHE/rootfs/debootstrap-$suite.log" 2>&1 \
      || { tail -20 "$CACHE/rootfs/debootstrap-$suite.log" >&2; die "debootstrap $suite failed"; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/dev/*
    (cd "$root" && tar --numeric-owner -cf "$tarball.tmp" .)
    mv "$tarball.tmp" "$tarball"; echo "$key" > "$tarball.key"
    rm -rf "$root"
  fi
  log "committing $image"
  local c; c=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" add -q "$c" "$tarball" / >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd /bin/bash --label "modelrepo.inputs=$key" "$c"
  "${BUILDAH[@]}" commit -q --rm "$c" "$image" >/dev/null
  rm -rf "$root"
}

project_key() {  # project_key [suite]
  # What `pip install /src` turns into the image: the Dockerfile, packaging and the packages.
  (cd "$ROOT" && { echo "base=$(base_key "${1:-bookworm}")"; cat runtime/Dockerfile .dockerignore;
    git ls-files -co --exclude-standard -- pyproject.toml README.md modelrepo operator runtime \
      | LC_ALL=C sort | while read -r f; do [[ -f "$f" ]] && { echo "$f"; cat "$f"; }; done; } \
    | hash_stdin)
}

# The -v options of a build: pip inside must trust this machine's CA bundle (PIP_CERT is not
# inherited), one option word per line.
build_mounts() {
  local conf="$CACHE/containers/pip.conf"
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] || return 0
  mkdir -p "$CACHE/containers"
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$conf"
  printf '%s\n' -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro -v "$conf:/etc/pip.conf:ro"
}

build_project() {  # build_project [python]: the runtime image for that Python
  local python=${1:-3.11} suite image file key
  suite=${SUITE_OF[$python]:-}
  [[ -n "$suite" ]] || die "no Debian suite for Python $python (have: ${!SUITE_OF[*]})"
  if [[ "$python" == 3.11 ]]; then image=$PROJECT_IMAGE; file=$PROJECT_FILE
  else image="$PROJECT_IMAGE-py$python"; file="$PROJECT_FILE-py$python"; fi
  key=$(project_key "$suite")
  if ! up_to_date "$file" "$key"; then
    [[ -f "$ROOT/runtime/Dockerfile" ]] || die "runtime/Dockerfile is missing"
    build_base "$suite"
    log "building $image from runtime/Dockerfile (Python $python, $suite)"
    local mounts=(); mapfile -t mounts < <(build_mounts)
    "${BUILDAH[@]}" bud -q --layers --pull=never --isolation chroot --network host "${mounts[@]}" \
      --build-arg "BASE=$(base_image "$suite")" --label "modelrepo.inputs=$key" \
      -f "$ROOT/runtime/Dockerfile" -t "$image" "$ROOT" >/dev/null
    export_image "$file" "$image" "$key"
  fi
  push_runtime "$python" "$image" "$key"
}

# push_runtime <python> <image> <key>: to $REGISTRY as modelrepo/runtime:py<python>, with its
# package list (the file runtime/Dockerfile writes) as the label modelrepo.packages.
push_runtime() {
  [[ -n "$REGISTRY" ]] || return 0
  local dest="$REGISTRY/modelrepo/runtime:py$1" stamp="$IMAGES/runtime-py$1.pushed"
  [[ "$(cat "$stamp" 2>/dev/null)" == "$REGISTRY $3" ]] && return 0
  log "pushing $dest"
  local c pkgs
  c=$("${BUILDAH[@]}" from -q --pull=never "$2")
  pkgs=$("${BUILDAH[@]}" run --isolation chroot "$c" -- cat /opt/modelrepo/packages.txt)
  "${BUILDAH[@]}" config --label "modelrepo.packages=$pkgs" --label "modelrepo.python=$1" "$c"
  "${BUILDAH[@]}" commit -q --rm "$c" "$dest" >/dev/null
  "${BUILDAH[@]}" push -q --tls-verify=false "$dest" "docker://$dest" >/dev/null
  echo "$REGISTRY $3" > "$stamp"
}

build_builder() {
  # The image of environment build Jobs: buildah (vfs storage, chroot isolation) on bookworm.
  local key; key=$( { base_key bookworm; echo "buildah v1"; } | hash_stdin)
  if ! up_to_date builder "$key"; then
    build_base bookworm
    log "building $BUILDER_IMAGE"
    local dir mounts=(); dir=$(mktemp -d); mapfile -t mounts < <(build_mounts)
    printf '%s\n' 'ARG BASE' 'FROM ${BASE}' \
      'RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends buildah ca-certificates && rm -rf /var/lib/apt/lists/*' \
      'ENV STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot' > "$dir/Containerfile"
    "${BUILDAH[@]}" bud -q --layers --pull=never --isolation chroot --network host "${mounts[@]}" \
      --build-arg "BASE=$(base_image bookworm)" --label "modelrepo.inputs=$key" \
      -f "$dir/Containerfile" -t "$BUILDER_IMAGE" "$dir" >/dev/null
    rm -rf "$dir"
    export_image builder "$BUILDER_IMAGE" "$key"
  fi
  if [[ -n "$REGISTRY" && "$(cat "$IMAGES/builder.pushed" 2>/dev/null)" != "$REGISTRY $key" ]]; then
    "${BUILDAH[@]}" push -q --tls-verify=false "$BUILDER_IMAGE" "docker://$REGISTRY/modelrepo/builder:1" >/dev/null
    echo "$REGISTRY $key" > "$IMAGES/builder.pushed"
  fi
}

main() {
  ensure_debs buildah debootstrap
  mkdir -p "$IMAGES"
  local p
  case "${1:-all}" in
    pause) build_pause ;;
    base) build_base "${2:-bookworm}" ;;
    project) build_project "${2:-3.11}" ;;
    builder) build_builder ;;
    bases) for p in $PYTHONS; do [[ "$p" == 3.11 ]] || build_project "$p"; done ;;
    all) build_pause; build_project 3.11; build_builder; for p in $CLUSTER_PYTHONS; do build_project "$p"; done ;;
    push) [[ -n "$REGISTRY" ]] || die "push needs REGISTRY=host:port"
          for p in 3.11 $CLUSTER_PYTHONS; do build_project "$p"; done; build_builder ;;
    *) die "usage: $0 [pause|base [suite]|project [python]|builder|bases|all|push]" ;;
  esac
}
# Run unless sourced (tests source it to call apt_mirror).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
