"""The sync decision logic against a real git server and an in-memory API (pure unit test).

The cluster tests (tests/cluster/test_operator.py) check the same behaviour on Kubernetes;
this one pins the API traffic: an idle poll writes nothing, a one-folder push applies one
Deployment, an unreachable repository prunes nothing.
"""

from __future__ import annotations

import base64
import copy

import pytest
from fixtures.git_servers import WorkRepo

from modelrepo.operator import kube, sync
from modelrepo.operator.sync import RepoState


class MemoryAPI:
    """Deployments/Services/status kept in dicts; every write recorded."""

    def __init__(self):
        self.objects: dict[tuple[str, str], dict] = {}
        self.writes: list[str] = []
        self.status: dict = {}
        self.secrets: dict[str, dict[str, str]] = {}

    def install(self, monkeypatch):
        monkeypatch.setattr(kube, "list_children", self.list_children)
        monkeypatch.setattr(kube, "apply", self.apply)
        monkeypatch.setattr(kube, "delete_child", self.delete_child)
        monkeypatch.setattr(kube, "apply_status", self.apply_status)
        monkeypatch.setattr(kube, "post_event", lambda body, t, reason, msg: self.writes.append(f"event {reason} {msg}"))
        monkeypatch.setattr(kube, "read_secret", lambda ns, name: self.secrets[name])
        monkeypatch.setattr(kube, "annotate_pods", lambda ns, labels, ann: self.writes.append(f"annotate {ann}"))

    def list_children(self, ns, repo):  # the children's label selector, as kube.list_children asks
        children = {key: o for key, o in sorted(self.objects.items()) if "modelrepo.dev/repo" in o["metadata"]["labels"]}
        deps = [copy.deepcopy(o) for (k, _), o in children.items() if k == "Deployment"]
        svcs = [copy.deepcopy(o) for (k, _), o in children.items() if k == "Service"]
        return deps, svcs, []

    def apply(self, obj):
        obj = copy.deepcopy(obj)
        if obj["kind"] == "Deployment":  # pretend it rolled out at once
            obj["metadata"]["generation"] = 1
            r = obj["spec"]["replicas"]
            obj["status"] = {"observedGeneration": 1, "replicas": r, "updatedReplicas": r, "readyReplicas": r, "availableReplicas": r}
        self.objects[(obj["kind"], obj["metadata"]["name"])] = obj
        self.writes.append(f"apply {obj['kind']} {obj['metadata']['name']}")
        return obj

    def delete_child(self, ns, name):
        for kind in ("Deployment", "Service"):
            self.objects.pop((kind, name), None)
        self.writes.append(f"delete {name}")

    def apply_status(self, ns, name, status):
        self.status = copy.deepcopy(status)
        self.writes.append("status")


@pytest.fixture
def api(monkeypatch):
    memory = MemoryAPI()
    memory.install(monkeypatch)
    return memory


def body_for(url, **spec):
    return {
        "apiVersion": "modelrepo.dev/v1alpha1", "kind": "ModelRepo",
        "metadata": {"name": "models", "namespace": "ml", "uid": "uid-1", "generation": 1},
        "spec": {"url": url, "branch": "main", "interval": "5s", "include": ["*"], "exclude": [], **spec},
    }


def test_idle_poll_writes_nothing_and_one_change_applies_one(api, git_servers, tmp_path):
    bare = git_servers.create_repo("sync-basic")
    work = WorkRepo.create(bare, tmp_path / "w")
    for name in ("A", "B", "C"):
        work.write_deployment(name)
    first = work.commit_push("three")
    body, state = body_for(git_servers.daemon_url("sync-basic")), RepoState()

    result = sync.sync(body, state, tmp_path / "cache")
    assert result.fetched and sorted(result.applied) == ["A", "B", "C"]
    assert api.status["commit"] == first and api.status["ready"] == "3/3"
    assert {c["type"]: c["status"] for c in api.status["conditions"]}["Ready"] == "True"

    api.writes.clear()
    body["status"] = copy.deepcopy(api.status)
    result = sync.sync(body, state, tmp_path / "cache")
    assert not result.fetched and api.writes == []

    work.write_deployment("B", body="return x * 3", doc="12")
    second = work.commit_push("B triples")
    result = sync.sync(body, state, tmp_path / "cache")
    deployment_writes = [w for w in api.writes if w.startswith("apply Deployment")]
    assert deployment_writes == ["apply Deployment models-b"]
    assert api.objects[("Deployment", "models-a")]["metadata"]["annotations"]["modelrepo.dev/commit"] == first
    assert api.objects[("Deployment", "models-b")]["metadata"]["annotations"]["modelrepo.dev/commit"] == second
    assert {d["name"]: d["version"] for d in api.status["deployments"]} == {"A": 1, "B": 2, "C": 1}


