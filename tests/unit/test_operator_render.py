"""Rendering of a folder's Deployment and Service (docs/operator.md, "The pods")."""

from modelrepo.operator.keys import ANN_COMMIT
from modelrepo.operator.policy import PodPolicy
from modelrepo.operator.render import (
    Folder,
    FolderSettings,
    RepoRef,
    render_deployment,
    render_service,
)

REPO = RepoRef(
    name="models", namespace="ml", uid="uid-1", url="https://git.example/acme/models.git",
    branch="main", secret_name="git", runtime={"image": "modelrepo:dev", "replicas": 2},
    service={"type": "ClusterIP", "port": 80},
)
FOLDER = Folder("Linear_Model", tree="t" * 40, commit="c" * 40, version=4)


def test_deployment_is_pinned_to_the_folder_commit_and_owned_by_the_modelrepo():
    d = render_deployment(REPO, FOLDER, FolderSettings())
    assert d["metadata"]["name"] == "models-linear-model"
    assert d["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert d["metadata"]["ownerReferences"][0]["controller"] is True
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "modelrepo"
    assert labels["modelrepo.dev/repo"] == "models"
    assert labels["modelrepo.dev/deployment"] == "Linear_Model"
    assert labels["modelrepo.dev/commit"] == "c" * 40
    assert d["spec"]["template"]["metadata"]["annotations"][ANN_COMMIT] == "c" * 40
    assert "modelrepo.dev/commit" not in d["spec"]["selector"]["matchLabels"]
    assert d["spec"]["replicas"] == 2


def test_init_container_fetches_only_the_folder_at_the_sha_with_the_secret():
    pod = render_deployment(REPO, FOLDER, FolderSettings())["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    args = init["args"]
    assert args[0] == "fetch"
    assert args[args.index("--commit") + 1] == "c" * 40
    assert args[args.index("--path") + 1] == "deployments/Linear_Model"
    assert "--credentials" in args
    assert {"name": "git-credentials", "secret": {"secretName": "git", "defaultMode": 0o440}} in pod["volumes"]
    runtime = pod["containers"][0]
    assert runtime["args"][:3] == ["runtime", "--dir", "/model/deployments/Linear_Model"]
    env = {e["name"]: e.get("value") for e in runtime["env"]}
    assert env["MODELREPO_COMMIT"] == "c" * 40 and env["MODELREPO_VERSION"] == "4"
    assert runtime["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # the credentials are not mounted where user code runs
    assert all(m["name"] != "git-credentials" for m in runtime["volumeMounts"])


def test_pods_are_locked_down_and_roll_without_losing_capacity():
    d = render_deployment(REPO, FOLDER, FolderSettings())
    pod = d["spec"]["template"]["spec"]
    assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    for c in pod["containers"] + pod["initContainers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])


def test_folder_metadata_overrides_repository_defaults():
    d = render_deployment(REPO, FOLDER, FolderSettings(replicas=3, resources={"cpu": "100m"}, env={"A": "1"}))
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert d["spec"]["replicas"] == 3
    assert c["resources"] == {"requests": {"cpu": "100m"}}
    assert {"name": "A", "value": "1"} in c["env"]


def test_the_pod_template_changes_only_with_the_folder_its_settings_or_the_repository():
    """A push that leaves a folder alone must not roll its pods: the template holds nothing but
    the folder's own commit, its settings and the ModelRepo's settings (no time, no head)."""
    template = render_deployment(REPO, FOLDER, FolderSettings())["spec"]["template"]
    newer = Folder(FOLDER.name, tree="u" * 40, commit="d" * 40, version=5)
    other_repo = RepoRef(**{**REPO.__dict__, "runtime": {**REPO.runtime, "image": "modelrepo:other"}})
    assert render_deployment(REPO, newer, FolderSettings())["spec"]["template"] != template
    assert render_deployment(REPO, FOLDER, FolderSettings(env={"A": "1"}))["spec"]["template"] != template
    assert render_deployment(other_repo, FOLDER, FolderSettings())["spec"]["template"] != template
    assert "d" * 40 not in str(template) and "c" * 40 in str(template)


def test_no_secret_no_credentials_volume():
    repo = RepoRef(name="m", namespace="ml", uid="u", url="git://h/r.git", branch="main")
    pod = render_deployment(repo, FOLDER, FolderSettings())["spec"]["template"]["spec"]
    assert "--credentials" not in pod["initContainers"][0]["args"]
    assert all(v["name"] != "git-credentials" for v in pod["volumes"])


def test_service_selects_the_deployment_pods():
    s = render_service(REPO, "Linear_Model")
    d = render_deployment(REPO, FOLDER, FolderSettings())
    assert s["metadata"]["name"] == d["metadata"]["name"]
    assert s["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
    assert s["spec"]["ports"][0]["port"] == 80 and s["spec"]["ports"][0]["targetPort"] == "http"


def _containers(pod):
    return {c["name"]: c for c in pod["initContainers"] + pod["containers"]}


def test_only_the_git_container_sees_the_secret_and_repository_code_runs_without_it():
    pod = render_deployment(REPO, FOLDER, FolderSettings())["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["fetch", "check"]
    by_name = _containers(pod)
    fetch, check, runtime = by_name["fetch"], by_name["check"], by_name["runtime"]
    assert "--check" not in fetch["args"]  # fetch runs git only
    assert check["args"] == ["check", "--dir", "/model/deployments/Linear_Model"]
    for c in (check, runtime):
        assert {m["name"] for m in c["volumeMounts"]} == {"model", "tmp"}
        assert all(m["readOnly"] for m in c["volumeMounts"] if m["name"] == "model")
        assert not [e for e in c["env"] if "secretKeyRef" in (e.get("valueFrom") or {})]
    # fetch has its own scratch space: nothing it writes there (askpass, ssh key) reaches the others
    assert {m["name"] for m in fetch["volumeMounts"]} == {"model", "git-tmp", "git-credentials"}
    assert pod.get("serviceAccountName") is None and pod["automountServiceAccountToken"] is False


def test_no_userinfo_in_the_pod_spec_even_if_the_url_had_some():
    for url in ("https://user:hunter22@git.example/acme/m.git", "https://ghp_tokentoken@git.example/acme/m.git"):
        repo = RepoRef(name="m", namespace="ml", uid="u", url=url, branch="main", secret_name="git")
        text = repr(render_deployment(repo, FOLDER, FolderSettings()))
        assert "hunter22" not in text and "ghp_tokentoken" not in text
        args = render_deployment(repo, FOLDER, FolderSettings())["spec"]["template"]["spec"]["initContainers"][0]["args"]
        assert args[args.index("--url") + 1] == "https://git.example/acme/m.git"
    ssh = RepoRef(name="m", namespace="ml", uid="u", url="ssh://git@git.example/acme/m.git", branch="main")
    args = render_deployment(ssh, FOLDER, FolderSettings())["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert "ssh://git@git.example/acme/m.git" in args  # a bare ssh user is no credential


def test_fail_safe_resources_and_size_limits_when_nothing_sets_them():
    policy = PodPolicy(
        resources={"requests": {"cpu": "1"}, "limits": {"memory": "3Gi"}},
        init_resources={"limits": {"memory": "100Mi"}}, model_size_limit="7Gi", tmp_size_limit="300Mi",
    )
    repo = RepoRef(name="m", namespace="ml", uid="u", url="git://h/r.git", branch="main")
    pod = render_deployment(repo, FOLDER, FolderSettings(), policy)["spec"]["template"]["spec"]
    by_name = _containers(pod)
    assert by_name["runtime"]["resources"] == {"requests": {"cpu": "1"}, "limits": {"memory": "3Gi"}}
    assert by_name["check"]["resources"] == by_name["runtime"]["resources"]  # it loads the same model
    assert by_name["fetch"]["resources"] == {"limits": {"memory": "100Mi"}}
    sizes = {v["name"]: v["emptyDir"]["sizeLimit"] for v in pod["volumes"] if "emptyDir" in v}
    assert sizes == {"model": "7Gi", "tmp": "300Mi", "git-tmp": "300Mi"}
    # what the folder or the ModelRepo sets wins
    own = render_deployment(repo, FOLDER, FolderSettings(resources={"limits": {"memory": "9Gi"}}), policy)
    assert own["spec"]["template"]["spec"]["containers"][0]["resources"] == {"limits": {"memory": "9Gi"}}
    # a change of the defaults rolls every child
    assert repo.config_hash(policy) != repo.config_hash(PodPolicy())
