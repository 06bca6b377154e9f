"""The children of a ModelRepo, one Deployment + Service per deployment folder (docs/operator.md).

Pure functions: data in (the ModelRepo's spec, one folder's commit/tree/metadata), manifests
out. The pod template depends only on the folder and the repository settings, so a push that
does not touch a folder leaves its pods alone.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from modelrepo.format import deployment_path
from modelrepo.git import strip_credentials
from modelrepo.operator.keys import (
    ANN_BRANCH,
    ANN_COMMIT,
    ANN_COMMON,
    ANN_CONFIG,
    ANN_DATASETS,
    ANN_NAME,
    ANN_TREE,
    ANN_VERSION,
    API_VERSION,
    KIND,
    LABEL_BRANCH,
    LABEL_COMMIT,
    LABEL_DEPLOYMENT,
    LABEL_REPO,
    MANAGED_BY,
)
from modelrepo.operator.naming import child_name, label_value
from modelrepo.operator.policy import POLICY, PodPolicy

# The image of the pods when spec.runtime.image is not set; the Helm chart sets it to the
# operator's own image (one image for both) in MODELREPO_RUNTIME_IMAGE.
DEFAULT_IMAGE = POLICY.runtime_image
RUNTIME_PORT = 3000
RUNTIME_UID = 10001
MODEL_DIR = "/model"
CREDENTIALS_DIR = "/etc/modelrepo/git"
# Datasets and secrets (docs/data.md): mounted into the runtime container only.
WAREHOUSES_DIR = "/etc/modelrepo/warehouses"
SECRETS_DIR = "/etc/modelrepo/secrets"
# Bump when the rendering changes in a way that must roll every child.
RENDER_VERSION = "2"  # 2: fetch (git only, with the Secret) and check (no Secret) init containers


@dataclass(frozen=True)
class RepoRef:
    """What the children need to know about their ModelRepo."""

    name: str
    namespace: str
    uid: str
    url: str
    branch: str | None = None
    revision: str | None = None
    secret_name: str | None = None
    runtime: dict[str, Any] = field(default_factory=dict)
    service: dict[str, Any] = field(default_factory=dict)
    warehouses_secret: str | None = None
    secrets: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (Secret name, deployment globs)
    branches: tuple[str, ...] = ()  # spec.branches: names and globs (instead of branch/revision)

    @classmethod
    def from_body(cls, body: Any) -> RepoRef:
        meta, spec = body["metadata"], body.get("spec") or {}
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            url=spec["url"],
            branch=spec.get("branch"),
            revision=spec.get("revision"),
            secret_name=(spec.get("secretRef") or {}).get("name"),
            runtime=dict(spec.get("runtime") or {}),
            service=dict(spec.get("service") or {}),
            warehouses_secret=(spec.get("warehousesSecretRef") or {}).get("name"),
            secrets=tuple((s["name"], tuple(s.get("deployments") or ["*"])) for s in spec.get("secrets") or []),
            branches=tuple(str(b) for b in spec.get("branches") or ()),
        )

    @property
    def image(self) -> str:
        return self.runtime.get("image") or DEFAULT_IMAGE

    @property
    def ref(self) -> str:
        """The branch or revision followed; with spec.branches, its first entry."""
        return self.branch or self.revision or (self.branches[0] if self.branches else "main")

    @property
    def first_branch(self) -> str | None:
        """The branch whose children keep the names they had before spec.branches existed:
        spec.branch (or the revision), or the first entry of spec.branches when it is a name,
        not a pattern (with a pattern first, every child's name carries its branch, so that a
        new branch sorting first renames nothing)."""
        if not self.branches:
            return self.ref
        return None if is_pattern(self.branches[0]) else self.branches[0]

    def config_hash(self, policy: PodPolicy = POLICY) -> str:
        """Hash of every repository-level input of the rendering: a change rolls every child."""
        data = [
            RENDER_VERSION, self.url, self.ref, self.secret_name, self.image, self.runtime, self.service,
            policy.render_inputs(),
        ]
        if self.warehouses_secret or self.secrets:  # only then: existing children keep their hash
            data += [self.warehouses_secret, [[n, list(g)] for n, g in self.secrets]]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def is_pattern(branch: str) -> bool:
    """A spec.branches entry that is a glob (`release-*`), resolved against the remote's branches."""
    return any(c in branch for c in "*?[")


