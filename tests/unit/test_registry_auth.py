"""The operator's registry reads against a real registry that needs a login (docker-registry, htpasswd)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.registry import PASSWORD, USER

from modelrepo.operator import builds, registry
from modelrepo.operator.environments import EnvironmentSettings
from modelrepo.operator.render import Folder, FolderSettings, RepoRef, render_deployment

pytestmark = pytest.mark.slow


def test_digest_and_labels_with_the_pull_secret_and_a_clear_401_without(auth_registry, tmp_path):
    digest = auth_registry.push("modelrepo/env", "abc123", {"modelrepo.packages": "numpy==2.0.0"})
    image = f"{auth_registry.host}/modelrepo/env:abc123"
    auth = str(auth_registry.auth_file)
    assert registry.manifest_digest(image, plain_http=True, auth_file=auth) == digest
    assert registry.manifest_digest(f"{auth_registry.host}/modelrepo/env:missing", True, auth) is None
    assert registry.image_labels(image, True, auth) == {"modelrepo.packages": "numpy==2.0.0"}

    with pytest.raises(registry.RegistryError) as anonymous:
        registry.manifest_digest(image, plain_http=True)
    assert str(anonymous.value) == (f"{image}: registry {auth_registry.host} answered 401 Unauthorized "
                                    "(no registry credentials configured: set environments.registryAuthSecret)")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"auths": {auth_registry.host: {"username": USER, "password": "not-it"}}}))
    with pytest.raises(registry.RegistryError) as refused:
        registry.image_labels(image, True, str(wrong))
    assert "401 Unauthorized to the credentials" in str(refused.value) and str(wrong) in str(refused.value)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"auths": {"registry.example:5000": {"auth": "dTpw"}}}))
    with pytest.raises(registry.RegistryError, match=f"no credentials for {auth_registry.host} in {other}"):
        registry.manifest_digest(image, True, str(other))
    for error in (anonymous.value, refused.value):
        assert PASSWORD not in str(error) and "not-it" not in str(error)


def test_a_built_image_in_a_registry_needing_a_login_serves_with_the_pull_secret(auth_registry, tmp_path):
    """serve_with finds the built image by digest through the Secret's login; the pod pulls with it."""
    folder = Path(tmp_path / "Pinned")
    folder.mkdir()
    (folder / "requirements.txt").write_text("humanize==4.9.0\n")
    (folder / "source.py").write_text("def Pinned(x):\n    return x\n")
    (folder / "metadata.yaml").write_text(
        'schemaVersion: 2\nruntimeInfo: {mainFunction: Pinned, mainFunctionArgs: ["x:int", "return:int"], pythonVersion: "3.11"}\n')
    base = f"{auth_registry.host}/runtime:py3.11"
    auth_registry.push("runtime", "py3.11", {"modelrepo.packages": "numpy==2.0.0"})
    settings = EnvironmentSettings.from_json(json.dumps({
        "registry": auth_registry.host, "plainHttp": True, "pullSecret": "registry-login",
        "baseImages": {"3.11": base}, "authFile": str(auth_registry.auth_file)}))
    builds._packages.clear()
    target = builds.decide(builds.environment_of_folder(folder), builds._with_base_packages(settings)).target
    digest = auth_registry.push("modelrepo/env", target.rsplit(":", 1)[1], {})
    outcome = builds.serve_with("ml", "m", folder, settings)
    assert outcome.problem is None and outcome.image == f"{auth_registry.host}/modelrepo/env@{digest}"
    assert outcome.pull_secrets == ("registry-login",)
    repo = RepoRef(name="m", namespace="ml", uid="u", url="git://h/r.git", branch="main")
    pod = render_deployment(repo, Folder("Pinned", "t", "c" * 40, 1),
                            FolderSettings(image=outcome.image, pull_secrets=outcome.pull_secrets))["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "registry-login"}]
    assert {c["image"] for c in pod["containers"]} >= {outcome.image}

    builds._packages.clear()
    anonymous = builds.serve_with("ml", "m", folder, EnvironmentSettings.from_json(json.dumps({
        "registry": auth_registry.host, "plainHttp": True, "baseImages": {"3.11": base}})))
    assert anonymous.problem == (f"image registry: {base}: registry {auth_registry.host} answered 401 Unauthorized "
                                 "(no registry credentials configured: set environments.registryAuthSecret)")
