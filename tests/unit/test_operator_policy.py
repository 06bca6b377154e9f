"""What a ModelRepo may ask of its pods: spec in, refusal (or none) out; and the sync refuses early."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest
from fixtures.git_servers import HTTP_PASSWORD, HTTP_USER, WorkRepo
from unit.test_operator_sync import MemoryAPI, body_for

from modelrepo.git import url_has_credentials
from modelrepo.operator import gitsource, sync
from modelrepo.operator.policy import PodPolicy, refusal, runtime_problems
from modelrepo.operator.sync import RepoState

POLICY = PodPolicy(runtime_image="registry.test/modelrepo:1")


@pytest.mark.parametrize(
    ("url", "has"),
    [
        ("https://user:pass@host/r.git", True),
        ("https://token@host/r.git", True),
        ("http://u:@host/r.git", True),
        ("git://u@host/r.git", True),
        ("ssh://git:pw@host/r.git", True),
        ("ssh://git@host/r.git", False),
        ("git@host:acme/r.git", False),
        ("https://host/r.git", False),
        ("file:///srv/r.git", False),
    ],
)
def test_credentials_in_url(url, has):
    assert url_has_credentials(url) is has


def test_a_url_with_credentials_is_refused_with_a_message_saying_to_use_secret_ref():
    refused = refusal({"url": "https://bob:hunter22@git.test/r.git"}, POLICY)
    assert refused.reason == "CredentialsInURL"
    assert "hunter22" not in refused.message and "bob" not in refused.message
    assert "spec.secretRef" in refused.message and "https://git.test/r.git" in refused.message


def test_images_only_from_the_allowlist_default_the_runtime_image():
    assert runtime_problems({"image": "registry.test/modelrepo:1"}, None, POLICY) == []
    (problem,) = runtime_problems({"image": "evil.test/miner:latest"}, None, POLICY)
    assert problem == ("spec.runtime.image 'evil.test/miner:latest' is not allowed "
                       "(allowed: registry.test/modelrepo:1)")
    prefixes = PodPolicy(allowed_images=("registry.test/models/*", "python:3.11"))
    assert runtime_problems({"image": "registry.test/models/a:2"}, None, prefixes) == []
    assert runtime_problems({"image": "python:3.11"}, None, prefixes) == []
    assert runtime_problems({"image": "registry.test/modelsx:1"}, None, prefixes)
    assert runtime_problems({"image": "python:3.11-evil"}, None, prefixes)


def test_service_accounts_none_allowed_by_default():
    (problem,) = runtime_problems({"serviceAccountName": "admin"}, None, POLICY)
    assert problem == "spec.runtime.serviceAccountName 'admin' is not allowed (allowed: none)"
    assert runtime_problems({"serviceAccountName": "reader"}, None, PodPolicy(allowed_service_accounts=("reader",))) == []


def test_env_value_from_only_config_maps_and_secrets_other_than_the_git_credentials():
    env = [
        {"name": "A", "value": "1"},
        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "b"}}},
        {"name": "C", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
    ]
    assert runtime_problems({"env": env}, "git", POLICY) == []
    bad = [
        {"name": "D", "valueFrom": {"secretKeyRef": {"name": "git", "key": "password"}}},
        {"name": "E", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    problems = runtime_problems({"env": env + bad}, "git", POLICY)
    assert problems == [
        "spec.runtime.env[3].valueFrom.secretKeyRef 'git' is the git credentials Secret (spec.secretRef); "
        "model pods never see it",
        "spec.runtime.env[4].valueFrom.fieldRef is not allowed (allowed: secretKeyRef, configMapKeyRef)",
    ]
    only_db = PodPolicy(allowed_env_secrets=("db",))
    assert runtime_problems({"env": env}, "git", only_db) == []
    other = [{"name": "F", "valueFrom": {"secretKeyRef": {"name": "admin-token", "key": "t"}}}]
    assert runtime_problems({"env": other}, "git", only_db) == [
        "spec.runtime.env[0].valueFrom.secretKeyRef 'admin-token' is not allowed (allowed: db)"
    ]


def test_policy_from_the_operator_environment():
    policy = PodPolicy.from_env({
        "MODELREPO_RUNTIME_IMAGE": "r.test/m:2",
        "MODELREPO_ALLOWED_IMAGES": "r.test/m:2, r.test/models/*",
        "MODELREPO_ALLOWED_SERVICE_ACCOUNTS": "reader",
        "MODELREPO_ALLOWED_ENV_SECRETS": "",
        "MODELREPO_DEFAULT_RESOURCES": '{"limits": {"memory": "1Gi"}}',
        "MODELREPO_MODEL_SIZE_LIMIT": "10Gi",
    })
    assert policy.images == ("r.test/m:2", "r.test/models/*")
    assert policy.allowed_service_accounts == ("reader",)
    assert policy.allowed_env_secrets == ()  # set but empty: no secretKeyRef at all
    assert policy.resources == {"limits": {"memory": "1Gi"}}
    assert policy.model_size_limit == "10Gi" and policy.tmp_size_limit == "1Gi"
    assert PodPolicy.from_env({}).images == ("modelrepo:dev",)
    assert PodPolicy.from_env({}).allowed_env_secrets == ("*",)
    for bad in ('{"cpu": "1"}', "limits: {memory: 1Gi}"):
        with pytest.raises(ValueError, match="MODELREPO_INIT_RESOURCES must be a JSON object"):
            PodPolicy.from_env({"MODELREPO_INIT_RESOURCES": bad})


def test_a_bad_policy_variable_stops_the_operator_with_one_line():
    proc = subprocess.run(
        [sys.executable, "-c", "import modelrepo.operator.render"], capture_output=True, text=True,
        env={**os.environ, "MODELREPO_DEFAULT_RESOURCES": "{"}, check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "modelrepo: MODELREPO_DEFAULT_RESOURCES must be a JSON object with `requests` and/or `limits`"
    )


@pytest.fixture
def api(monkeypatch):
    memory = MemoryAPI()
    memory.install(monkeypatch)
    return memory


def _source_condition(status):
    return next(c for c in status["conditions"] if c["type"] == "SourceReady")


def test_sync_refuses_before_any_git_call_and_changes_no_child(api, git_servers, tmp_path, monkeypatch):
    bare = git_servers.create_repo("policy-sync")
    work = WorkRepo.create(bare, tmp_path / "w")
    work.write_deployment("A")
    work.commit_push("A")
    api.secrets["git"] = {k: base64.b64encode(v).decode() for k, v in git_servers.basic_auth_secret().items()}
    good = body_for(git_servers.http_url("policy-sync"), secretRef={"name": "git"})
    state = RepoState()
    assert sync.sync(good, state, tmp_path / "cache").applied == ["A"]
    before = {k: v for k, v in api.objects.items()}
    git_calls: list[str] = []
    monkeypatch.setattr(gitsource, "ls_remote", lambda *a, **k: git_calls.append("ls-remote"))
    monkeypatch.setattr(gitsource, "fetch", lambda *a, **k: git_calls.append("fetch"))

    url = git_servers.http_url("policy-sync").replace("://", f"://{HTTP_USER}:{HTTP_PASSWORD}@", 1)
    bad_url = {**good, "metadata": {**good["metadata"], "generation": 2}, "spec": {**good["spec"], "url": url}}
    api.writes.clear()
    result = sync.sync(bad_url, state, tmp_path / "cache")
    assert git_calls == [] and not result.applied and not result.pruned
    assert api.objects == before
    assert [w for w in api.writes if w.startswith("apply") or w.startswith("delete")] == []
    source = _source_condition(api.status)
    assert source["status"] == "False" and source["reason"] == "CredentialsInURL"
    assert "spec.secretRef" in source["message"]
    assert HTTP_PASSWORD not in repr(api.status) + repr(api.writes)

    bad_image = {**good, "metadata": {**good["metadata"], "generation": 3},
                 "spec": {**good["spec"], "runtime": {"image": "evil.test/x:1"}}}
    sync.sync(bad_image, state, tmp_path / "cache")
    assert git_calls == [] and api.objects == before
    source = _source_condition(api.status)
    assert source["reason"] == "RuntimeNotAllowed" and "spec.runtime.image 'evil.test/x:1'" in source["message"]