@dataclass(frozen=True)
class Folder:
    """One deployment folder at the synced commit of one branch."""

    name: str
    tree: str
    commit: str  # the newest commit that changed this folder
    version: int  # counted on this branch's first-parent history
    datasets_commit: str = ""  # the newest commit that changed a dataset it reads ("" = none)
    common_commit: str = ""  # the newest commit after `commit` changing a common/ file it links ("" = none)
    branch: str = ""  # the branch it is on ("" = spec.revision, or not known)
    branch_in_name: bool = False  # a branch after the first: its children's names carry it

    @property
    def fetch_commit(self) -> str:
        """Where the pod fetches the folder (the same at both) and the common/ files it links."""
        return self.common_commit or self.commit

    @property
    def named_branch(self) -> str:
        """The branch as part of the children's names and selector ("" for the first branch)."""
        return self.branch if self.branch_in_name else ""

    @property
    def key(self) -> str:
        """What the sync keys this folder by: its name on the first branch, `<branch>/<name>` on others."""
        return folder_key(self.name, self.named_branch)


def folder_key(name: str, named_branch: str = "") -> str:
    return f"{named_branch}/{name}" if named_branch else name


def split_key(key: str) -> tuple[str, str]:
    """(named branch or "", folder name) of a folder key (folder names never hold a `/`)."""
    branch, _, name = key.rpartition("/")
    return branch, name


def folder_child(repo_name: str, folder: Folder) -> str:
    """The name of the Deployment and Service serving `folder`."""
    return child_name(repo_name, folder.name, folder.named_branch)


@dataclass(frozen=True)
class FolderSettings:
    """What a folder's metadata.yaml says about its pods (None = repository default)."""

    replicas: int | None = None
    resources: dict[str, Any] | None = None
    env: dict[str, str] = field(default_factory=dict)
    image: str | None = None  # the folder's environment image (pinned by digest); None: repo.image
    gpu: dict[str, Any] | None = None  # environments.gpu_pod_fields: limits, nodeSelector, tolerations
    pull_secrets: tuple[str, ...] = ()  # imagePullSecrets (the environments' registry needs a login)


def owner_reference(repo: RepoRef) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION, "kind": KIND, "name": repo.name, "uid": repo.uid,
        # No blockOwnerDeletion: it would need update on modelrepos/finalizers (least privilege);
        # background garbage collection removes the children all the same.
        "controller": True,
    }


def selector_labels(repo: RepoRef, folder_name: str, branch: str = "") -> dict[str, str]:
    """Immutable selector: never includes the commit.

    `branch` (a branch after the first) adds `modelrepo.dev/branch` and makes the deployment
    label `<Name>.<branch>`: the first branch's selectors predate branches, and a superset of
    their labels would put another branch's pods behind the first branch's Services."""
    if not branch:
        return {**MANAGED_BY, LABEL_REPO: label_value(repo.name), LABEL_DEPLOYMENT: label_value(folder_name)}
    return {**MANAGED_BY, LABEL_REPO: label_value(repo.name),
            LABEL_DEPLOYMENT: label_value(f"{folder_name}.{branch}"), LABEL_BRANCH: label_value(branch)}


def service_base(repo: RepoRef, folder_name: str, branch: str = "") -> str:
    """http://<child>.<namespace>.svc[:port]: the Service of one folder (of a branch after the first)."""
    port = int(repo.service.get("port") or 80)
    host = f"{child_name(repo.name, folder_name, branch)}.{repo.namespace}.svc"
    return f"http://{host}{'' if port == 80 else f':{port}'}"


def service_url(repo: RepoRef, folder_name: str, branch: str = "") -> str:
    return f"{service_base(repo, folder_name, branch)}/v1/{folder_name}/latest"


def _resources(settings: FolderSettings, repo: RepoRef, policy: PodPolicy) -> dict[str, Any]:
    """metadata.yaml's resources, else spec.runtime's, else the operator's fail-safe default."""
    res = settings.resources if settings.resources is not None else repo.runtime.get("resources")
    if not res:
        return copy.deepcopy(dict(policy.resources))
    if "requests" in res or "limits" in res:
        return dict(res)
    return {"requests": dict(res)}


def _env(folder: Folder, settings: FolderSettings, repo: RepoRef) -> list[dict[str, Any]]:
    fixed = [
        {"name": "MODELREPO_COMMIT", "value": folder.commit},
        {"name": "MODELREPO_VERSION", "value": str(folder.version)},
        {"name": "HOME", "value": "/tmp"},
        {"name": "BENTOML_HOME", "value": "/tmp/bentoml"},
    ]
    names = {e["name"] for e in fixed} | set(settings.env)
    repo_env = [e for e in (repo.runtime.get("env") or []) if e.get("name") not in names]
    own = [{"name": k, "value": v} for k, v in sorted(settings.env.items())]
    return fixed + repo_env + own


