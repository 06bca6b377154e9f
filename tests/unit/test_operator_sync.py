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
