"""A repository in Modelbit's shapes (tests/fixtures/modelbit_repos.py) read by validate, serve's
extraction, the pods' sparse checkout and the operator's sync: real git, a real git server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fixtures.git_servers import WorkRepo
from fixtures.modelbit_repos import STUB_HASH, build_modelbit_repo, link, write_modelbit_repo
from unit.test_operator_sync import api, body_for  # noqa: F401 - the in-memory API fixture

from modelrepo.format import DeploymentError, is_archived, read_metadata, validate_folder
from modelrepo.operator import gitsource, sync
from modelrepo.operator.plan import make_plan
from modelrepo.operator.render import Folder, RepoRef
from modelrepo.operator.status import Observation, build_status
from modelrepo.operator.sync import RepoState
from modelrepo.repository import archived_folders, extract_folder


def validate(path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelrepo.cli", "validate", str(path)],
                          capture_output=True, text=True, env={**os.environ})


def test_modelbit_metadata_shapes_are_read(tmp_path):
    write_modelbit_repo(tmp_path)
    linear = read_metadata(tmp_path / "deployments" / "Linear_Model")
    assert linear.arg_names == ["input_x"] and linear.return_type == "float"
    assert linear.system_packages == ["libgomp1"] and linear.raw["owner"] == "ada@example.com"
    assert read_metadata(tmp_path / "deployments" / "No_Args").args == []
    assert read_metadata(tmp_path / "deployments" / "Frame_Sum").dataframe_columns == ["a", "b"]


def test_validate_names_the_stub_says_archived_and_accepts_common_links(tmp_path):
    write_modelbit_repo(tmp_path)
    out = validate(tmp_path)
    assert out.returncode == 1, out.stdout
    lines = out.stdout.splitlines()
    assert "deployments/Old_Model: archived (not served)" in lines
    stub = [line for line in lines if line.startswith("deployments/Stubbed/data/model.pkl: a Modelbit file stub")]
    assert stub and STUB_HASH in stub[0] and "commit the file itself" in stub[0]
    assert lines[-1] == "1 problem(s) in 1 of 8 deployment(s)"  # the common/ links are fine
    assert "Traceback" not in out.stdout + out.stderr


def test_validate_refuses_dangling_links_and_links_outside_common(tmp_path):
    write_modelbit_repo(tmp_path)
    folder = tmp_path / "deployments" / "Shared_Scale"
    link(folder / "gone.py", "../../common/gone.py")
    link(folder / "other.py", "../No_Args/source.py")
    link(folder / "passwd", "/etc/passwd")
    problems = {os.path.relpath(e.path, tmp_path): e.problem for e in validate_folder(folder)}
    assert problems == {
        "deployments/Shared_Scale/gone.py": "is a symbolic link to '../../common/gone.py', but common/gone.py does not exist",
        "deployments/Shared_Scale/other.py": (
            "is a symbolic link to '../No_Args/source.py' (deployments/No_Args/source.py); links may only "
            "point into the repository's common/ folder or inside their own folder"
        ),
        "deployments/Shared_Scale/passwd": "is a symbolic link to the absolute path '/etc/passwd'; use a relative link into common/",
    }


def test_serve_extraction_brings_the_linked_common_files(tmp_path):
    repo = build_modelbit_repo(tmp_path / "models")
    folder = extract_folder(repo.path, repo.commit, "Shared_Scale", tmp_path / "cache")
    assert folder.name == "Shared_Scale" and validate_folder(folder) == []
    assert (folder / "helpers.py").read_text().startswith("def triple")
    assert (folder / "data" / "scale.pkl").resolve().parent.name == "common"
    assert archived_folders(repo.path, repo.commit, {"Old_Model", "Linear_Model", "Nope"}) == {"Old_Model"}


def test_serve_extraction_refuses_a_link_outside_common_by_name(tmp_path):
    root = tmp_path / "models"
    repo = build_modelbit_repo(root)
    link(root / "deployments" / "No_Args" / "secret", "../../../outside")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "bad link"], cwd=root, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    with pytest.raises(DeploymentError) as err:
        extract_folder(root, head, "No_Args", tmp_path / "cache")
    assert str(err.value) == "deployments/No_Args/secret: is a symbolic link to '../../../outside', which leaves the repository"
    assert repo.commit != head


def test_pod_sparse_checkout_brings_the_linked_common_files(git_servers, tmp_path):
    bare = git_servers.create_repo("modelbit-sparse")
    work = WorkRepo.create(bare, tmp_path / "w")
    write_modelbit_repo(work.path)
    sha = work.commit_push("synced from Modelbit")
    folder = gitsource.sparse_checkout(git_servers.daemon_url("modelbit-sparse"), sha, "deployments/Shared_Scale", tmp_path / "pod")
    assert validate_folder(folder) == []
    assert (folder / "helpers.py").read_text().startswith("def triple")
    assert not (tmp_path / "pod" / "deployments" / "No_Args").exists()  # still sparse
    assert sorted(p.name for p in (tmp_path / "pod" / "common").iterdir()) == ["helpers.py", "scale.pkl"]


def test_plan_and_status_leave_archived_folders_unserved():
    repo = RepoRef(name="models", namespace="ml", uid="u", url="git://h/r.git", branch="main")
    folders = {n: Folder(n, f"tree-{n}", "c" * 40, 1) for n in ("A", "Old")}
    existing = [{"metadata": {"name": "models-old", "annotations": {}}}]
    plan = make_plan("models", folders, existing, [], archived={"Old"})
    assert [f.name for f in plan.apply] == ["A"] and plan.prune == ["models-old"] and plan.archived == ["Old"]
    status = build_status(Observation(repo, 1, "c" * 40, folders, [], archived={"Old"}), now="2026-01-01T00:00:00Z")
    old = next(e for e in status["deployments"] if e["name"] == "Old")
    assert old["message"] == "archived" and old["ready"] is False
    assert status["ready"] == "0/1"
    assert "Old" not in next(c for c in status["conditions"] if c["type"] == "Progressing")["message"]


def test_operator_sync_serves_modelbit_folders_names_stubs_and_skips_archived(api, git_servers, tmp_path):  # noqa: F811
    bare = git_servers.create_repo("modelbit-sync")
    work = WorkRepo.create(bare, tmp_path / "w")
    write_modelbit_repo(work.path)
    work.commit_push("synced from Modelbit")
    body, state = body_for(git_servers.daemon_url("modelbit-sync")), RepoState()
    result = sync.sync(body, state, tmp_path / "cache")
    assert sorted(result.applied) == [
        "Common_Import", "Frame_Sum", "Linear_Model", "No_Args", "Reads_File", "Shared_Scale", "With_Package",
    ]
    assert list(result.invalid) == ["Stubbed"]
    assert result.invalid["Stubbed"].startswith("deployments/Stubbed/data/model.pkl: a Modelbit file stub")
    assert "commit the file itself" in result.invalid["Stubbed"] and "/tmp" not in result.invalid["Stubbed"]
    entries = {e["name"]: e for e in api.status["deployments"]}
    assert entries["Old_Model"]["message"] == "archived" and ("Deployment", "models-old-model") not in api.objects
    assert entries["Stubbed"]["message"].startswith("deployments/Stubbed/data/model.pkl: a Modelbit file stub")

    work.write("deployments/Linear_Model/.archived", "")
    work.commit_push("archive Linear_Model")
    result = sync.sync(body, state, tmp_path / "cache")
    assert result.pruned == ["models-linear-model"]
    assert {e["name"]: e["message"] for e in api.status["deployments"]}["Linear_Model"] == "archived"
    assert is_archived(work.path / "deployments" / "Linear_Model")