def test_invalid_folder_is_reported_and_the_others_go_on(api, git_servers, tmp_path):
    bare = git_servers.create_repo("sync-invalid")
    work = WorkRepo.create(bare, tmp_path / "w")
    work.write_deployment("A")
    work.write_deployment("B")
    work.commit_push("two")
    body, state = body_for(git_servers.daemon_url("sync-invalid")), RepoState()
    sync.sync(body, state, tmp_path / "cache")
    work.write("deployments/A/source.py", "def A(x:\n")
    work.write_deployment("B", body="return x * 3", doc="12")
    work.commit_push("A broken, B changed")
    result = sync.sync(body, state, tmp_path / "cache")
    assert result.applied == ["B"]
    assert "deployments/A/source.py" in result.invalid["A"] and "/tmp" not in result.invalid["A"]
    degraded = next(c for c in api.status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["message"].startswith("A: deployments/A/source.py")
    assert ("Deployment", "models-a") in api.objects  # the old version keeps serving


def test_unreachable_repository_prunes_nothing_and_recovers(api, git_servers, tmp_path):
    bare = git_servers.create_repo("sync-auth")
    work = WorkRepo.create(bare, tmp_path / "w")
    work.write_deployment("A")
    work.commit_push("one")
    api.secrets["git"] = {k: base64.b64encode(v).decode() for k, v in git_servers.basic_auth_secret().items()}
    body, state = body_for(git_servers.http_url("sync-auth"), secretRef={"name": "git"}), RepoState()
    sync.sync(body, state, tmp_path / "cache")
    assert ("Deployment", "models-a") in api.objects

    good = api.secrets["git"]
    api.secrets["git"] = {**good, "password": base64.b64encode(b"wrong-pass-123").decode()}
    work.remove("deployments/A")
    work.write_deployment("B")
    work.commit_push("A gone")
    api.writes.clear()
    result = sync.sync(body, state, tmp_path / "cache")
    assert result.error and "Authentication failed" in result.error and "wrong-pass-123" not in result.error
    assert ("Deployment", "models-a") in api.objects
    assert not [w for w in api.writes if w.startswith(("apply Deployment", "delete"))]
    source = next(c for c in api.status["conditions"] if c["type"] == "SourceReady")
    assert source["status"] == "False" and "Authentication failed" in source["message"]

    api.secrets["git"] = good
    result = sync.sync(body, state, tmp_path / "cache")
    assert result.applied == ["B"] and result.pruned == ["models-a"]
    source = next(c for c in api.status["conditions"] if c["type"] == "SourceReady")
    assert source["status"] == "True"



def test_endpoints_change_the_gateway_table_and_restart_no_model_pod(api, git_servers, tmp_path):
    import json

    from modelrepo.operator.gateway import table_hash

    bare = git_servers.create_repo("sync-gateway")
    work = WorkRepo.create(bare, tmp_path / "w")
    work.write_deployment("A")
    work.commit_push("A")
    body, state = body_for(git_servers.daemon_url("sync-gateway"), apiKeysSecretRef={"name": "keys"}), RepoState()
    sync.sync(body, state, tmp_path / "cache")
    table = json.loads(api.objects[("ConfigMap", "models-gateway")]["data"]["gateway.json"])
    assert table["upstreams"] == [{"name": "A", "branch": "main", "version": 1, "commit": table["upstreams"][0]["commit"],
                                   "latest": True, "url": "http://models-a.ml.svc"}]
    pod = api.objects[("Deployment", "models-gateway")]["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"][-2:] == ["--api-keys", "/etc/modelrepo/api-keys/keys"]
    assert {"name": "api-keys", "secret": {"secretName": "keys", "defaultMode": 0o440}} in pod["volumes"]

    api.writes.clear()
    work.write("endpoints/split.yaml", "backends: {a: {deployment: {name: A, version: 1}, weight: 3}}\nschemaVersion: 1\n")
    work.write("endpoints/broken.yaml", "backends: {}\n")
    work.commit_push("an endpoint")
    sync.sync(body, state, tmp_path / "cache")
    table = json.loads(api.objects[("ConfigMap", "models-gateway")]["data"]["gateway.json"])
    assert table["definitions"]["main"]["endpoints"]["split"]["backends"]["a"]["weight"] == 3
    assert [w for w in api.writes if w.startswith(("apply", "annotate"))] == [
        "apply ConfigMap models-gateway", f"annotate {{'modelrepo.dev/table': '{table_hash(table)}'}}"]
    assert "event InvalidEndpoint endpoints/broken.yaml: backends: an endpoint needs at least one backend" in api.writes


def _git(work, *args):
    import subprocess

    return subprocess.run(["git", *args], cwd=work.path, check=True, capture_output=True, text=True).stdout


def test_branches_each_get_their_deployments_versions_and_gateway_part(api, git_servers, tmp_path):
    import json

    bare = git_servers.create_repo("sync-branches")
    work = WorkRepo.create(bare, tmp_path / "w")
    work.write_deployment("A")
    work.write_deployment("B")
    main = work.commit_push("two")
    _git(work, "checkout", "-q", "-b", "staging")
    work.write_deployment("A", body="return x * 3", doc="12")
    staging = work.commit_push("A triples on staging", branch="staging")
    spec = {"branches": ["main", "staging"]}
    body = body_for(git_servers.daemon_url("sync-branches"), **spec)
    del body["spec"]["branch"]
    state = RepoState()

    result = sync.sync(body, state, tmp_path / "cache")
    assert result.commit == main and sorted(result.applied) == ["A", "B", "staging/A", "staging/B"]
    deployments = {n for (k, n) in api.objects if k == "Deployment"}
    assert deployments == {"models-a", "models-b", "models-staging-a", "models-staging-b", "models-gateway",
                           "models-versions", "models-staging-versions"}
    # The first branch's children are exactly what spec.branch made; the others carry the branch.
    first = api.objects[("Deployment", "models-a")]
    assert first["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "modelrepo", "modelrepo.dev/repo": "models", "modelrepo.dev/deployment": "A"}
    other = api.objects[("Deployment", "models-staging-a")]
    assert other["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "modelrepo", "modelrepo.dev/repo": "models",
        "modelrepo.dev/deployment": "A.staging", "modelrepo.dev/branch": "staging"}
    assert api.objects[("Service", "models-staging-a")]["spec"]["selector"] == other["spec"]["selector"]["matchLabels"]
    fetch = other["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert fetch[fetch.index("--commit") + 1] == staging and fetch[fetch.index("--ref") + 1] == "staging"
    # Versions count on each branch's own first-parent history.
    entries = {(d["branch"], d["name"]): (d["version"], d["commit"], d["url"]) for d in api.status["deployments"]}
    assert entries == {
        ("main", "A"): (1, main, "http://models-a.ml.svc/v1/A/latest"),
        ("main", "B"): (1, main, "http://models-b.ml.svc/v1/B/latest"),
        ("staging", "A"): (2, staging, "http://models-staging-a.ml.svc/v1/A/latest"),
        ("staging", "B"): (1, main, "http://models-staging-b.ml.svc/v1/B/latest"),
    }
    assert api.status["commit"] == main and api.status["ready"] == "4/4"
    assert api.status["branches"] == [{"name": "main", "commit": main}, {"name": "staging", "commit": staging}]
    table = json.loads(api.objects[("ConfigMap", "models-gateway")]["data"]["gateway.json"])
    assert table["branches"] == ["main", "staging"]
    assert {(u["branch"], u["name"]): (u["version"], u["url"]) for u in table["upstreams"]} == {
        ("main", "A"): (1, "http://models-a.ml.svc"), ("main", "B"): (1, "http://models-b.ml.svc"),
        ("staging", "A"): (2, "http://models-staging-a.ml.svc"), ("staging", "B"): (1, "http://models-staging-b.ml.svc"),
    }
    assert set(table["definitions"]) == {"main", "staging"}
    assert table["onDemand"] == {"main": "http://models-versions.ml.svc", "staging": "http://models-staging-versions.ml.svc"}

    api.writes.clear()
    body["status"] = copy.deepcopy(api.status)
    assert not sync.sync(body, state, tmp_path / "cache").fetched and api.writes == []

    # A push to staging only touches staging's changed folder.
    work.write_deployment("B", body="return x * 4", doc="16")
    staging2 = work.commit_push("B on staging", branch="staging")
    sync.sync(body, state, tmp_path / "cache")
    assert [w for w in api.writes if w.startswith("apply Deployment")] == ["apply Deployment models-staging-b"]
    assert api.objects[("Deployment", "models-staging-b")]["metadata"]["annotations"]["modelrepo.dev/version"] == "2"

    # The branch deleted from the remote: its children are pruned, main's stay.
    _git(work, "push", "-q", "origin", ":staging")
    api.writes.clear()
    result = sync.sync(body, state, tmp_path / "cache")
    assert sorted(result.pruned) == ["models-staging-a", "models-staging-b"]
    assert {n for (k, n) in api.objects if k == "Deployment"} == {"models-a", "models-b", "models-gateway",
                                                                  "models-versions"}  # staging's versions pod gone
    assert api.status["branches"] == [{"name": "main", "commit": main}]
    assert any(w.startswith("event BranchNotFound spec.branches names staging") for w in api.writes)
    assert staging2 != staging


def test_branch_patterns_follow_new_branches_and_a_missing_first_branch_prunes_nothing(api, git_servers, tmp_path):
    bare = git_servers.create_repo("sync-patterns")
    work = WorkRepo.create(bare, tmp_path / "w")
    work.write_deployment("A")
    work.commit_push("A")
    body = body_for(git_servers.daemon_url("sync-patterns"), branches=["main", "release-*"])
    del body["spec"]["branch"]
    state = RepoState()
    sync.sync(body, state, tmp_path / "cache")
    assert {n for (k, n) in api.objects if k == "Deployment"} == {"models-a", "models-gateway", "models-versions"}

    work.push("release-1.2")
    work.push("feature")
    result = sync.sync(body, state, tmp_path / "cache")
    assert result.applied == ["release-1.2/A"]
    assert ("Deployment", "models-release-1-2-a") in api.objects
    assert [b["name"] for b in api.status["branches"]] == ["main", "release-1.2"]

    # The first branch missing: a source error, nothing pruned.
    body["spec"]["branches"] = ["trunk", "release-*"]
    body["metadata"]["generation"] = 2
    api.writes.clear()
    result = sync.sync(body, state, tmp_path / "cache")
    assert result.error and "no branch 'trunk'" in result.error
    assert not [w for w in api.writes if w.startswith("delete")]


def test_endpoint_status_per_branch_resolves_backends_and_names_bad_files(api, git_servers, tmp_path):
    bare = git_servers.create_repo("sync-endpoint-status")
    work = WorkRepo.create(bare, tmp_path / "w")
    work.write_deployment("A")
    work.write_deployment("B")
    work.commit_push("A1")
    work.write_deployment("A", body="return x * 3", doc="12")
    work.write("endpoints/split.yaml", (
        "backends:\n  new: {deployment: {name: A, version: latest}, weight: 9}\n"
        "  old: {deployment: {name: A, version: official}, weight: 1}\n"
        "mirrors:\n  shadow: {deployment: {name: B, version: latest}}\nschemaVersion: 1\n"))
    work.write("endpoints/aliases.yaml", "aliases:\n  A: {official: 1}\nschemaVersion: 1\n")
    work.write("endpoints/broken.yaml", "backends: {}\n")
    work.write("endpoints/ghost.yaml", "backends: {g: {deployment: {name: Ghost}}}\n")
    main = work.commit_push("A2 and endpoints")
    _git(work, "checkout", "-q", "-b", "staging")
    work.write("endpoints/split.yaml", "backends: {only: {deployment: {name: A, branch: main, version: official}}}\n")
    work.remove("endpoints/broken.yaml")
    work.remove("endpoints/ghost.yaml")
    work.commit_push("staging's split", branch="staging")
    body = body_for(git_servers.daemon_url("sync-endpoint-status"), branches=["main", "staging"])
    del body["spec"]["branch"]
    result = sync.sync(body, RepoState(), tmp_path / "cache")
    assert sorted(result.applied) == ["A", "B", "staging/A", "staging/B"]  # bad endpoint files stop nothing
    by = {(e["branch"], e["name"]): e for e in api.status["endpoints"]}
    assert set(by) == {("main", "split"), ("main", "broken"), ("main", "ghost"), ("staging", "split")}
    assert by[("main", "split")] == {
        "name": "split", "branch": "main", "file": "endpoints/split.yaml", "valid": True, "message": "",
        "backends": [
            {"key": "new", "deployment": "A", "branch": "main", "version": "latest", "resolvedVersion": 2, "weight": 9.0},
            {"key": "old", "deployment": "A", "branch": "main", "version": "official", "resolvedVersion": 1, "weight": 1.0},
        ],
        "mirrors": [{"key": "shadow", "deployment": "B", "branch": "main", "version": "latest", "resolvedVersion": 1}],
    }
    assert by[("main", "broken")] == {"name": "broken", "branch": "main", "file": "endpoints/broken.yaml",
                                      "valid": False, "message": "backends: an endpoint needs at least one backend"}
    assert not by[("main", "ghost")]["valid"]
    assert by[("main", "ghost")]["message"] == "backends.g: no deployment Ghost in deployments/"
    assert by[("staging", "split")]["valid"] and by[("staging", "split")]["backends"][0]["resolvedVersion"] == 1
    assert "event InvalidEndpoint endpoints/broken.yaml: backends: an endpoint needs at least one backend" in api.writes
    assert "event InvalidEndpoint endpoints/ghost.yaml: backends.g: no deployment Ghost in deployments/" in api.writes
    assert api.status["commit"] == main
