"""Version numbers (docs/repo-format.md) over real git repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from modelrepo.format import resolve_version
from modelrepo.repository import deployment_versions, versions_of


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit_file(repo: Path, path: str, text: str, message: str) -> str:
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    git(repo, "add", path)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def new_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "Test")
    return repo


def test_versions_count_commits_touching_each_folder_and_a_revert_is_new(tmp_path):
    repo = new_repo(tmp_path)
    a1 = commit_file(repo, "deployments/A/source.py", "1", "A one")
    commit_file(repo, "README.md", "x", "unrelated")
    b1 = commit_file(repo, "deployments/B/source.py", "1", "B one")
    a2 = commit_file(repo, "deployments/A/source.py", "2", "A two")
    git(repo, "revert", "--no-edit", "HEAD")
    a3 = git(repo, "rev-parse", "HEAD")

    versions = deployment_versions(repo)
    assert [(v.number, v.commit) for v in versions["A"]] == [(1, a1), (2, a2), (3, a3)]
    assert [(v.number, v.commit, v.message) for v in versions["B"]] == [(1, b1, "B one")]
    assert versions["A"][2].message.startswith('Revert "A two"')
    assert set(versions) == {"A", "B"}
    assert versions_of(repo, "A", rev=a2)[-1].number == 2
    assert versions_of(repo, "Missing") == []


@pytest.mark.parametrize("diff_merges", [None, "combined"])
def test_first_parent_counts_a_merge_once(tmp_path, diff_merges):
    """Also when the user's git config shows merges otherwise (log.diffMerges, git >= 2.31)."""
    repo = new_repo(tmp_path)
    if diff_merges:
        git(repo, "config", "log.diffMerges", diff_merges)
    commit_file(repo, "deployments/A/source.py", "1", "A one")
    git(repo, "checkout", "-q", "-b", "feature")
    commit_file(repo, "deployments/A/source.py", "2", "feature step 1")
    commit_file(repo, "deployments/A/source.py", "3", "feature step 2")
    git(repo, "checkout", "-q", "main")
    commit_file(repo, "other.txt", "x", "main work")
    git(repo, "merge", "-q", "--no-ff", "feature", "-m", "Merge feature")
    merge = git(repo, "rev-parse", "HEAD")
    versions = versions_of(repo, "A", rev="main")
    assert [v.number for v in versions] == [1, 2]
    assert versions[-1].commit == merge
    assert [v.number for v in versions_of(repo, "A", rev="feature")] == [1, 2, 3]


def test_unborn_branch_has_no_versions(tmp_path):
    assert deployment_versions(new_repo(tmp_path)) == {}


def test_resolve_version_by_latest_number_and_sha_prefix(tmp_path):
    repo = new_repo(tmp_path)
    first = commit_file(repo, "deployments/A/source.py", "1", "one")
    second = commit_file(repo, "deployments/A/source.py", "2", "two")
    versions = versions_of(repo, "A")
    assert resolve_version(versions, "latest").commit == second
    assert resolve_version(versions, "1").commit == first
    assert resolve_version(versions, first[:7]).number == 1
    assert resolve_version(versions, second.upper()).number == 2
    assert resolve_version(versions, "3") is None
    assert resolve_version(versions, "abc") is None
    assert resolve_version(versions, "0") is None
    assert resolve_version([], "latest") is None
