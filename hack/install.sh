#!/usr/bin/env bash
# Install or remove the modelrepo operator with its Helm chart (`make install`, `make uninstall`).
#   hack/install.sh install     CRDs (server-side apply), then `helm upgrade --install --wait`
#   hack/install.sh uninstall   `helm uninstall`; the CRD (and so every ModelRepo) is kept
#                               unless PURGE_CRDS=1
# Cluster: $KUBECONFIG when set, else the local cluster's .cluster/kubeconfig. On the local
# cluster the image is the locally built docker.io/library/modelrepo:dev: `hack/cluster.sh up`
# rebuilds it when its inputs changed and imports it (it reuses a running cluster).
# Idempotent: running it twice changes nothing the second time (the pod rolls only when the
# image changed, through the image-key annotation).
# Settings (environment): RELEASE (modelrepo), NAMESPACE (modelrepo-system), HELM_ARGS
# (extra arguments for helm, e.g. "--set watchNamespaces={ml}"), IMAGE_REPOSITORY, IMAGE_TAG.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${MODELREPO_CACHE:-$HOME/.cache/modelrepo}"  # where hack/build-images.sh keeps images
LOCAL_KUBECONFIG="$ROOT/.cluster/kubeconfig"
RELEASE="${RELEASE:-modelrepo}"
NAMESPACE="${NAMESPACE:-modelrepo-system}"
CHART="$ROOT/charts/modelrepo"
FIELD_MANAGER="modelrepo-install"

log() { printf '[install %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

local_cluster=false
if [[ -z "${KUBECONFIG:-}" ]]; then
    export KUBECONFIG="$LOCAL_KUBECONFIG"
    local_cluster=true
elif [[ "$(realpath -m "$KUBECONFIG")" == "$(realpath -m "$LOCAL_KUBECONFIG")" ]]; then
    local_cluster=true
fi

kubectl_bin() {  # the local cluster's own kubectl first (same version), else the one on PATH
    local k8s_bin
    k8s_bin=$("$ROOT/hack/cluster.sh" env 2>/dev/null | sed -n 's/^K8S_BIN=//p' || true)
    if [[ -n "$k8s_bin" && -x "$k8s_bin/kubectl" ]]; then
        echo "$k8s_bin/kubectl"
    elif command -v kubectl >/dev/null 2>&1; then
        command -v kubectl
    else
        die "kubectl not found (make cluster builds one; or put kubectl on PATH)"
    fi
}

# runtime_images <registry>: `"<python>": "<image>"` for each runtime image in the registry
# (modelrepo/runtime:py<python>, pushed by `make cluster` for 3.11 and CLUSTER_PYTHONS).
runtime_images() {
    python3 - "$1" <<'PY' 2>/dev/null || echo "\"3.11\": \"$1/modelrepo/runtime:py3.11\""
import json, sys, urllib.request
reg = sys.argv[1]
with urllib.request.urlopen(f"http://{reg}/v2/modelrepo/runtime/tags/list", timeout=10) as answer:
    tags = sorted(t for t in json.load(answer).get("tags") or [] if t.startswith("py"))
print(", ".join(f'"{t[2:]}": "{reg}/modelrepo/runtime:{t}"' for t in tags))
PY
}

# local_environment_values <registry>: chart values that let the operator build environment
# images on the local cluster (docs/cluster.md): the node's registry and images, build pods on
# the node's network with this machine's resolver, CA bundle and pip index settings.
local_environment_values() {
    local reg=$1 ns key value pip_env=""
    ns=$(awk '/^nameserver/ {printf "%s\"%s\"", (n++ ? ", " : ""), $2}' /etc/resolv.conf 2>/dev/null || true)
    # The index settings of this machine's pip (`pip config list`: global.*, :env:.* keys).
    while IFS='=' read -r key value; do
        value=${value#\'}; value=${value%\'}
        case "${key##*.}" in
            index-url) pip_env+="PIP_INDEX_URL: \"$value\", " ;;
            extra-index-url) pip_env+="PIP_EXTRA_INDEX_URL: \"$value\", " ;;
            trusted-host) pip_env+="PIP_TRUSTED_HOST: \"$value\", " ;;
        esac
    done < <(python3 -m pip config list 2>/dev/null || true)
    cat <<YAML
