"""The versions pod of a ModelRepo branch: every old version callable in the cluster (docs/operator.md).

One Deployment + Service `<repo>-versions` per followed branch serves any version of any
deployment of that branch on demand; the gateway's routing table names it under `onDemand`, so
a version no deployment pod runs goes there. Two containers, so that repository code never runs
where a credential is readable:

- `fetcher` (`modelrepo fetcher`): git only, the one container with the git Secret (and its own
  scratch /tmp); on request from 127.0.0.1 it lists the branch's versions and fetches one folder
  at one version into the shared `versions` volume, without .git.
- `runtime` (`modelrepo runtime --fetcher`): no Secret, the volume read-only; loads each asked
  version in a worker process of its own into a bounded cache, with the version's headers.

Pure: data in, manifests out. The objects carry their own labels (not the per-folder children's
selector), so the folder plan never prunes them; they are garbage-collected with the ModelRepo.
"""

from __future__ import annotations

import copy
from typing import Any

from modelrepo.git import strip_credentials
from modelrepo.operator.keys import GROUP, MANAGED_BY
from modelrepo.operator.naming import label_value, versions_child_name
from modelrepo.operator.policy import POLICY, PodPolicy
from modelrepo.operator.render import (
    CREDENTIALS_DIR,
    RUNTIME_PORT,
    RepoRef,
    container_security,
    owner_reference,
    pod_security,
    pod_volumes,
)

FETCHER_PORT = 8081  # on the pod's loopback address only
VERSIONS_DIR = "/versions"
MAX_CACHED = 4  # versions loaded at once per pod; the least recently called one goes first
LABEL_VERSIONS = f"{GROUP}/versions"


def versions_name(repo: RepoRef, branch: str) -> str:
    """`<repo>-versions` for the ModelRepo's first branch (see RepoRef.first_branch), `<repo>-<branch>-versions`
    for others."""
    return versions_child_name(repo.name, None if branch == repo.first_branch else branch)


def versions_labels(repo: RepoRef, branch: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "modelrepo-versions", **MANAGED_BY,
            LABEL_VERSIONS: label_value(versions_name(repo, branch))}


def versions_url(repo: RepoRef, branch: str) -> str:
    """The base URL the gateway's table gives as the branch's `onDemand` runtime."""
    port = int(repo.service.get("port") or 80)
    return f"http://{versions_name(repo, branch)}.{repo.namespace}.svc{'' if port == 80 else f':{port}'}"


def _fetcher(repo: RepoRef, branch: str, image: str, pull: str, policy: PodPolicy) -> dict[str, Any]:
    """git only, the Secret read-only, its own /tmp (askpass, ssh key files, the blobless cache)."""
    args = ["fetcher", "--url", strip_credentials(repo.url), "--ref", branch, "--dest", VERSIONS_DIR,
            "--cache-dir", "/tmp/cache", "--port", str(FETCHER_PORT)]
    mounts = [{"name": "versions", "mountPath": VERSIONS_DIR}, {"name": "git-tmp", "mountPath": "/tmp"}]
    if repo.secret_name:
        args += ["--credentials", CREDENTIALS_DIR]
        mounts.append({"name": "git-credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True})
    return {
        "name": "fetcher", "image": image, "imagePullPolicy": pull, "args": args,
        "env": [{"name": "HOME", "value": "/tmp"}],
        "livenessProbe": {"exec": {"command": ["python", "-c", _PROBE]}, "periodSeconds": 20,
                          "timeoutSeconds": 10, "failureThreshold": 6},
        "resources": copy.deepcopy(dict(policy.init_resources)), "volumeMounts": mounts,
        "securityContext": container_security(), "terminationMessagePolicy": "FallbackToLogsOnError",
    }


# An httpGet probe would come from the node to the pod's IP, where the fetcher does not listen.
_PROBE = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{FETCHER_PORT}/livez', timeout=5)"


def _runtime(repo: RepoRef, branch: str, image: str, pull: str, policy: PodPolicy) -> dict[str, Any]:
    """No Secret; the fetched folders read-only; repository code runs here, one process per version."""
    resources = repo.runtime.get("resources") or copy.deepcopy(dict(policy.resources))
    if "requests" not in resources and "limits" not in resources:
        resources = {"requests": dict(resources)}
    return {
        "name": "runtime", "image": image, "imagePullPolicy": pull,
        "args": ["runtime", "--fetcher", f"http://127.0.0.1:{FETCHER_PORT}", "--versions-dir", VERSIONS_DIR,
                 "--branch", branch, "--max-cached", str(MAX_CACHED), "--port", str(RUNTIME_PORT)],
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "BENTOML_HOME", "value": "/tmp/bentoml"},
                {"name": "MODELREPO_BRANCH", "value": branch}],
        "ports": [{"name": "http", "containerPort": RUNTIME_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/livez", "port": "http"}, "initialDelaySeconds": 30,
                          "periodSeconds": 10, "failureThreshold": 6},
        "resources": resources,
        "volumeMounts": [{"name": "versions", "mountPath": VERSIONS_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": container_security(), "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _meta(repo: RepoRef, branch: str) -> dict[str, Any]:
    return {"name": versions_name(repo, branch), "namespace": repo.namespace, "labels": versions_labels(repo, branch),
            "annotations": {f"{GROUP}/branch": branch}, "ownerReferences": [owner_reference(repo)]}


def render_deployment(repo: RepoRef, branch: str, policy: PodPolicy = POLICY) -> dict[str, Any]:
    image, pull = repo.image, repo.runtime.get("imagePullPolicy") or "IfNotPresent"
    volumes = pod_volumes(repo, policy, files="versions")
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False, "enableServiceLinks": False, "shareProcessNamespace": False,
        "securityContext": pod_security(),
        "containers": [_fetcher(repo, branch, image, pull, policy), _runtime(repo, branch, image, pull, policy)],
        "volumes": volumes,
    }
    for key in ("nodeSelector", "tolerations"):
        if repo.runtime.get(key):
            spec[key] = repo.runtime[key]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(repo, branch),
        "spec": {
            "replicas": 1, "revisionHistoryLimit": 3,
            "selector": {"matchLabels": versions_labels(repo, branch)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": versions_labels(repo, branch)}, "spec": spec},
        },
    }


def render_service(repo: RepoRef, branch: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(repo, branch),
        "spec": {"type": "ClusterIP", "selector": versions_labels(repo, branch),
                 "ports": [{"name": "http", "port": int(repo.service.get("port") or 80),
                            "targetPort": "http", "protocol": "TCP"}]},
    }


def versions_objects(repo: RepoRef, branch: str, policy: PodPolicy = POLICY) -> list[dict[str, Any]]:
    """What the operator applies for one followed branch: the versions Deployment and Service."""
    return [render_deployment(repo, branch, policy), render_service(repo, branch)]
