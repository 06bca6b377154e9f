"""Environments in the cluster: which image serves a folder, and the Job that builds it.

Pure functions (docs/operator.md, "Environments"): settings and a folder's `Environment` in,
a decision or a manifest out. A folder whose environment its Python's base image satisfies is
served by that image (no build: today's speed); any other gets an image built once per
environment hash by a Kubernetes Job (buildah, no Docker) and pushed to the registry; the
Deployment pins it by digest. With no registry configured nothing is ever built.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelrepo.format.environment import Environment, environment_hash, unmet_by_base
from modelrepo.operator.keys import LABEL_REPO, MANAGED_BY
from modelrepo.operator.naming import label_value

LABEL_ENVIRONMENT = "modelrepo.dev/environment"
COMPONENT_BUILD = {"app.kubernetes.io/component": "environment-build"}
DEFAULT_GPU_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"
# A Debian package name (policy 5.6.1), optionally `=version`: nothing a shell would interpret.
_DEB_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")
_PIP_ENV = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT", "PIP_CERT")
CA_PATH = "/etc/modelrepo/ca/ca-certificates.crt"


@dataclass(frozen=True)
class BaseImage:
    """The runtime image for one Python, and what it has installed (`pip freeze`, if known)."""

    image: str
    packages: Mapping[str, str] = field(default_factory=dict)


AUTH_FILE = "/etc/modelrepo/registry-auth/.dockerconfigjson"  # where the chart mounts registryAuthSecret


@dataclass(frozen=True)
class EnvironmentSettings:
    """The chart's `environments` values (MODELREPO_ENVIRONMENTS, JSON)."""

    registry: str = ""  # host[:port] to push built images to; "" = never build
    repository: str = "modelrepo/env"
    plain_http: bool = False  # a registry without TLS (the local cluster's)
    base_images: Mapping[str, BaseImage] = field(default_factory=dict)  # python -> base
    default_python: str = "3.11"  # the Python of the operator's runtime image
    builder_image: str = ""
    timeout_seconds: int = 1800
    concurrency: int = 2
    resources: Mapping[str, Any] = field(default_factory=lambda: {
        "requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"},
    })
    storage_size_limit: str = "20Gi"
    ttl_seconds: int = 3600  # finished Jobs (and their pods) are removed after this
    pip_env: Mapping[str, str] = field(default_factory=dict)  # PIP_INDEX_URL & co. for the build
    ca_bundle_host_path: str = ""  # a CA bundle on the node that pip/apt in the build must trust
    host_network: bool = False  # build pods on the node's network (local cluster)
    nameservers: tuple[str, ...] = ()  # DNS for build pods (with host_network)
    gpu_label: str = DEFAULT_GPU_LABEL
    gpu_tolerations: tuple[Mapping[str, Any], ...] = ()
    pull_secret: str = ""  # imagePullSecret of the registry, in the ModelRepo's namespace (builds, model pods)
    # the operator's own reads of the registry: a dockerconfigjson the chart mounts from the Secret
    # `registryAuthSecret` of the operator's namespace ("" = anonymous reads)
    auth_file: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.registry)

    @classmethod
    def from_json(cls, text: str) -> EnvironmentSettings:
        """Parse MODELREPO_ENVIRONMENTS; unknown keys are errors (a typo must not pass silently)."""
        if not text.strip():
            return cls()
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("MODELREPO_ENVIRONMENTS must be a JSON object")
        keys = {
            "registry": "registry", "repository": "repository", "plainHttp": "plain_http",
            "defaultPython": "default_python", "builderImage": "builder_image",
            "timeoutSeconds": "timeout_seconds", "concurrency": "concurrency", "resources": "resources",
            "storageSizeLimit": "storage_size_limit", "ttlSecondsAfterFinished": "ttl_seconds",
            "pipEnv": "pip_env", "caBundleHostPath": "ca_bundle_host_path", "hostNetwork": "host_network",
            "nameservers": "nameservers", "gpuNodeLabel": "gpu_label", "gpuTolerations": "gpu_tolerations",
            "pullSecret": "pull_secret", "authFile": "auth_file",
        }
        if data.get("registryAuthSecret") and not data.get("authFile"):
            data = {**data, "authFile": AUTH_FILE}
        unknown = set(data) - set(keys) - {"baseImages", "registryAuthSecret"}
        if unknown:
            raise ValueError(f"MODELREPO_ENVIRONMENTS: unknown keys {sorted(unknown)}")
        kwargs: dict[str, Any] = {keys[k]: v for k, v in data.items() if k in keys and v not in (None, "")}
        for key in ("nameservers", "gpu_tolerations"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        bases = {}
        for python, value in (data.get("baseImages") or {}).items():
            if isinstance(value, str):
                value = {"image": value}
            if value.get("image"):
                bases[str(python)] = BaseImage(value["image"], dict(value.get("packages") or {}))
        kwargs["base_images"] = bases
        return cls(**kwargs)


@dataclass(frozen=True)
class Decision:
    """What serves a folder: `image` (None = the repository's runtime image), or the build
    it needs, or why it cannot be served."""

    env_hash: str
    image: str | None = None
    build: bool = False  # `target` must be built from `base`
    target: str = ""  # registry/repository:<env hash>
    base: str = ""
    refused: str | None = None
    unmet: tuple[str, ...] = ()  # why the base image does not do


def target_image(settings: EnvironmentSettings, env_hash: str) -> str:
    return f"{settings.registry}/{settings.repository}:{env_hash}"


def decide(env: Environment, settings: EnvironmentSettings) -> Decision:
    """Serve with the base image, or build, or refuse (naming what to set)."""
    h = environment_hash(env)
    if not settings.enabled:
        return Decision(h)  # as before environments: the runtime image, whatever is asked
    bad = [p for p in env.system_packages if not _DEB_PACKAGE.match(p)]
    if bad:
        return Decision(h, refused=f"systemPackages: {', '.join(map(repr, bad))} is not a Debian package name")
    base = settings.base_images.get(env.python_version)
    if base is None:
        known = ", ".join(sorted(settings.base_images)) or "none"
        return Decision(h, refused=(
            f"pythonVersion {env.python_version} has no base image (known: {known}); set "
            f"environments.baseImages.\"{env.python_version}\" in the chart's values to a runtime image "
            f"with Python {env.python_version} built from runtime/Dockerfile"
        ))
    unmet = unmet_by_base(env, env.python_version, base.packages)
    if not unmet:
        same_as_runtime = env.python_version == settings.default_python
        return Decision(h, image=None if same_as_runtime else base.image)
    return Decision(h, build=True, target=target_image(settings, h), base=base.image, unmet=tuple(unmet))


def job_name(env_hash: str) -> str:
    return f"modelrepo-env-{env_hash}"[:63]


# The build, as the Job's one container runs it. Inputs come as files/env, never spliced into
# the script: requirements.txt is a file, system packages were checked against a strict pattern.
BUILD_SCRIPT = r"""set -eu
mkdir -p /work/ctx && cd /work/ctx
printf '%s\n' "$REQUIREMENTS" > requirements.txt
cat > Containerfile <<'EOF'
ARG BASE
FROM ${BASE}
ARG SYSTEM_PACKAGES=""
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_DEFAULT_TIMEOUT
ARG PIP_CERT
USER 0
RUN if [ -n "$SYSTEM_PACKAGES" ]; then apt-get update -q && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $SYSTEM_PACKAGES && \
    rm -rf /var/lib/apt/lists/*; fi
COPY requirements.txt /opt/modelrepo/environment/requirements.txt
RUN if [ -s /opt/modelrepo/environment/requirements.txt ]; then \
    /opt/modelrepo/bin/pip install --no-cache-dir --progress-bar off -r /opt/modelrepo/environment/requirements.txt; fi
USER 10001:10001
EOF
set -- --build-arg "BASE=$BASE" --build-arg "SYSTEM_PACKAGES=$SYSTEM_PACKAGES"
for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT; do
  eval "x=\${$v:-}"; [ -z "$x" ] || set -- "$@" --build-arg "$v=$x"
done
if [ -f "$CA_PATH" ]; then
  set -- "$@" -v "$CA_PATH:/etc/ssl/certs/ca-certificates.crt:ro" --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt
fi
B="buildah --storage-driver vfs"
$B bud --isolation chroot --network host --tls-verify="$TLS_VERIFY" --label "modelrepo.environment=$ENV_HASH" \
  "$@" -f Containerfile -t "$TARGET" .
$B push --tls-verify="$TLS_VERIFY" --digestfile /tmp/digest "$TARGET" "docker://$TARGET"
echo "built $(cat /tmp/digest)"
"""


def render_build_job(
    namespace: str, repo_name: str, env: Environment, decision: Decision, requirements_text: str,
    settings: EnvironmentSettings,
) -> dict[str, Any]:
    """The Job that builds `decision.target` from `decision.base`.

    Privileged (and root), this pod only: buildah mounts the image's root filesystem, chroots
    into it for RUN steps and apt-get switches users; none of that works in a pod without
    privileges. It mounts no Secret of the repository and no service account token."""
    env_vars = _build_env(env, decision, requirements_text, settings)
    mounts, volumes = _build_volumes(settings)
    labels = {**MANAGED_BY, **COMPONENT_BUILD, LABEL_REPO: label_value(repo_name),
              LABEL_ENVIRONMENT: decision.env_hash}
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [{
            "name": "build", "image": settings.builder_image, "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", "-c", BUILD_SCRIPT], "env": env_vars, "volumeMounts": mounts,
            "resources": json.loads(json.dumps(dict(settings.resources))),
            "securityContext": {"privileged": True, "runAsUser": 0},
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }],
        "volumes": volumes,
    }
    if settings.host_network:
        pod["hostNetwork"] = True
    if settings.nameservers:
        pod["dnsPolicy"] = "None"
        pod["dnsConfig"] = {"nameservers": list(settings.nameservers)}
    if settings.pull_secret:
        pod["imagePullSecrets"] = [{"name": settings.pull_secret}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(decision.env_hash), "namespace": namespace, "labels": labels,
            "annotations": {"modelrepo.dev/target": decision.target},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.timeout_seconds,
            "ttlSecondsAfterFinished": settings.ttl_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def _build_env(env: Environment, decision: Decision, requirements_text: str,
               settings: EnvironmentSettings) -> list[dict[str, str]]:
    """What the build script reads: base and target images, the environment, pip's settings."""
    return [
        {"name": "BASE", "value": decision.base}, {"name": "TARGET", "value": decision.target},
        {"name": "ENV_HASH", "value": decision.env_hash},
        {"name": "SYSTEM_PACKAGES", "value": " ".join(env.system_packages)},
        {"name": "REQUIREMENTS", "value": requirements_text},
        {"name": "TLS_VERIFY", "value": "false" if settings.plain_http else "true"},
        {"name": "CA_PATH", "value": CA_PATH},
        {"name": "STORAGE_DRIVER", "value": "vfs"},
    ] + [{"name": k, "value": str(v)} for k, v in sorted(settings.pip_env.items()) if k in _PIP_ENV]


def _build_volumes(settings: EnvironmentSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(mounts, volumes): bounded emptyDirs for buildah's storage and the work dir, the CA if any."""
    mounts: list[dict[str, Any]] = [{"name": "storage", "mountPath": "/var/lib/containers"},
                                    {"name": "work", "mountPath": "/work"}]
    volumes: list[dict[str, Any]] = [
        {"name": "storage", "emptyDir": {"sizeLimit": settings.storage_size_limit}},
        {"name": "work", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    if settings.ca_bundle_host_path:
        mounts.append({"name": "ca", "mountPath": CA_PATH, "readOnly": True})
        volumes.append({"name": "ca", "hostPath": {"path": settings.ca_bundle_host_path, "type": "File"}})
    return mounts, volumes


def job_state(job: Mapping[str, Any] | None) -> str:
    """"absent", "running", "complete" or "failed" from a Job's status."""
    if job is None:
        return "absent"
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return cond["type"].lower()
    return "running"


def failure_text(job: Mapping[str, Any] | None, pods: list[Mapping[str, Any]], lines: int = 3) -> str:
    """What pip/apt said is wrong (their last `ERROR:`/`E:` lines, else the last lines the build
    printed), else the Job's reason (e.g. its deadline)."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((cs.get("state") or {}).get("terminated") or {}).get("message") or ""
            kept = [ln.strip() for ln in message.splitlines() if ln.strip()]
            errors = [ln for ln in kept if ln.startswith(("ERROR:", "E:"))]
            if kept:
                return " | ".join((errors or kept)[-lines:])
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed":
            return f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".strip(": ")
    return "the build Job failed"


def pinned(target: str, digest: str) -> str:
    """`registry/repo:tag` pinned to a digest: what the Deployment runs."""
    return f"{target.rsplit(':', 1)[0]}@{digest}" if ":" in target.rsplit("/", 1)[-1] else f"{target}@{digest}"


def gpu_pod_fields(gpu: str | None, settings: EnvironmentSettings) -> dict[str, Any]:
    """What `capabilities: [gpu]` / `[gpu=<type>]` adds to a pod: a GPU limit for the runtime
    container (`limits`), a node selector for the type, the tolerations of GPU nodes."""
    if gpu is None:
        return {}
    fields: dict[str, Any] = {"limits": {GPU_RESOURCE: "1"}}  # a quantity, as the API server returns it
    if gpu:
        fields["nodeSelector"] = {settings.gpu_label: gpu}
    if settings.gpu_tolerations:
        fields["tolerations"] = [dict(t) for t in settings.gpu_tolerations]
    return fields
