"""The operator's reconciliation on the real cluster with `replicas: 0` (no pods needed).

These pin what the operator writes — which Deployments change, what is pruned, what the
status and `kubectl get mr` say — independently of pods starting; test_operator.py checks the
same flows end to end with serving pods.
"""

from __future__ import annotations

import json

import pytest
from fixtures.cluster import wait_until

pytestmark = [pytest.mark.cluster]


def spec(servers, repo, **extra):
    return {"url": servers.daemon_url(repo.name), "branch": "main", "interval": "5s", "runtime": {"replicas": 0}, **extra}


def generations(kube, repo):
    return {n: d["metadata"]["generation"] for n, d in kube.deployments(repo).items()}


def test_only_changed_folders_are_applied_and_removed_ones_pruned(kube, operator, node_git_servers, node_model_repo):
    repo = node_model_repo("zero")
    for name in ("Double", "Triple", "Square"):
        repo.write_deployment(name)
    first = repo.commit_push("three")
    kube.apply_modelrepo("zero", spec(node_git_servers, repo))
    kube.wait_ready("zero", first, 3, timeout=120)
    table = kube.kubectl("get", "mr", "zero").splitlines()
    assert table[0].split() == ["NAME", "URL", "BRANCH", "COMMIT", "READY", "AGE"]
    assert table[1].split()[1:5] == [node_git_servers.daemon_url(repo.name), "main", first[:7], "3/3"]
    before = generations(kube, "zero")

    repo.write_deployment("Triple", body="return x * 3", doc="12")
    second = repo.commit_push("Triple changes")
    kube.wait_ready("zero", second, 3, timeout=120)
    after = generations(kube, "zero")
    assert after["zero-triple"] == before["zero-triple"] + 1
    assert {k: v for k, v in after.items() if k != "zero-triple"} == {k: v for k, v in before.items() if k != "zero-triple"}
    deps = kube.deployments("zero")
    assert deps["zero-triple"]["spec"]["template"]["metadata"]["annotations"]["modelrepo.dev/commit"] == second
    assert deps["zero-double"]["spec"]["template"]["metadata"]["annotations"]["modelrepo.dev/commit"] == first
    versions = {d["name"]: (d["version"], d["commit"]) for d in kube.status("zero")["deployments"]}
    assert versions == {"Double": (1, first), "Square": (1, first), "Triple": (2, second)}
    assert any(m.startswith("Triple: version 2") for m in kube.events("RollingOut"))

    repo.remove("deployments/Square")
    third = repo.commit_push("drop Square")
    kube.wait_ready("zero", third, 2, timeout=120)
    wait_until(lambda: "zero-square" not in kube.deployments("zero"), 60, "Square pruned")
    assert "zero-square" not in kube.services("zero")
    assert generations(kube, "zero")["zero-double"] == before["zero-double"]
    assert any(m.startswith("zero-square") for m in kube.events("Pruned"))


def test_bad_credentials_prune_nothing_and_recover(kube, operator, node_git_servers, node_model_repo):
    repo = node_model_repo("auth")
    repo.write_deployment("Double")
    first = repo.commit_push("one")
    kube.create_secret("git", node_git_servers.basic_auth_secret())
    kube.apply_modelrepo("auth", {**spec(node_git_servers, repo), "url": node_git_servers.http_url(repo.name), "secretRef": {"name": "git"}})
    kube.wait_ready("auth", first, 1, timeout=120)

    kube.create_secret("git", {"username": b"modelrepo", "password": b"wrong-password-42"})
    repo.remove("deployments/Double")
    repo.write_deployment("Other")
    head = repo.commit_push("Double gone")
    cond = wait_until(
        lambda: (c := kube.condition("auth", "SourceReady")).get("status") == "False" and c, 120, "SourceReady=False",
    )
    assert "Authentication failed" in cond["message"]
    assert kube.condition("auth", "Ready")["status"] == "False"
    assert "wrong-password-42" not in json.dumps(kube.modelrepo("auth"))
    assert not any("wrong-password-42" in m for m in kube.events("FetchFailed"))
    assert list(kube.deployments("auth")) == ["auth-double"]

    kube.create_secret("git", node_git_servers.basic_auth_secret())
    kube.wait_ready("auth", head, 1, timeout=120)
    assert list(kube.deployments("auth")) == ["auth-other"]
    assert kube.condition("auth", "SourceReady")["status"] == "True"