environments:
  registry: "$reg"
  plainHttp: true
  builderImage: "$reg/modelrepo/builder:1"
  baseImages: {$(runtime_images "$reg")}
  hostNetwork: true
  nameservers: [$ns]
  pipEnv: {${pip_env%, }}
YAML
    [[ -f /etc/ssl/certs/ca-certificates.crt ]] && echo '  caBundleHostPath: /etc/ssl/certs/ca-certificates.crt'
    return 0
}

do_install() {
    if $local_cluster; then
        "$ROOT/hack/cluster.sh" up   # starts the cluster or reuses it; refreshes the image
    fi
    [[ -f "$KUBECONFIG" ]] || die "no kubeconfig at $KUBECONFIG (set KUBECONFIG or run make cluster)"
    local helm kubectl
    helm=$("$ROOT/hack/helm.sh")
    kubectl=$(kubectl_bin)

    # helm installs crds/ only on first install and never upgrades them: apply them ourselves,
    # server-side, so a changed CRD reaches the cluster on every install.
    log "applying CRDs from crds/"
    "$kubectl" apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" -f "$ROOT/crds/"
    "$kubectl" wait --for condition=established --timeout=60s crd/modelrepos.modelrepo.dev

    local args=(upgrade --install "$RELEASE" "$CHART" --namespace "$NAMESPACE" --create-namespace
                --skip-crds --wait --timeout 5m)
    [[ -n "${IMAGE_REPOSITORY:-}" ]] && args+=(--set-string "image.repository=$IMAGE_REPOSITORY")
    [[ -n "${IMAGE_TAG:-}" ]] && args+=(--set-string "image.tag=$IMAGE_TAG")
    if $local_cluster && [[ -f "$CACHE/images/modelrepo.key" ]]; then
        # Same tag (dev) for every local build: roll the pod when the image itself changed.
        args+=(--set-string "podAnnotations.modelrepo\.dev/image-key=$(cat "$CACHE/images/modelrepo.key")")
    fi
    if $local_cluster; then
        local registry values
        registry=$("$ROOT/hack/cluster.sh" env | sed -n 's/^REGISTRY=//p')
        values=$(mktemp); trap 'rm -f "$values"' EXIT
        local_environment_values "$registry" > "$values"
        args+=(-f "$values")
    fi
    # shellcheck disable=SC2206  # HELM_ARGS is split on purpose
    args+=(${HELM_ARGS:-})
    log "helm ${args[*]}"
    "$helm" "${args[@]}"
    log "installed: release $RELEASE in namespace $NAMESPACE"
}

do_uninstall() {
    [[ -f "$KUBECONFIG" ]] || { log "no kubeconfig at $KUBECONFIG: nothing to uninstall"; return 0; }
    local helm kubectl
    helm=$("$ROOT/hack/helm.sh")
    kubectl=$(kubectl_bin)
    if "$helm" status "$RELEASE" --namespace "$NAMESPACE" >/dev/null 2>&1; then
        "$helm" uninstall "$RELEASE" --namespace "$NAMESPACE" --wait --timeout 5m
    else
        log "release $RELEASE is not installed in $NAMESPACE: nothing to do"
    fi
    if [[ "${PURGE_CRDS:-0}" == 1 ]]; then
        log "deleting the CRD: every ModelRepo and its deployments go with it"
        "$kubectl" delete --ignore-not-found -f "$ROOT/crds/"
    else
        log "CRDs kept (ModelRepos stay); PURGE_CRDS=1 removes them and every ModelRepo"
    fi
}

case "${1:-}" in
    install) do_install ;;
    uninstall) do_uninstall ;;
    *) echo "usage: hack/install.sh install|uninstall" >&2; exit 2 ;;
esac
