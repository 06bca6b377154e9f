"""Reading a model repository out of git: versions, folders and files at a commit.

Built on `modelrepo.git` (running git) and `modelrepo.format` (what the output means); used by
`deploy()`, `modelrepo versions`, `modelrepo serve` and the operator. It reads committed state
only, never a work tree, and works on bare and blobless (partial) repositories.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from modelrepo import git
from modelrepo.format import (
    DEPLOYMENTS_DIR,
    LOG_ARGS,
    DeploymentError,
    Version,
    deployment_path,
    parse_log,
)

Repo = str | os.PathLike[str]


class HistoryError(Exception):
    """The repository or revision could not be read; the message says which and why."""


def deployment_versions(repo: Repo, rev: str = "HEAD") -> dict[str, list[Version]]:
    """Versions of every deployment folder ever changed on `rev`'s first-parent line, oldest first.

    `repo` is a work tree or a git dir. A branch with no commits yet gives an empty dict.
    """
    try:
        return parse_log(git.run([*LOG_ARGS, rev, "--"], cwd=repo))
    except git.GitError as exc:
        if _is_unborn(repo, rev):
            return {}  # a branch with no commits yet has no versions
        raise HistoryError(f"reading the history of {rev} in {os.fspath(repo)}: {exc.stderr}") from None


def versions_of(repo: Repo, name: str, rev: str = "HEAD") -> list[Version]:
    """Versions of one deployment on `rev`, oldest first (empty if it never existed)."""
    return deployment_versions(repo, rev).get(name, [])


def _is_unborn(repo: Repo, rev: str) -> bool:
    """True when `rev` is HEAD or the current branch and that branch has no commit yet."""
    if git.rev_parse(repo, "HEAD"):
        return False
    branch = git.try_run(["symbolic-ref", "-q", "HEAD"], cwd=repo) or ""
    return rev in ("HEAD", branch, branch.removeprefix("refs/heads/"))


def folder_trees(repo: Repo, commit: str) -> dict[str, str]:
    """Name -> tree hash of every directory directly under deployments/ at `commit` (no blob needed)."""
    out = git.run(["ls-tree", "-z", commit, f"{DEPLOYMENTS_DIR}/"], cwd=repo)
    trees: dict[str, str] = {}
    for entry in out.split("\0"):
        if not entry:
            continue
        meta, _, path = entry.partition("\t")
        _mode, kind, oid = meta.split()
        if kind == "tree":
            trees[path.rsplit("/", 1)[-1]] = oid
    return trees


def folder_blobs(repo: Repo, commit: str | None, name: str) -> dict[str, tuple[str, str]]:
    """Files of deployments/<name>/ at `commit`: relative path -> (mode, blob id). No content read."""
    if commit is None:
        return {}
    prefix = deployment_path(name) + "/"
    out = git.run(["ls-tree", "-r", "-z", commit, "--", prefix], cwd=repo)
    blobs: dict[str, tuple[str, str]] = {}
    for entry in out.split("\0"):
        if not entry:
            continue
        meta, _, path = entry.partition("\t")
        mode, kind, oid = meta.split()
        if kind == "blob" and path.startswith(prefix):
            blobs[path[len(prefix):]] = (mode, oid)
    return blobs


def read_blob(repo: Repo, oid: str) -> bytes:
    return git.run(["cat-file", "blob", oid], cwd=repo, binary=True)  # type: ignore[return-value]


def extract_folder(repo: Repo, commit: str, name: str, cache_dir: str | os.PathLike[str]) -> Path:
    """`deployments/<name>/` as committed at `commit`, extracted once into `cache_dir`."""
    dest = Path(cache_dir) / "trees" / commit / name
    if dest.is_dir():
        return dest
    path = deployment_path(name)
    try:
        listing = git.run(["ls-tree", "-d", "--name-only", commit, path], cwd=repo)
        archive = git.run(["archive", "--format=tar", commit, path], cwd=repo, binary=True) if listing else b""
    except git.GitError as exc:
        raise DeploymentError(path, f"cannot read it at commit {commit[:7]}: {exc.stderr}") from None
    if not listing:
        raise DeploymentError(path, f"does not exist at commit {commit[:7]}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:  # type: ignore[arg-type]
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")  # no absolute paths, no links leaving the folder
            else:  # pragma: no cover - Pythons before the tarfile filters
                tar.extractall(staging)  # noqa: S202
        try:
            (staging / DEPLOYMENTS_DIR / name).rename(dest)
        except OSError:
            if not dest.is_dir():  # another thread extracted it first: fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