def test_two_branches_side_by_side_then_delete_collects_children(kube, operator, node_git_servers, node_model_repo):
    repo = node_model_repo("envs")
    repo.write_deployment("Double")
    prod = repo.commit_push("prod", branch="prod")
    repo.write_deployment("Triple")
    staging = repo.commit_push("staging", branch="staging")
    kube.apply_modelrepo("prod", {**spec(node_git_servers, repo), "branch": "prod"})
    kube.apply_modelrepo("staging", {**spec(node_git_servers, repo), "branch": "staging"})
    kube.wait_ready("prod", prod, 1, timeout=120)
    kube.wait_ready("staging", staging, 2, timeout=120)
    assert sorted(kube.deployments("prod")) == ["prod-double"]
    assert sorted(kube.deployments("staging")) == ["staging-double", "staging-triple"]

    kube.kubectl("delete", "modelrepo", "staging", "--wait=true", "--timeout=120s")
    wait_until(lambda: not kube.deployments("staging") and not kube.services("staging"), 120, "staging children collected")
    assert sorted(kube.deployments("prod")) == ["prod-double"]


def test_include_and_exclude_globs(kube, operator, node_git_servers, node_model_repo):
    repo = node_model_repo("sel")
    for name in ("churn_a", "churn_b", "other"):
        repo.write_deployment(name)
    head = repo.commit_push("three")
    kube.apply_modelrepo("sel", spec(node_git_servers, repo, include=["churn_*"], exclude=["*_b"]))
    kube.wait_ready("sel", head, 1, timeout=120)
    assert list(kube.deployments("sel")) == ["sel-churn-a"]

    kube.apply_modelrepo("sel", spec(node_git_servers, repo, include=["*"], exclude=["churn_*"]))
    wait_until(lambda: list(kube.deployments("sel")) == ["sel-other"], 120, "selection switched to `other`")


def test_crd_rejects_invalid_specs(kube, modelrepo_crd):
    bad = {
        "both branch and revision": ({"url": "https://h/r.git", "branch": "main", "revision": "v1"}, "exactly one of spec.branch, spec.branches and spec.revision"),
        "branch and branches": ({"url": "https://h/r.git", "branch": "main", "branches": ["main"]}, "exactly one of spec.branch, spec.branches and spec.revision"),
        "neither": ({"url": "https://h/r.git"}, "exactly one of spec.branch, spec.branches and spec.revision"),
        "empty branches": ({"url": "https://h/r.git", "branches": []}, "should have at least 1 items|must have at least 1 items"),
        "interval too short": ({"url": "https://h/r.git", "branch": "main", "interval": "1s"}, "between 5s and 24h"),
        "interval too long": ({"url": "https://h/r.git", "branch": "main", "interval": "25h"}, "between 5s and 24h"),
        "bad scheme": ({"url": "ftp://h/r.git", "branch": "main"}, "spec.url must start with"),
    }
    for spec, message in bad.values():
        body = {"apiVersion": "modelrepo.dev/v1alpha1", "kind": "ModelRepo", "metadata": {"name": "bad"}, "spec": spec}
        with pytest.raises(AssertionError, match=message):
            kube.kubectl("apply", "-f", "-", input=json.dumps(body))
    kube.apply_modelrepo("good", {"url": "git@github.com:acme/models.git", "branch": "main"})
    got = kube.modelrepo("good")["spec"]
    assert got["interval"] == "60s" and got["include"] == ["*"] and got["service"]["port"] == 80


def test_operator_killed_mid_sync_converges(kube, operator, node_git_servers, node_model_repo):
    repo = node_model_repo("kill")
    for i in range(6):
        repo.write_deployment(f"M{i}", body=f"return x + {i}", doc=str(4 + i))
    head = repo.commit_push("six models")
    # replicas 0: this is about the operator's own convergence, not about pods
    kube.apply_modelrepo("kill", spec(node_git_servers, repo))
    wait_until(lambda: kube.deployments("kill"), 120, "the first Deployment applied")
    operator.kill()  # mid-sync: some children may exist, status may be stale
    operator.start()
    kube.wait_ready("kill", head, 6, timeout=180)
    deps = kube.deployments("kill")
    assert sorted(deps) == [f"kill-m{i}" for i in range(6)]
    assert kube.services("kill") == sorted(deps)
    for d in deps.values():
        assert len(d["metadata"]["ownerReferences"]) == 1
        assert d["metadata"]["annotations"]["modelrepo.dev/commit"] == head
