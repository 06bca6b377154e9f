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
from typing import Union

from modelrepo import git, lfs
from modelrepo.format import (
    DATASETS_DIR,
    DEPLOYMENTS_DIR,
    ENDPOINTS_DIR,
    LOG_ARGS,
    SYMLINK_MODE,
    DeploymentError,
    Version,
    archived_marker_path,
    common_targets,
    deployment_of,
    deployment_path,
    link_target,
    parse_log,
)
from modelrepo.format.datasets import dataset_of
from modelrepo.format.endpoints import ENDPOINT_SUFFIXES

Repo = Union[str, os.PathLike[str]]  # not `|`: evaluated at import, which Python 3.9 cannot


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


def ls_tree(repo: Repo, commit: str, path: str, *, recursive: bool = False) -> list[tuple[str, str, str, str]]:
    """(mode, kind, object id, path) of the entries under `path` at `commit`; no blob is read."""
    out = git.run(["ls-tree", *(["-r"] if recursive else []), "-z", commit, "--", path], cwd=repo)
    entries = []
    for entry in out.split("\0"):
        if entry:
            meta, _, name = entry.partition("\t")
            mode, kind, oid = meta.split()
            entries.append((mode, kind, oid, name))
    return entries


def dataset_changes(repo: Repo, commit: str) -> list[tuple[str, frozenset[str]]]:
    """(commit, the datasets whose file it changed) of every commit on `commit`'s first-parent
    line that changed a `datasets/<name>.yaml`, newest first (no blob is read)."""
    out = git.run(["log", "--first-parent", "--no-renames", "--diff-merges=first-parent", "--name-only",
                   "-z", "--format=%x1e%H", commit, "--", f"{DATASETS_DIR}/"], cwd=repo)
    changes = []
    for record in filter(None, out.split("\x1e")):
        sha, _, names = record.partition("\0")
        changed = frozenset(filter(None, (dataset_of(p.lstrip("\n")) for p in names.split("\0"))))
        if changed:
            changes.append((sha.strip(), changed))
    return changes


def last_change(repo: Repo, since: str, commit: str, paths: list[str]) -> str | None:
    """The newest commit after `since` on `commit`'s first-parent line that changed one of
    `paths`, else None (no blob is read)."""
    out = git.run(["log", "-1", "--first-parent", "--format=%H", f"{since}..{commit}", "--", *paths], cwd=repo)
    return out.strip() or None


def folder_trees(repo: Repo, commit: str) -> dict[str, str]:
    """Name -> tree hash of every directory directly under deployments/ at `commit` (no blob needed)."""
    return {
        path.rsplit("/", 1)[-1]: oid
        for _mode, kind, oid, path in ls_tree(repo, commit, f"{DEPLOYMENTS_DIR}/")
        if kind == "tree"
    }


def folder_blobs(repo: Repo, commit: str | None, name: str) -> dict[str, tuple[str, str]]:
    """Files of deployments/<name>/ at `commit`: relative path -> (mode, blob id). No content read."""
    if commit is None:
        return {}
    prefix = deployment_path(name) + "/"
    return {
        path[len(prefix):]: (mode, oid)
        for mode, kind, oid, path in ls_tree(repo, commit, prefix, recursive=True)
        if kind == "blob" and path.startswith(prefix)
    }


def endpoint_texts(repo: Repo, commit: str) -> dict[str, str]:
    """{file name: text} of the YAML files directly under endpoints/ at `commit` (the input of
    modelrepo.format.endpoints.parse_files); {} when there is no endpoints/ folder."""
    texts: dict[str, str] = {}
    for _mode, kind, oid, path in ls_tree(repo, commit, f"{ENDPOINTS_DIR}/"):
        filename = path.rsplit("/", 1)[-1]
        if kind == "blob" and filename.endswith(ENDPOINT_SUFFIXES) and not filename.startswith("."):
            texts[filename] = read_blob(repo, oid).decode("utf-8", errors="replace")
    return texts


def read_blob(repo: Repo, oid: str) -> bytes:
    return git.run(["cat-file", "blob", oid], cwd=repo, binary=True)  # type: ignore[return-value]


def archived_folders(repo: Repo, commit: str, names: list[str] | set[str]) -> set[str]:
    """The deployments among `names` that carry the `.archived` marker at `commit` (no blob read)."""
    if not names:
        return set()
    paths = [archived_marker_path(name) for name in sorted(names)]
    out = git.run(["ls-tree", "-z", "--name-only", commit, "--", *paths], cwd=repo)
    return {deployment_of(p) or "" for p in out.split("\0") if p} - {""}


def linked_common_paths(repo: Repo, commit: str, name: str) -> list[str]:
    """The common/ paths that deployments/<name>/'s symbolic links point to at `commit`.

    Raises DeploymentError naming the first link that points anywhere but common/ (or inside its
    own folder), or whose target does not exist at `commit`.
    """
    prefix = deployment_path(name) + "/"
    links = {
        prefix + rel: read_blob(repo, oid).decode("utf-8", errors="replace")
        for rel, (mode, oid) in folder_blobs(repo, commit, name).items() if mode == SYMLINK_MODE
    }
    needed, problems = common_targets(links)
    for link, problem in sorted(problems.items()):
        raise DeploymentError(link, problem)
    if needed:
        out = git.run(["ls-tree", "-r", "-z", "--name-only", commit, "--", *needed], cwd=repo)
        present = [p for p in out.split("\0") if p]
        for path in needed:
            if not any(p == path or p.startswith(path + "/") for p in present):
                link = next(k for k, v in links.items() if link_target(k, v)[0] == path)
                raise DeploymentError(link, f"is a symbolic link to {links[link]!r}, but {path} does not exist at commit {commit[:7]}")
    return needed


def extract_folder(repo: Repo, commit: str, name: str, cache_dir: str | os.PathLike[str]) -> Path:
    """`deployments/<name>/` as committed at `commit`, extracted once into `cache_dir`.

    The folder is extracted in a repository-shaped tree (`<root>/deployments/<name>`) together
    with the common/ files its symbolic links point to, so Modelbit's shared-file links resolve;
    a link anywhere else is refused by name (DeploymentError). Returns the folder's path.
    """
    root = Path(cache_dir) / "trees" / commit / name
    dest = root / DEPLOYMENTS_DIR / name
    if dest.is_dir():
        return dest
    path = deployment_path(name)
    try:
        listing = git.run(["ls-tree", "-d", "--name-only", commit, path], cwd=repo)
        if not listing:
            raise DeploymentError(path, f"does not exist at commit {commit[:7]}")
        common = linked_common_paths(repo, commit, name)
        # LFS pointers stay pointers here (git's smudge filter would pass every object through
        # this process's memory); lfs.materialize copies the objects' files in their place.
        archive = git.run(["archive", "--format=tar", commit, path, *common], cwd=repo, binary=True,
                          env={**git.base_environment(), "GIT_LFS_SKIP_SMUDGE": "1"})
    except git.GitError as exc:
        raise DeploymentError(path, f"cannot read it at commit {commit[:7]}: {exc.stderr}") from None
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:  # type: ignore[arg-type]
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")  # no absolute paths, no links leaving the tree
            else:  # pragma: no cover - Pythons before the tarfile filters
                tar.extractall(staging)  # noqa: S202
        # Git LFS pointers become their objects' bytes (downloaded: only this folder's, at this
        # commit); a pointer whose object cannot be had stays, and loading names it.
        lfs.materialize(repo, commit, staging, [path, *common])
        try:
            staging.rename(root)
        except OSError:
            if not dest.is_dir():  # another thread extracted it first: fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
