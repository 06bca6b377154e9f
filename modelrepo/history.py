"""Version numbers of deployments (DESIGN §3), read from git history.

Version N of `<Name>` is the N-th commit, on the first-parent history of a branch, that changed
`deployments/<Name>/`. A revert is a new version. All folders are numbered in one `git log` pass,
so a caller that needs every deployment's versions pays for one walk of the history.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

DEPLOYMENTS_DIR = "deployments"
_SHA_PREFIX = re.compile(r"^[0-9a-fA-F]{7,40}$")


@dataclass(frozen=True)
class Version:
    """One version of one deployment: the commit that made it and its 1-based number."""

    number: int
    commit: str
    date: datetime
    message: str


class HistoryError(Exception):
    """The repository or revision could not be read."""


def _repo_dir(repo: Any) -> str:
    """Accept a path or a GitPython Repo; return a directory git can run in."""
    working = getattr(repo, "working_tree_dir", None) or getattr(repo, "git_dir", None)
    return str(working) if working else os.fspath(repo)


def _git_log(repo: Any, rev: str) -> str:
    cmd = [
        "git", "log", "--first-parent", "--reverse", "--no-renames",
        "--diff-merges=first-parent", "--name-only", "-z",
        "--format=%x1e%H%x1f%cI%x1f%s", rev, "--",
    ]
    proc = subprocess.run(
        cmd, cwd=_repo_dir(repo), capture_output=True, text=True, encoding="utf-8",
        errors="surrogateescape",
    )
    if proc.returncode != 0:
        stderr = proc.stderr.strip()
        if _is_unborn(repo, rev):
            return ""  # a branch with no commits yet has no versions
        raise HistoryError(f"git log {rev} in {_repo_dir(repo)}: {stderr}")
    return proc.stdout


def _is_unborn(repo: Any, rev: str) -> bool:
    """True when `rev` is HEAD or the current branch and that branch has no commit yet."""
    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=_repo_dir(repo), capture_output=True, text=True)

    if git("rev-parse", "-q", "--verify", "HEAD").returncode == 0:
        return False
    branch = git("symbolic-ref", "-q", "HEAD").stdout.strip()
    return rev in ("HEAD", branch, branch.removeprefix("refs/heads/"))


def deployment_versions(repo: Any, rev: str = "HEAD") -> dict[str, list[Version]]:
    """Versions of every deployment folder ever changed on `rev`'s first-parent line, oldest first.

    `repo` is a path to a work tree (or git dir) or a GitPython Repo. A branch with no commits
    yet gives an empty dict.
    """
    result: dict[str, list[Version]] = {}
    prefix = DEPLOYMENTS_DIR + "/"
    for record in _git_log(repo, rev).split("\x1e"):
        if not record:
            continue
        header, _, names = record.partition("\0")
        sha, date, message = header.split("\x1f", 2)
        changed: list[str] = []
        for path in names.split("\0"):
            path = path.lstrip("\n")
            if path.startswith(prefix):
                name = path[len(prefix):].split("/", 1)[0]
                if name and name not in changed and "/" in path[len(prefix):]:
                    changed.append(name)
        when = datetime.fromisoformat(date)
        for name in changed:
            versions = result.setdefault(name, [])
            versions.append(Version(len(versions) + 1, sha, when, message))
    return result


def versions_of(repo: Any, name: str, rev: str = "HEAD") -> list[Version]:
    """Versions of one deployment on `rev`, oldest first (empty if it never existed)."""
    return deployment_versions(repo, rev).get(name, [])


def resolve_version(versions: Sequence[Version], ref: str) -> Version | None:
    """Find `ref` ("latest", a version number, or a commit SHA prefix of 7+ hex digits).

    A ref made only of digits is read as a version number when such a version exists, and
    otherwise as a SHA prefix, so `1234567` still finds a commit when there are fewer versions.
    """
    ref = str(ref).strip()
    if not versions:
        return None
    if ref == "latest":
        return versions[-1]
    if ref.isdigit():
        number = int(ref)
        if 1 <= number <= len(versions):
            return versions[number - 1]
    if _SHA_PREFIX.match(ref):
        ref = ref.lower()
        matches = [v for v in versions if v.commit.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
    return None


def folder_path(repo_dir: str | os.PathLike[str], name: str) -> Path:
    """Where deployment `name` lives in a work tree."""
    return Path(repo_dir) / DEPLOYMENTS_DIR / name
