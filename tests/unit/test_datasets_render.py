"""The pod of a ModelRepo with warehouses and secrets: mounted into the runtime container only."""

from __future__ import annotations

from modelrepo.operator.render import Folder, FolderSettings, RepoRef, render_deployment

BODY = {
    "metadata": {"name": "shop", "namespace": "ml", "uid": "u-1"},
    "spec": {
        "url": "https://git.example/models.git", "branch": "main", "secretRef": {"name": "git-creds"},
        "warehousesSecretRef": {"name": "warehouses"},
        "secrets": [{"name": "scoring-keys", "deployments": ["Score*"]}, {"name": "shared"}],
    },
}


def pod(name: str, **folder: str) -> dict:
    spec = render_deployment(RepoRef.from_body(BODY), Folder(name, tree="t" * 40, commit="c" * 40, version=1, **folder),
                             FolderSettings())
    return spec["spec"]["template"]["spec"]


def test_secrets_and_warehouses_reach_the_runtime_container_of_matching_deployments_only():
    scorer = pod("Scorer")
    runtime, fetch = scorer["containers"][0], scorer["initContainers"][0]
    mounts = {m["mountPath"]: m for m in runtime["volumeMounts"]}
    assert mounts["/etc/modelrepo/warehouses"]["readOnly"] is True
    assert mounts["/etc/modelrepo/secrets/scoring-keys"]["readOnly"] is True
    assert mounts["/etc/modelrepo/secrets/shared"]["readOnly"] is True
    env = {e["name"]: e.get("value") for e in runtime["env"]}
    assert env["MODELREPO_WAREHOUSES_DIR"] == "/etc/modelrepo/warehouses"
    assert env["MODELREPO_SECRETS_DIRS"] == "/etc/modelrepo/secrets/scoring-keys:/etc/modelrepo/secrets/shared"
    assert env["MODELREPO_DATASETS_DIR"] == "/model/datasets"
    secrets = {v["secret"]["secretName"] for v in scorer["volumes"] if "secret" in v}
    assert secrets == {"git-creds", "warehouses", "scoring-keys", "shared"}
    # The fetch container has the git credentials and nothing else secret.
    fetch_volumes = {m["name"] for m in fetch["volumeMounts"]}
    assert fetch_volumes == {"model", "git-tmp", "git-credentials"}

    other = pod("Ranker")["containers"][0]
    assert "/etc/modelrepo/secrets/scoring-keys" not in {m["mountPath"] for m in other["volumeMounts"]}
    assert {e["name"]: e.get("value") for e in other["env"]}["MODELREPO_SECRETS_DIRS"] == "/etc/modelrepo/secrets/shared"


def test_datasets_come_from_the_newest_commit_that_changed_them():
    args = pod("Scorer", datasets_commit="d" * 40)["initContainers"][0]["args"]
    assert args[args.index("--datasets-at") + 1] == "d" * 40
    assert "--datasets-at" not in pod("Scorer")["initContainers"][0]["args"]


def test_a_new_secret_rolls_the_children_and_none_keeps_the_old_hash():
    plain = {**BODY, "spec": {k: v for k, v in BODY["spec"].items() if k not in ("warehousesSecretRef", "secrets")}}
    more = {**BODY, "spec": {**BODY["spec"], "secrets": [*BODY["spec"]["secrets"], {"name": "extra"}]}}
    assert RepoRef.from_body(BODY).config_hash() != RepoRef.from_body(more).config_hash()
    assert RepoRef.from_body(plain).config_hash() == RepoRef(
        name="shop", namespace="ml", uid="u-1", url="https://git.example/models.git", branch="main",
        secret_name="git-creds").config_hash()