def _data_mounts(repo: RepoRef, folder: Folder) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes, runtime mounts and env for datasets, warehouses and secrets (the runtime container's only)."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    env = [{"name": "MODELREPO_DATASETS_DIR", "value": f"{MODEL_DIR}/datasets"}]
    if repo.warehouses_secret:
        volumes.append({"name": "warehouses", "secret": {"secretName": repo.warehouses_secret, "defaultMode": 0o440}})
        mounts.append({"name": "warehouses", "mountPath": WAREHOUSES_DIR, "readOnly": True})
        env.append({"name": "MODELREPO_WAREHOUSES_DIR", "value": WAREHOUSES_DIR})
    dirs = []
    for index, (secret, globs) in enumerate(repo.secrets):
        if not any(fnmatch.fnmatchcase(folder.name, g) for g in globs):
            continue
        volumes.append({"name": f"secret-{index}", "secret": {"secretName": secret, "defaultMode": 0o440}})
        mounts.append({"name": f"secret-{index}", "mountPath": f"{SECRETS_DIR}/{secret}", "readOnly": True})
        dirs.append(f"{SECRETS_DIR}/{secret}")
    if dirs:
        env.append({"name": "MODELREPO_SECRETS_DIRS", "value": ":".join(dirs)})
    return volumes, mounts, env


def container_security() -> dict[str, Any]:
    """Every container of the model, gateway and versions pods (not the build Jobs'): no privilege
    escalation, read-only root filesystem, no capabilities."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


@dataclass(frozen=True)
class _Pod:
    """What the three containers of one folder's pod share."""

    repo: RepoRef
    folder: Folder
    policy: PodPolicy
    image: str
    pull: str
    env: list[dict[str, Any]]
    resources: dict[str, Any]

    @property
    def folder_dir(self) -> str:
        return f"{MODEL_DIR}/{deployment_path(self.folder.name)}"

    def container(self, name: str, args: list[str], **fields: Any) -> dict[str, Any]:
        return {
            "name": name, "image": self.image, "imagePullPolicy": self.pull, "args": args, **fields,
            "securityContext": container_security(),
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }


def _code_mounts() -> list[dict[str, Any]]:
    """The mounts of the containers that run repository code: the folder read-only, a /tmp."""
    return [{"name": "model", "mountPath": MODEL_DIR, "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}]


def _fetch_container(pod: _Pod) -> dict[str, Any]:
    """git only, the one container with the Secret (and a scratch /tmp of its own)."""
    repo, folder = pod.repo, pod.folder
    args = [
        "fetch", "--url", strip_credentials(repo.url), "--commit", folder.fetch_commit,
        "--path", deployment_path(folder.name), "--dest", MODEL_DIR,
    ]
    ref = folder.branch or repo.branch
    if ref:
        args += ["--ref", ref]
    if folder.datasets_commit and folder.datasets_commit != folder.fetch_commit:
        args += ["--datasets-at", folder.datasets_commit]
    mounts = [{"name": "model", "mountPath": MODEL_DIR}, {"name": "git-tmp", "mountPath": "/tmp"}]
    if repo.secret_name:
        args += ["--credentials", CREDENTIALS_DIR]
        mounts.append({"name": "git-credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True})
    return pod.container(
        "fetch", args, env=[{"name": "HOME", "value": "/tmp"}],
        resources=copy.deepcopy(dict(pod.policy.init_resources)), volumeMounts=mounts,
    )


def _check_container(pod: _Pod) -> dict[str, Any]:
    """Imports the folder and runs its docstring tests; no Secret."""
    return pod.container(
        "check", ["check", "--dir", pod.folder_dir], env=copy.deepcopy(pod.env),
        resources=copy.deepcopy(pod.resources), volumeMounts=_code_mounts(),
    )


def _runtime_container(pod: _Pod) -> dict[str, Any]:
    """Serves the folder; no git Secret (the warehouses and secrets granted to it, read-only)."""
    _volumes, data_mounts, data_env = _data_mounts(pod.repo, pod.folder)
    return pod.container(
        "runtime",
        ["runtime", "--dir", pod.folder_dir, "--port", str(RUNTIME_PORT), "--name", pod.folder.name],
        env=pod.env + data_env,
        ports=[{"name": "http", "containerPort": RUNTIME_PORT, "protocol": "TCP"}],
        readinessProbe={"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2, "failureThreshold": 3},
        livenessProbe={
            "httpGet": {"path": "/livez", "port": "http"},
            "initialDelaySeconds": 30, "periodSeconds": 10, "failureThreshold": 6,
        },
        startupProbe={"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 2, "failureThreshold": 300},
        resources=pod.resources,
        volumeMounts=_code_mounts() + data_mounts,
    )


def pod_security() -> dict[str, Any]:
    """The pod-level securityContext of the model, gateway and versions pods: uid 10001, seccomp."""
    return {"runAsNonRoot": True, "runAsUser": RUNTIME_UID, "runAsGroup": RUNTIME_UID,
            "fsGroup": RUNTIME_UID, "seccompProfile": {"type": "RuntimeDefault"}}


def pod_volumes(repo: RepoRef, policy: PodPolicy, files: str = "model") -> list[dict[str, Any]]:
    """The fetched files (`files`), /tmp, the fetch's own /tmp, and the git Secret if any."""
    volumes: list[dict[str, Any]] = [
        {"name": files, "emptyDir": {"sizeLimit": policy.model_size_limit}},
        {"name": "tmp", "emptyDir": {"sizeLimit": policy.tmp_size_limit}},
        {"name": "git-tmp", "emptyDir": {"sizeLimit": policy.tmp_size_limit}},
    ]
    if repo.secret_name:
        volumes.append({"name": "git-credentials", "secret": {"secretName": repo.secret_name, "defaultMode": 0o440}})
    return volumes


def _pod_spec(pod: _Pod) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security(),
        "initContainers": [_fetch_container(pod), _check_container(pod)],
        "containers": [_runtime_container(pod)],
        "volumes": pod_volumes(pod.repo, pod.policy) + _data_mounts(pod.repo, pod.folder)[0],
    }
    for key in ("serviceAccountName", "nodeSelector", "tolerations"):
        if pod.repo.runtime.get(key):
            spec[key] = pod.repo.runtime[key]
    return spec


def _add_gpu(spec: dict[str, Any], gpu: dict[str, Any]) -> None:
    """A GPU for the runtime container; the node selector and tolerations of GPU nodes."""
    runtime = spec["containers"][0]
    runtime["resources"] = {**runtime["resources"], "limits": {**runtime["resources"].get("limits", {}), **gpu["limits"]}}
    if gpu.get("nodeSelector"):
        spec["nodeSelector"] = {**spec.get("nodeSelector", {}), **gpu["nodeSelector"]}
    if gpu.get("tolerations"):
        spec["tolerations"] = [*spec.get("tolerations", []), *gpu["tolerations"]]


def render_deployment(
    repo: RepoRef, folder: Folder, settings: FolderSettings, policy: PodPolicy = POLICY,
) -> dict[str, Any]:
    """The Deployment serving `folder` at `folder.commit`.

    Three containers, so that repository code never runs where a credential is readable:
    `fetch` (git only; the one container with the Secret, and its own scratch space) leaves
    just the folder's files, no .git; `check` imports the folder and runs its docstring tests;
    `runtime` serves it. Neither of the last two mounts the Secret.
    """
    pod = _Pod(
        repo=repo, folder=folder, policy=policy, image=settings.image or repo.image,
        pull=repo.runtime.get("imagePullPolicy") or "IfNotPresent",
        env=_env(folder, settings, repo), resources=_resources(settings, repo, policy),
    )
    replicas = settings.replicas if settings.replicas is not None else repo.runtime.get("replicas", 1)
    selector = selector_labels(repo, folder.name, folder.named_branch)
    labels = {**selector, LABEL_COMMIT: folder.commit}
    annotations = {
        ANN_NAME: folder.name, ANN_COMMIT: folder.commit, ANN_TREE: folder.tree,
        ANN_VERSION: str(folder.version), ANN_CONFIG: repo.config_hash(policy),
        **({ANN_DATASETS: folder.datasets_commit} if folder.datasets_commit else {}),
        **({ANN_COMMON: folder.common_commit} if folder.common_commit else {}),
    }
    if folder.named_branch:
        annotations[ANN_BRANCH] = folder.branch
    pod_spec = _pod_spec(pod)
    if settings.gpu:
        _add_gpu(pod_spec, settings.gpu)
    if settings.pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in settings.pull_secrets]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": folder_child(repo.name, folder),
            "namespace": repo.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(repo)],
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": {ANN_COMMIT: folder.commit}},
                "spec": pod_spec,
            },
        },
    }


def render_service(repo: RepoRef, folder_name: str, branch: str = "") -> dict[str, Any]:
    """The Service in front of one deployment's pods (`branch`: a branch after the first)."""
    annotations = {ANN_NAME: folder_name, ANN_CONFIG: repo.config_hash()}
    if branch:
        annotations[ANN_BRANCH] = branch
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": child_name(repo.name, folder_name, branch),
            "namespace": repo.namespace,
            "labels": selector_labels(repo, folder_name, branch),
            "annotations": annotations,
            "ownerReferences": [owner_reference(repo)],
        },
        "spec": {
            "type": repo.service.get("type") or "ClusterIP",
            "selector": selector_labels(repo, folder_name, branch),
            "ports": [{
                "name": "http", "port": int(repo.service.get("port") or 80),
                "targetPort": "http", "protocol": "TCP",
            }],
        },
    }
