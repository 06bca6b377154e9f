"""What a user sees through the workspace gateway `<repo>-gateway` of a ModelRepo following two
branches, on the real local cluster with the real operator: branch URLs, a 90/10 split measured by
the version header, a mirror receiving copies the caller never sees, an alias moved by a push, API
keys, endpoint status, and a push changing only endpoints/ restarting no model pod.

The gateway's Service is called by its ClusterIP from this machine (the node), as
test_local_cluster.py calls Services.
"""

from __future__ import annotations

import http.client
import json
import subprocess

import pytest
from fixtures.cluster import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.usefixtures("pods_run")]
READY = 420  # three model pods and the gateway on a 2-core machine
KEY = "mk_test_4f9a0c7d21"
COUNTER = '''_seen = []


def Counter(x: int):
    """How many nonzero calls it has had (0 only reads the count).

    >>> Counter(0)
    0
    """
    if x:
        _seen.append(x)
    return len(_seen)
'''
SPLIT = """backends:
  main_latest: {deployment: {name: Scale, version: latest}, weight: 9}
  staging_latest: {deployment: {name: Scale, branch: staging, version: latest}, weight: 1}
mirrors:
  shadow: {deployment: {name: Counter, version: latest}}
schemaVersion: 1
"""


class Gateway:
    """HTTP to the gateway's ClusterIP over one keep-alive connection."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.conn = http.client.HTTPConnection(host, 80, timeout=30)

    def call(self, path: str, x: object, key: str | None = KEY) -> tuple[int, dict[str, str], object]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = key
        try:
            self.conn.request("POST", path, body=json.dumps({"data": x}), headers=headers)
            resp = self.conn.getresponse()
            body = json.loads(resp.read() or b"null")
        except (OSError, http.client.HTTPException, ValueError):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, 80, timeout=30)
            raise
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body

    def answers(self, path: str, x: object, data: object, version: str) -> bool:
        status, headers, body = self.call(path, x)
        return status == 200 and body == {"data": data} and headers.get("x-modelrepo-version") == version


def git(repo, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo.path, check=True, capture_output=True, text=True).stdout


def model_pod_uids(kube, repo: str) -> dict[str, str]:
    out = json.loads(kube.kubectl("get", "pods", "-l", f"modelrepo.dev/repo={repo}", "-o", "json"))
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in out["items"] if not p["metadata"].get("deletionTimestamp")}


def write_repository(repo) -> tuple[str, str]:
    """main: Scale (2x, version 1), Counter, the split endpoint, an alias, a broken endpoint;
    staging: Scale (3x, its version 2), no Counter."""
    repo.write_deployment("Scale", body="return x * 2", doc="8")
    repo.write_deployment("Counter")
    repo.write("deployments/Counter/source.py", COUNTER)
    repo.write("endpoints/split.yaml", SPLIT)
    repo.write("endpoints/aliases.yaml", "aliases:\n  Scale: {official: 1}\nschemaVersion: 1\n")
    repo.write("endpoints/broken.yaml", "backends: {}\nschemaVersion: 1\n")
    main = repo.commit_push("Scale, Counter and endpoints")
    git(repo, "checkout", "-q", "-b", "staging")
    repo.write_deployment("Scale", body="return x * 3", doc="12")
    repo.remove("deployments/Counter")
    staging = repo.commit_push("Scale triples on staging", branch="staging")
    git(repo, "checkout", "-q", "main")
    return main, staging


def test_one_url_for_both_branches_split_mirror_alias_and_keys(kube, operator, node_git_servers, node_model_repo):
    repo = node_model_repo("gw")
    main, staging = write_repository(repo)
    kube.create_secret("gw-keys", {"keys": f"{KEY}\n".encode()})
    kube.apply_modelrepo("gw", {
        "url": node_git_servers.daemon_url(repo.name), "branches": ["main", "staging"], "interval": "5s",
        "apiKeysSecretRef": {"name": "gw-keys"},
    })

    def serving() -> dict | None:
        status = kube.status("gw")
        ready = [d for d in status.get("deployments", []) if d.get("ready")]
        return status if status.get("commit") == main and len(ready) == 3 else None

    try:
        status = wait_until(serving, READY, "Scale and Counter on main, Scale on staging ready")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status: {kube.status('gw')}") from None
    assert status["branches"] == [{"name": "main", "commit": main}, {"name": "staging", "commit": staging}]
    assert {(d["branch"], d["name"]): d["version"] for d in status["deployments"]} == {
        ("main", "Counter"): 1, ("main", "Scale"): 1, ("staging", "Scale"): 2}
    assert sorted(kube.deployments("gw")) == ["gw-counter", "gw-scale", "gw-staging-scale"]

    ip = kube.kubectl("get", "svc", "gw-gateway", "-o", "jsonpath={.spec.clusterIP}").strip()
    gw = Gateway(ip)
    # Branch URLs: the first branch is the default.
    wait_until(lambda: gw.answers("/v1/Scale/latest", 5, 10, "1"), 180, "the gateway answering main's Scale")
    assert gw.answers("/v1/Scale/staging/latest", 5, 15, "2")
    assert gw.answers("/v1/Scale/main/1", 5, 10, "1")
    # API keys: 401 without one (or with a wrong one), 200 with it, plain or Bearer.
    assert gw.call("/v1/Scale/latest", 5, key=None)[0] == 401
    assert gw.call("/v1/Scale/latest", 5, key="mk_wrong")[0] == 401
    assert gw.call("/v1/Scale/latest", 5, key=f"Bearer {KEY}")[0] == 200
    # The alias.
    assert gw.answers("/v1/Scale/official", 5, 10, "1")

    # The split, measured by the version header; the mirror receives copies the caller never sees.
    before = gw.call("/v1/Counter/latest", 0)[2]["data"]
    versions: dict[str, int] = {}
    for _ in range(1000):
        status_code, headers, body = gw.call("/v1/split/latest", 5)
        assert status_code == 200 and body in ({"data": 10}, {"data": 15}), (status_code, body)
        expected = {"main_latest": ("1", {"data": 10}), "staging_latest": ("2", {"data": 15})}[headers["x-modelrepo-backend"]]
        assert (headers["x-modelrepo-version"], body) == expected
        versions[headers["x-modelrepo-version"]] = versions.get(headers["x-modelrepo-version"], 0) + 1
    # 10% of 1,000 is 100 with a standard deviation of 9.5: [60, 140] is beyond 4 of them.
    assert sum(versions.values()) == 1000 and 60 <= versions.get("2", 0) <= 140, versions
    copies = wait_until(lambda: (n := gw.call("/v1/Counter/latest", 0)[2]["data"] - before) >= 1000 and n,
                        60, "the mirror to have received 1,000 copies")
    assert copies == 1000

    # Status: every endpoint of every branch, resolved; the broken file named (status and Event).
    endpoints = {(e["branch"], e["name"]): e for e in kube.status("gw")["endpoints"]}
    split = endpoints[("main", "split")]
    assert split["valid"] and [(b["key"], b["branch"], b["resolvedVersion"], b["weight"]) for b in split["backends"]] == [
        ("main_latest", "main", 1, 9), ("staging_latest", "staging", 2, 1)]
    assert split["mirrors"] == [{"key": "shadow", "deployment": "Counter", "branch": "main", "version": "latest",
                                 "resolvedVersion": 1}]
    assert endpoints[("main", "broken")]["valid"] is False
    assert endpoints[("main", "broken")]["message"] == "backends: an endpoint needs at least one backend"
    assert any(m.startswith("endpoints/broken.yaml: backends: an endpoint needs") for m in kube.events("InvalidEndpoint"))

    # Scale's version 2 on main; then a push of only endpoints/ moves the alias to it and restarts nothing.
    repo.write_deployment("Scale", body="return x * 4", doc="16")
    second = repo.commit_push("Scale quadruples")
    wait_until(lambda: gw.answers("/v1/Scale/latest", 5, 20, "2"), READY, "main's Scale version 2 through the gateway")
    wait_until(lambda: kube.status("gw").get("ready") == "3/3" and model_pod_uids(kube, "gw"), 120, "the rollout done")
    pods = wait_until(lambda: (u := model_pod_uids(kube, "gw")) and len(u) == 3 and u, 120, "three model pods")
    repo.write("endpoints/aliases.yaml", "aliases:\n  Scale: {official: 2}\nschemaVersion: 1\n")
    third = repo.commit_push("official is version 2")
    wait_until(lambda: gw.answers("/v1/Scale/official", 5, 20, "2"), 60, "the alias moved to version 2")
    assert kube.status("gw")["commit"] == third and third != second
    assert model_pod_uids(kube, "gw") == pods
    # What a user sees (shown with `pytest -rP`; docs/operator.md quotes it).
    print(kube.kubectl("get", "mr", "gw"))
    print(kube.kubectl("get", "deploy,svc", "-L", "modelrepo.dev/branch"))
    print(kube.kubectl("get", "mr", "gw", "-o", "yaml"))
    print(versions, copies, gw.call("/v1/split/latest", 5))
