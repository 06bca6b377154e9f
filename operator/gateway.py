"""The workspace gateway of a ModelRepo (docs/operator.md, "Workspace gateway").

One Deployment + Service `<repo>-gateway` per ModelRepo runs `modelrepo gateway`, routing
`/v1/<name>[/<branch>]/<ref>` to the per-deployment Services (which stay). Its routing table
is the ConfigMap `<repo>-gateway` (key `gateway.json`), written on every sync from the
deployed folders of every followed branch and each branch's `endpoints/` folder at its head. The gateway rereads the
mounted file every second, and the operator annotates the gateway's pods with the table's
hash so the kubelet refreshes the mount at once: a push that changes an endpoint or an alias
reroutes within seconds and restarts no pod (not the gateway's, not a model's).

The gateway objects carry their own labels (not the per-folder children's selector), so the
folder plan never sees them as children to prune.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelrepo.operator.keys import GROUP, MANAGED_BY
from modelrepo.operator.naming import gateway_child_name, label_value
from modelrepo.operator.policy import POLICY, PodPolicy
from modelrepo.operator.render import (
    Folder,
    RepoRef,
    container_security,
    owner_reference,
    pod_security,
    service_base,
)

GATEWAY_PORT = 8080
CONFIG_KEY = "gateway.json"
CONFIG_DIR = "/etc/modelrepo/gateway"
KEYS_DIR = "/etc/modelrepo/api-keys"
KEYS_KEY = "keys"  # the key of spec.apiKeysSecretRef's Secret holding the keys file
LABEL_GATEWAY = f"{GROUP}/gateway"
ANN_TABLE = f"{GROUP}/table"


def gateway_name(repo: RepoRef) -> str:
    return gateway_child_name(repo.name)


def gateway_labels(repo: RepoRef) -> dict[str, str]:
    """Selector labels: not the children's (no modelrepo.dev/repo), so the folder plan ignores them."""
    return {"app.kubernetes.io/name": "modelrepo-gateway", **MANAGED_BY, LABEL_GATEWAY: label_value(repo.name)}


@dataclass(frozen=True)
class BranchRoutes:
    """What the gateway routes on one branch: its running folders, its `endpoints/` definitions
    (Endpoints.to_json()) and, when there is one, the base URL of a runtime serving any version."""

    branch: str
    folders: Sequence[Folder]
    definitions: dict[str, Any]
    on_demand: str | None = None


def branch_table(repo: RepoRef, routes: BranchRoutes) -> dict[str, Any]:
    """One branch's part of the table: upstreams (its folders' Services), definitions, onDemand."""
    upstreams = [
        {"name": f.name, "branch": routes.branch, "version": f.version, "commit": f.commit, "latest": True,
         "url": service_base(repo, f.name, f.named_branch)}
        for f in sorted(routes.folders, key=lambda f: f.name)
    ]
    part: dict[str, Any] = {"upstreams": upstreams, "definitions": routes.definitions}
    if routes.on_demand:
        part["onDemand"] = routes.on_demand
    return part


def routing_table(repo: RepoRef, branches: Sequence[BranchRoutes]) -> dict[str, Any]:
    """What `modelrepo gateway --config` reads: every branch (the first is the default of
    `/v1/<name>/<ref>`), with its upstreams, endpoints/aliases and on-demand runtime."""
    table: dict[str, Any] = {"branches": [], "upstreams": [], "definitions": {}}
    for routes in branches:
        part = branch_table(repo, routes)
        table["branches"].append(routes.branch)
        table["upstreams"] += part["upstreams"]
        table["definitions"][routes.branch] = part["definitions"]
        if "onDemand" in part:
            table.setdefault("onDemand", {})[routes.branch] = part["onDemand"]
    return table


def table_hash(table: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()[:16]


def _meta(repo: RepoRef, **extra: Any) -> dict[str, Any]:
    return {"name": gateway_name(repo), "namespace": repo.namespace, "labels": gateway_labels(repo),
            "ownerReferences": [owner_reference(repo)], **extra}


def render_config_map(repo: RepoRef, table: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(repo),
            "data": {CONFIG_KEY: json.dumps(table, indent=1, sort_keys=True)}}


def render_deployment(repo: RepoRef, keys_secret: str | None, policy: PodPolicy = POLICY) -> dict[str, Any]:
    """The gateway's pods: no Secret but the API keys (if any), no repository code, no git."""
    args = ["gateway", "--config", f"{CONFIG_DIR}/{CONFIG_KEY}", "--port", str(GATEWAY_PORT)]
    mounts = [{"name": "table", "mountPath": CONFIG_DIR, "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [
        {"name": "table", "configMap": {"name": gateway_name(repo)}},
        {"name": "tmp", "emptyDir": {"sizeLimit": policy.tmp_size_limit}},
    ]
    if keys_secret:
        args += ["--api-keys", f"{KEYS_DIR}/{KEYS_KEY}"]
        mounts.append({"name": "api-keys", "mountPath": KEYS_DIR, "readOnly": True})
        volumes.append({"name": "api-keys", "secret": {"secretName": keys_secret, "defaultMode": 0o440}})
    container = {
        "name": "gateway", "image": repo.image, "imagePullPolicy": repo.runtime.get("imagePullPolicy") or "IfNotPresent",
        "args": args, "env": [{"name": "HOME", "value": "/tmp"}],
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 10, "failureThreshold": 6},
        "resources": copy.deepcopy(dict(policy.resources)),
        "volumeMounts": mounts,
        "securityContext": container_security(),
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(repo),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": gateway_labels(repo)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": gateway_labels(repo)},
                "spec": {
                    "automountServiceAccountToken": False, "enableServiceLinks": False,
                    "securityContext": pod_security(),
                    "containers": [container], "volumes": volumes,
                },
            },
        },
    }


def render_service(repo: RepoRef) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(repo),
        "spec": {"type": repo.service.get("type") or "ClusterIP", "selector": gateway_labels(repo),
                 "ports": [{"name": "http", "port": int(repo.service.get("port") or 80),
                            "targetPort": "http", "protocol": "TCP"}]},
    }


def gateway_url(repo: RepoRef) -> str:
    port = int(repo.service.get("port") or 80)
    return f"http://{gateway_name(repo)}.{repo.namespace}.svc{'' if port == 80 else f':{port}'}"
