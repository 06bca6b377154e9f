"""Rendering of a branch's versions pod and its place in the gateway's table (docs/operator.md, "Old versions")."""

from modelrepo.operator import gateway, versions
from modelrepo.operator.naming import versions_child_name
from modelrepo.operator.policy import PodPolicy
from modelrepo.operator.render import Folder, RepoRef
from modelrepo.runtime.gateway.routing import Table, decide

REPO = RepoRef(
    name="models", namespace="ml", uid="uid-1", url="https://user:hunter22@git.example/acme/models.git",
    branch="main", secret_name="git", runtime={"image": "modelrepo:dev"}, service={"port": 80},
)
POLICY = PodPolicy(resources={"requests": {"cpu": "1"}, "limits": {"memory": "3Gi"}},
                   init_resources={"limits": {"memory": "100Mi"}}, model_size_limit="7Gi", tmp_size_limit="300Mi")


def pod(repo: RepoRef = REPO, branch: str = "main") -> dict:
    return versions.render_deployment(repo, branch, POLICY)["spec"]["template"]["spec"]


def containers(spec: dict) -> dict[str, dict]:
    return {c["name"]: c for c in spec["containers"]}


def test_only_the_fetcher_mounts_the_secret_and_the_runtime_reads_the_folders_read_only():
    spec = pod()
    fetcher, runtime = containers(spec)["fetcher"], containers(spec)["runtime"]
    assert {m["name"] for m in fetcher["volumeMounts"]} == {"versions", "git-tmp", "git-credentials"}
    assert {m["name"]: m.get("readOnly", False) for m in runtime["volumeMounts"]} == {"versions": True, "tmp": False}
    assert not [e for c in (fetcher, runtime) for e in c["env"] if "valueFrom" in e]
    secret_volumes = [v["name"] for v in spec["volumes"] if "secret" in v]
    assert secret_volumes == ["git-credentials"]
    assert spec["shareProcessNamespace"] is False  # the runtime cannot read the fetcher's /proc/<pid>/environ
    # the two talk over the pod's loopback address: the fetcher takes only that address
    assert runtime["args"][runtime["args"].index("--fetcher") + 1] == "http://127.0.0.1:8081"
    assert "ports" not in fetcher


def test_the_fetcher_runs_git_only_with_the_url_without_credentials():
    fetcher = containers(pod())["fetcher"]
    args = fetcher["args"]
    assert args[0] == "fetcher"
    assert args[args.index("--url") + 1] == "https://git.example/acme/models.git"
    assert args[args.index("--ref") + 1] == "main"
    assert args[args.index("--credentials") + 1] == "/etc/modelrepo/git"
    assert "hunter22" not in repr(versions.versions_objects(REPO, "main", POLICY))
    no_secret = RepoRef(name="m", namespace="ml", uid="u", url="git://h/r.git", branch="main")
    assert "--credentials" not in containers(pod(no_secret))["fetcher"]["args"]
    assert [v["name"] for v in pod(no_secret)["volumes"]] == ["versions", "tmp", "git-tmp"]


def test_the_versions_pod_is_locked_down_like_the_model_pods():
    spec = pod()
    assert spec["automountServiceAccountToken"] is False and "serviceAccountName" not in spec
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
    for c in spec["containers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert containers(spec)["runtime"]["resources"] == {"requests": {"cpu": "1"}, "limits": {"memory": "3Gi"}}
    assert containers(spec)["fetcher"]["resources"] == {"limits": {"memory": "100Mi"}}
    sizes = {v["name"]: v["emptyDir"]["sizeLimit"] for v in spec["volumes"] if "emptyDir" in v}
    assert sizes == {"versions": "7Gi", "tmp": "300Mi", "git-tmp": "300Mi"}


def test_names_labels_and_the_service():
    deployment, service = versions.versions_objects(REPO, "main", POLICY)
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == "models-versions"
    assert versions.versions_name(REPO, "staging") == "models-staging-versions" == versions_child_name("models", "staging")
    labels = deployment["metadata"]["labels"]
    assert "modelrepo.dev/repo" not in labels  # never a folder child the plan could prune
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"] == labels
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    staging = versions.render_deployment(REPO, "staging", POLICY)
    assert staging["spec"]["selector"] != deployment["spec"]["selector"]  # one pod per branch


def test_the_gateway_sends_a_version_no_pod_runs_to_the_versions_service():
    folder = Folder("Linear_Model", tree="t" * 40, commit="c" * 40, version=3)
    on_demand = versions.versions_url(REPO, "main")
    table_json = gateway.routing_table(REPO, [gateway.BranchRoutes("main", [folder], {}, on_demand=on_demand)])
    assert table_json["onDemand"] == {"main": "http://models-versions.ml.svc"}
    table = Table.from_json(table_json)
    assert decide(table, "Linear_Model", None, "1", 0.5).primary.url == "http://models-versions.ml.svc/v1/Linear_Model/main/1"
    assert decide(table, "Linear_Model", None, "3", 0.5).primary.url == "http://models-linear-model.ml.svc/v1/Linear_Model/3"
    other_port = RepoRef(name="m", namespace="ml", uid="u", url="git://h/r.git", branch="main", service={"port": 8080})
    assert versions.versions_url(other_port, "main") == "http://m-versions.ml.svc:8080"


def test_a_sync_applies_the_versions_pod_once_and_names_it_in_the_gateway_table(git_servers, tmp_path, monkeypatch):
    import json

    from fixtures.git_servers import WorkRepo
    from unit.test_operator_sync import MemoryAPI, body_for

    from modelrepo.operator import sync

    api = MemoryAPI()
    api.install(monkeypatch)
    bare = git_servers.create_repo(f"sync-versions-{tmp_path.name}")
    work = WorkRepo.create(bare, tmp_path / "w")
    work.write_deployment("A")
    work.commit_push("A")
    body, state = body_for(git_servers.daemon_url(bare.name.removesuffix(".git"))), sync.RepoState()
    sync.sync(body, state, tmp_path / "cache")
    table = json.loads(api.objects[("ConfigMap", "models-gateway")]["data"]["gateway.json"])
    assert table["onDemand"] == {"main": "http://models-versions.ml.svc"}
    deployment = api.objects[("Deployment", "models-versions")]
    assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == ["fetcher", "runtime"]
    assert ("Service", "models-versions") in api.objects
    assert "models-versions" not in [n for (k, n), o in api.objects.items() if "modelrepo.dev/repo" in o["metadata"]["labels"]]

    api.writes.clear()  # a push re-applies the changed folder and the table, never the versions pod
    work.write_deployment("A", body="return x * 3", doc="12")
    work.commit_push("A v2")
    sync.sync(body, state, tmp_path / "cache")
    assert [w for w in api.writes if w.startswith("apply")] == ["apply Deployment models-a", "apply ConfigMap models-gateway"]
