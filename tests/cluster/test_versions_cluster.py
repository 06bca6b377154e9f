"""Every old version callable in the cluster, through the gateway (docs/operator.md, "Old versions").

v1, v2 and v3 of a folder are pushed to a private repository (https with basic auth); the
ModelRepo's own pod serves v3, the branch's versions pod (`<repo>-versions`) any other version
on demand. Through the gateway Service a user gets v1's answer with v1's headers by number, by
SHA prefix and by the branch URL, a 404 naming the versions for one that does not exist, and an
old version of a deployment that looks for credentials (the snooping source of
test_pod_secrets.py) finds none: the Secret's values appear in no log or spec of the versions
pod's runtime container and in nothing the old version's code could read there.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from typing import Any

import pytest
from cluster.test_pod_secrets import MARK, SNOOP, assert_nothing_leaks
from fixtures import git_servers as servers_module
from fixtures.cluster import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.usefixtures("pods_run")]
READY = 420  # deadline (s) for pods to start: image load + Python import on a 2-core machine

MODEL = '''
def Linear_Model(x: int):
    """
    >>> Linear_Model(1)
    FACTOR
    """
    return FACTOR * x
'''


def call(kube, service: str, path: str, data: Any) -> tuple[int, Any, dict[str, str]]:
    """POST through the API server's service proxy; (status, JSON body, lower-case headers)."""
    api = kube.cluster.api
    request = api.param_serialize(
        "POST", f"/api/v1/namespaces/{kube.ns}/services/{service}:80/proxy{path}",
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body={"data": data}, auth_settings=["BearerToken"],
    )
    response = api.call_api(*request, _request_timeout=120)
    body = response.read()
    try:
        document = json.loads(body)
    except (TypeError, ValueError):
        document = body
    return response.status, document, {k.lower(): v for k, v in dict(response.headers).items()}


def push_history(repo) -> tuple[list[str], list[str]]:
    """Linear_Model v1..v3 (x1, x2, x3) and Snoop v1..v2; the shas of each."""
    linear, snoop = [], []
    repo.write_deployment("Snoop")
    repo.write("deployments/Snoop/source.py", SNOOP)
    for factor in (1, 2, 3):
        repo.write_deployment("Linear_Model")
        repo.write("deployments/Linear_Model/source.py", MODEL.replace("FACTOR", str(factor)))
        if factor == 2:
            repo.write("deployments/Snoop/source.py", SNOOP + "\n# v2\n")
        sha = repo.commit_push(f"v{factor}")
        linear.append(sha)
        snoop += [sha] if factor in (1, 2) else []
    return linear, snoop


def versions_pod_texts(kube, repo_name: str) -> dict[str, str]:
    """The versions pods' specs (the runtime container's part) and every container's log."""
    pods = json.loads(kube.kubectl("get", "pods", "-l", f"modelrepo.dev/versions={repo_name}-versions",
                                   "-o", "json"))["items"]
    assert pods, "no versions pod"
    texts = {}
    for pod in pods:
        name = pod["metadata"]["name"]
        runtime = next(c for c in pod["spec"]["containers"] if c["name"] == "runtime")
        texts[f"{name} runtime spec"] = json.dumps(runtime)
        for c in pod["spec"]["containers"]:
            texts[f"{name} log {c['name']}"] = kube.kubectl("logs", name, "-c", c["name"], check=False)
    return texts


def test_old_versions_answer_through_the_gateway_and_never_see_the_secret(
    kube, operator, node_git_servers, node_model_repo, monkeypatch,
):
    user, password = f"u{secrets.token_hex(6)}", secrets.token_hex(16)
    monkeypatch.setattr(servers_module, "HTTP_USER", user)
    monkeypatch.setattr(servers_module, "HTTP_PASSWORD", password)
    repo = node_model_repo("versions")
    linear, snoop = push_history(repo)
    kube.create_secret("versions-git", node_git_servers.basic_auth_secret())
    kube.apply_modelrepo("versions", {"url": node_git_servers.http_url(repo.name), "branch": "main",
                                      "interval": "5s", "secretRef": {"name": "versions-git"}})
    kube.wait_ready("versions", linear[-1], 2, timeout=READY)
    wait_until(lambda: kube.kubectl("get", "deployment", "versions-versions", "-o",
                                    "jsonpath={.status.readyReplicas}", check=False) == "1",
               READY, "the versions pod ready", interval=2)

    def answer(ref: str, x: Any = 10) -> tuple[int, Any, dict[str, str]]:
        return call(kube, "versions-gateway", f"/v1/Linear_Model/{ref}", x)

    status, body, headers = wait_until(lambda: (r := answer("1"))[0] == 200 and r, 120, "v1 through the gateway", interval=2)
    assert body == {"data": 10}
    assert (headers["x-modelrepo-version"], headers["x-modelrepo-commit"]) == ("1", linear[0])
    for ref, number in ((linear[0][:7], 1), (linear[1][:10], 2), ("main/1", 1), ("2", 2), ("3", 3), ("latest", 3)):
        status, body, headers = answer(ref)
        assert (status, body, headers["x-modelrepo-version"]) == (200, {"data": 10 * number}, str(number)), ref
        assert headers["x-modelrepo-commit"] == linear[number - 1]
    status, body, _ = answer("9")
    assert status == 404
    assert body == {"error": "Linear_Model has no version 9 on branch main (versions are 1 to 3, or a commit SHA prefix)"}

    # An old version of the snooping deployment runs in the versions pod's runtime container.
    status, body, headers = wait_until(lambda: (r := call(kube, "versions-gateway", "/v1/Snoop/1", 1))[0] == 200 and r,
                                       120, "Snoop v1 through the gateway", interval=2)
    assert headers["x-modelrepo-commit"] == snoop[0]
    seen = body["data"]
    assert f"{MARK} request" in seen and "dir /versions" in seen  # it ran there, and looked
    assert "env MODELREPO_BRANCH=main" in seen
    listed = [line for line in seen.splitlines() if line.startswith("dir /versions")]
    assert listed and not [line for line in listed if "'.git'" in line]  # folders only, no repository
    assert not re.search(r"^dir /etc/modelrepo", seen, re.M)  # no Secret mount to list

    texts = versions_pod_texts(kube, "versions")
    texts["what Snoop v1 saw"] = seen
    header = base64.b64encode(f"{user}:{password}".encode()).decode()
    fetcher_logs = [t for w, t in texts.items() if w.endswith("log fetcher")]
    assert fetcher_logs and all("fetched deployments/Snoop at" in t for t in fetcher_logs)
    assert_nothing_leaks(texts, {"username": user, "password": password, "basic auth header": header})
