"""`modelrepo init`, `validate` and `versions` as a user runs them (new processes)."""

from __future__ import annotations

import os
import shutil
import subprocess

from fixtures.model_repos import run_cli


def test_init_creates_the_layout_and_is_idempotent(tmp_path, git_identity):
    target = tmp_path / "models"
    first = run_cli("init", str(target))
    assert first.returncode == 0, first.stderr
    assert "Initialized model repository in " in first.stdout and " on branch main:" in first.stdout
    for path in ("deployments", "endpoints", "datasets", "bin/pre-commit", "README.md", ".git"):
        assert (target / path).exists(), path
    assert os.access(target / "bin" / "pre-commit", os.X_OK)
    hook = target / ".git" / "hooks" / "pre-commit"
    assert hook.resolve() == (target / "bin" / "pre-commit").resolve()
    log = subprocess.run(["git", "log", "--format=%s"], cwd=target, capture_output=True, text=True)
    assert log.stdout.strip() == "Initialize model repository"
    again = run_cli("init", str(target))
    assert again.returncode == 0
    assert "already a model repository on branch main; nothing to do" in again.stdout
    assert run_cli("validate", str(target)).stdout.strip() == "0 deployment(s) valid"


def test_validate_good_repo(sample_repo):
    proc = run_cli("validate", str(sample_repo.path))
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.strip() == f"{len(sample_repo.commits)} deployment(s) valid"


def test_validate_reports_each_broken_folder_as_path_problem(sample_repo, tmp_path):
    repo = tmp_path / "copy"
    shutil.copytree(sample_repo.path, repo)
    d = repo / "deployments"
    (d / "Double" / "metadata.yaml").write_text("schemaVersion: 2\nruntimeInfo: {mainFunction: Double}\n")
    (d / "Greet" / "source.py").write_text("def Greet(name, extra):\n    return name\n")
    (d / "Linear_Model" / "data" / "model.pkl").unlink()
    (d / "Batch_Double" / "requirements.txt").write_text("numpy===\n")
    shutil.copytree(d / "Greet", d / "bad-name")
    proc = run_cli("validate", str(repo))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert "Traceback" not in proc.stdout + proc.stderr
    assert any(line.startswith("deployments/Double/metadata.yaml: runtimeInfo.pythonVersion") for line in lines)
    assert any(line.startswith("deployments/Greet/source.py: Greet() takes (name, extra)") for line in lines)
    assert "deployments/Linear_Model/data/model.pkl: missing (source.py line" in proc.stdout
    assert any(line.startswith("deployments/Batch_Double/requirements.txt: line 1:") for line in lines)
    assert any(line.startswith("deployments/bad-name: deployment name 'bad-name' must match") for line in lines)
    assert lines[-1] == f"{len(lines) - 1} problem(s) in 5 of 5 deployment(s)"


def test_validate_one_folder_and_missing_dir(sample_repo, tmp_path):
    ok = run_cli("validate", str(sample_repo.path / "deployments" / "Double"))
    assert ok.returncode == 0 and "1 deployment(s) valid" in ok.stdout
    missing = run_cli("validate", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"modelrepo: {tmp_path / 'nope'}: no such directory"


def test_versions_lists_number_commit_date_message(sample_repo):
    proc = run_cli("versions", str(sample_repo.path), "Greet")
    assert proc.returncode == 0, proc.stderr
    header, newest, oldest = proc.stdout.splitlines()
    assert newest.split()[:2] == ["2", sample_repo.commits["Greet"][1][:7]]
    assert newest.split(None, 3)[3] == "Greet: say hi"
    assert oldest.split()[:2] == ["1", sample_repo.commits["Greet"][0][:7]]
    assert oldest.endswith("Deploy Greet")
    unknown = run_cli("versions", str(sample_repo.path), "Nope")
    assert unknown.returncode == 2
    assert "Nope: no versions on HEAD" in unknown.stderr


def test_init_inside_another_repository_makes_its_own(tmp_path, git_identity):
    outer = tmp_path / "project"
    outer.mkdir()
    subprocess.run(["git", "init", "-q", str(outer)], check=True)
    proc = run_cli("init", str(outer / "demo-repo"))
    assert proc.returncode == 0, proc.stderr
    top = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=outer / "demo-repo", capture_output=True, text=True
    ).stdout.strip()
    assert top == str((outer / "demo-repo").resolve())


def test_version_flag_and_help_show_defaults():
    version = run_cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("modelrepo ") and version.stdout.split()[1][0].isdigit()
    serve = run_cli("serve", "--help")
    assert "default main)" in " ".join(serve.stdout.split())  # --branch's own help says it
    assert "--port PORT           (default: 3000)" in serve.stdout
    versions = run_cli("versions", "--help")
    assert "branch, tag or commit to read (default: HEAD)" in " ".join(versions.stdout.split())


def test_versions_and_list_read_a_bare_repository(sample_repo, tmp_path):
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(sample_repo.path), str(bare)], check=True)
    proc = run_cli("versions", str(bare), "Greet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split()[:2] == ["2", sample_repo.commits["Greet"][1][:7]]
    listed = run_cli("list", str(bare))
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert listed.stdout.splitlines()[0].split() == ["NAME", "VERSION", "COMMIT", "DATE", "STATE"]
    assert rows["Greet"][1:3] == ["2", sample_repo.commits["Greet"][1][:7]]
    assert rows["Double"][-1] == "active"


def test_list_marks_archived_deployments(sample_repo, tmp_path, git_identity):
    repo = tmp_path / "copy"
    subprocess.run(["git", "clone", "-q", str(sample_repo.path), str(repo)], check=True)
    (repo / "deployments" / "Double" / ".archived").write_text("")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "--no-verify", "-m", "archive Double"], cwd=repo, check=True)
    listed = run_cli("list", cwd=repo)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows["Double"][1] == "2" and rows["Double"][-1] == "archived"
    assert rows["Linear_Model"][-1] == "active"


def test_versions_of_an_unknown_branch_says_so_plainly(sample_repo):
    proc = run_cli("versions", str(sample_repo.path), "Greet", "--rev", "staging")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"modelrepo: {sample_repo.path} has no branch, tag or commit 'staging' (branches: main)")
    assert f"`git -C {sample_repo.path} fetch origin staging`" in proc.stderr
    assert "fatal" not in proc.stderr and "Traceback" not in proc.stderr


def test_tab_completion_shows_every_public_name():
    code = "import modelrepo; print(' '.join(dir(modelrepo)))"
    import sys

    names = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    for name in ("deploy", "switch_branch", "current_branch", "DeployError", "DeployResult",
                 "load_value", "get_inference", "InferenceError"):
        assert name in names
