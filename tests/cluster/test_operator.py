"""The operator on the real local cluster, with real git servers on the node address (issue 5).

Every test runs `modelrepo operator` as a subprocess watching its own namespace. Pods fetch
their folder from the git servers started by the test session on the node address.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from fixtures.cluster import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.usefixtures("pods_run")]
READY = 420  # deadline (s) for pods to start: image load + Python import on a 2-core machine


def three_models(repo):
    repo.write_deployment("Double", body="return x * 2", doc="8")
    repo.write_deployment("Triple", body="return x * 3", doc="12")
    repo.write_deployment("Square", body="return x * x", doc="16")
    return repo.commit_push("three models")


def spec_for(servers, repo, **extra):
    return {"url": servers.daemon_url(repo.name), "branch": "main", "interval": "5s", **extra}


def test_apply_push_revert_prune(kube, operator, node_git_servers, node_model_repo):
    repo = node_model_repo("models")
    first = three_models(repo)
    kube.apply_modelrepo("models", spec_for(node_git_servers, repo))
    status = kube.wait_ready("models", first, 3, timeout=READY)
    names = {d["name"]: d for d in status["deployments"]}
    assert set(names) == {"Double", "Triple", "Square"}
    assert all(d["version"] == 1 and d["commit"] == first and d["ready"] for d in names.values())
    kube.wait_predict("models-double", "Double", 21, 42)
    kube.wait_predict("models-triple", "Triple", 2, 6)
    kube.wait_predict("models-square", "Square", 5, 25)
    table = kube.kubectl("get", "mr", "models")
    assert table.split("\n")[0].split() == ["NAME", "URL", "BRANCH", "COMMIT", "READY", "AGE"]
    row = table.split("\n")[1].split()
    assert row[1] == repo_url(node_git_servers, repo) and row[2] == "main" and row[3] == first[:7] and row[4] == "3/3"

    # a push changing one model: only it rolls, the others keep their pods
    uids = {c: kube.pod_uids(c) for c in ("models-triple", "models-square")}
    rs_before = {c: kube.replicasets(c) for c in ("models-double", "models-triple", "models-square")}
    client = LoopingClient(kube, "models-double", "Double", 21).start()
    repo.write_deployment("Double", body="return x * 2 + 1", doc="9")
    second = repo.commit_push("Double v2")
    kube.wait_ready("models", second, 3, timeout=READY)
    kube.wait_predict("models-double", "Double", 21, 43, READY)
    client.stop()
    assert client.failures == [], client.failures[:5]
    assert client.answers <= {42, 43} and 43 in client.answers
    for c in ("models-triple", "models-square"):
        assert kube.pod_uids(c) == uids[c]
        assert kube.replicasets(c) == rs_before[c]
    assert len(kube.replicasets("models-double") - rs_before["models-double"]) == 1
    status = kube.status("models")
    by = {d["name"]: d for d in status["deployments"]}
    assert by["Double"]["version"] == 2 and by["Double"]["commit"] == second
    assert by["Triple"]["version"] == 1 and by["Triple"]["commit"] == first
    assert any("Double: version 2" in m for m in kube.events("RollingOut"))

    # revert: the previous output again, as a new version
    third = repo.revert_push(second)
    kube.wait_ready("models", third, 3, timeout=READY)
    kube.wait_predict("models-double", "Double", 21, 42, READY)
    assert {d["name"]: d for d in kube.status("models")["deployments"]}["Double"]["version"] == 3

    # a folder deleted: its Deployment and Service are pruned
    repo.remove("deployments/Square")
    fourth = repo.commit_push("drop Square")
    kube.wait_ready("models", fourth, 2, timeout=READY)
    wait_until(lambda: "models-square" not in kube.deployments("models"), 60, "Square pruned")
    assert "models-square" not in kube.services("models")
    assert kube.pod_uids("models-triple") == uids["models-triple"]


def repo_url(servers, repo):
    return servers.daemon_url(repo.name)


class LoopingClient:
    """Calls one model in a loop through its Service and records every failed request."""

    def __init__(self, kube, service, deployment, x):
        self.kube, self.service, self.deployment, self.x = kube, service, deployment, x
        self.failures: list[object] = []
        self.answers: set[object] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            code, value = self.kube.predict(self.service, self.deployment, self.x)
            if code == 200:
                self.answers.add(value)
            else:
                self.failures.append(value)
            time.sleep(0.2)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=90)


@pytest.mark.parametrize(
    "breakage, expect",
    [
        ({"body": "return x *", "doc": "8"}, "not valid Python"),
        ({"body": "return x * 2", "doc": "9"}, "docstring test"),
        ({"python": "3.7"}, "pythonVersion"),
    ],
    ids=["syntax-error", "failing-doctest", "python-mismatch"],
)
def test_bad_commit_keeps_old_pods_serving_and_says_why(kube, operator, node_git_servers, node_model_repo, breakage, expect):
    repo = node_model_repo("bad")
    repo.write_deployment("Double")
    repo.write_deployment("Triple", body="return x * 3", doc="12")
    good = repo.commit_push("good")
    kube.apply_modelrepo("bad", spec_for(node_git_servers, repo))
    kube.wait_ready("bad", good, 2, timeout=READY)
    uids = kube.pod_uids("bad-double")

    kwargs = {"body": "return x * 2", "doc": "8", **breakage}
    repo.write_deployment("Double", **kwargs)
    repo.commit_push("broken Double")

    def degraded():
        c = kube.condition("bad", "Degraded")
        return c if c.get("status") == "True" else None

    cond = wait_until(degraded, READY, "Degraded=True")
    assert "Double" in cond["message"] and expect in cond["message"], cond
    assert "Triple" not in cond["message"]
    assert kube.predict("bad-double", "Double", 21) == (200, 42)  # the old version still serves
    assert uids <= kube.pod_uids("bad-double")  # no old pod was replaced

    repo.write_deployment("Double", body="return x * 2 + 1", doc="9")
    fixed = repo.commit_push("fix Double")
    kube.wait_ready("bad", fixed, 2, timeout=READY)
    assert kube.condition("bad", "Degraded")["status"] == "False"
    kube.wait_predict("bad-double", "Double", 21, 43)


def test_wrong_credentials_and_unreachable_repo_touch_nothing(kube, operator, node_git_servers, node_model_repo):
    repo = node_model_repo("private")
    repo.write_deployment("Double")
    first = repo.commit_push("one")
    kube.create_secret("git", node_git_servers.basic_auth_secret())
    spec = {"url": node_git_servers.http_url(repo.name), "branch": "main", "interval": "5s", "secretRef": {"name": "git"}}
    kube.apply_modelrepo("private", spec)  # private repository over https with basic auth
    kube.wait_ready("private", first, 1, timeout=READY)
    uids = kube.pod_uids("private-double")

    kube.create_secret("git", {"username": b"modelrepo", "password": b"wrong-password"})
    repo.remove("deployments/Double")
    repo.write_deployment("Other")
    repo.commit_push("would prune Double")

    def source_failed():
        c = kube.condition("private", "SourceReady")
        return c if c.get("status") == "False" else None

    cond = wait_until(source_failed, 120, "SourceReady=False")
    assert "Authentication failed" in cond["message"]
    assert "wrong-password" not in json.dumps(kube.modelrepo("private"))
    assert all("wrong-password" not in m for m in kube.events("FetchFailed"))
    assert "private-double" in kube.deployments("private")
    assert kube.pod_uids("private-double") == uids
    assert kube.predict("private-double", "Double", 1) == (200, 2)

    kube.create_secret("git", node_git_servers.basic_auth_secret())
    head = repo.head()
    kube.wait_ready("private", head, 1, timeout=READY)
    wait_until(lambda: "private-double" not in kube.deployments("private"), 60, "Double pruned after recovery")

    kube.apply_modelrepo("private", {**spec, "url": f"http://{node_git_servers.bind}:1/none.git"})
    cond = wait_until(source_failed, 120, "SourceReady=False for an unreachable server")
    assert "private-other" in kube.deployments("private")


def test_private_repository_over_ssh(kube, operator, node_git_servers, node_model_repo):
    repo = node_model_repo("ssh")
    repo.write_deployment("Double")
    first = repo.commit_push("one")
    kube.create_secret("git-ssh", node_git_servers.ssh_secret())
    kube.apply_modelrepo("ssh", {
        "url": node_git_servers.ssh_url(repo.name), "branch": "main", "interval": "5s", "secretRef": {"name": "git-ssh"},
    })

    def ready_or_no_ssh_client():
        st = kube.status("ssh")
        degraded = next((c for c in st.get("conditions", []) if c["type"] == "Degraded"), {})
        if any(m in degraded.get("message", "") for m in ("cannot run ssh", "ssh: not found")):
            return "no-ssh"
        return "ready" if st.get("commit") == first and st.get("ready") == "1/1" else None

    if wait_until(ready_or_no_ssh_client, READY, "ssh ModelRepo ready") == "no-ssh":
        why = "the modelrepo:dev image has no ssh client: add openssh-client to the image"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(why)
        pytest.skip(why)
    kube.wait_predict("ssh-double", "Double", 5, 10)


def test_two_branches_side_by_side_and_delete_collects_children(kube, operator, node_git_servers, node_model_repo):
    repo = node_model_repo("envs")
    repo.write_deployment("Double")
    prod = repo.commit_push("prod", branch="prod")
    repo.write_deployment("Double", body="return x * 2 + 100", doc="108")
    staging = repo.commit_push("staging", branch="staging")
    kube.apply_modelrepo("prod", {**spec_for(node_git_servers, repo), "branch": "prod"})
    kube.apply_modelrepo("staging", {**spec_for(node_git_servers, repo), "branch": "staging"})
    kube.wait_ready("prod", prod, 1, timeout=READY)
    kube.wait_ready("staging", staging, 1, timeout=READY)
    kube.wait_predict("prod-double", "Double", 1, 2)
    kube.wait_predict("staging-double", "Double", 1, 102)

    kube.kubectl("delete", "modelrepo", "staging", "--wait=true")
    wait_until(lambda: not kube.deployments("staging") and not kube.services("staging"), 120, "staging children collected")
    kube.wait_predict("prod-double", "Double", 1, 2)
