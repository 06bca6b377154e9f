"""Git LFS: large model files as LFS objects, stored, pushed and downloaded by git-lfs.

A repository made by `modelrepo init` (when git-lfs is installed) tracks `data/*.pkl` and
common model-file types with LFS (`.gitattributes`). Then:
- deploy() stores a tracked file through git's clean filter (git streams the file into
  git-lfs, which writes the object under `.git/lfs/objects`; git stores the small pointer), and
  pushes the LFS objects before the branch;
- `serve` and the pods' fetch extract a folder from git (pointers) and put each object's bytes
  in its pointer's place, downloading only the objects of that folder at that commit.
A pointer whose object cannot be had stays a pointer; `modelrepo.format.stubs` names it.
All git-lfs commands run through `modelrepo.git.run`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from modelrepo import git

# Tracked by `modelrepo init`: deploy()'s pickled values and files that are large by nature.
TRACKED_PATTERNS = (
    "deployments/**/data/*.pkl",
    "*.pt", "*.pth", "*.onnx", "*.safetensors", "*.joblib", "*.h5", "*.npy", "*.npz", "*.parquet",
)
ATTRIBUTES = (
    "# Git LFS (written by `modelrepo init`): these files are stored as LFS objects, git keeps\n"
    "# a small pointer. See docs/repo-format.md.\n"
    + "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in TRACKED_PATTERNS)
)
# The filter git runs for `filter=lfs` paths, given on the command line so deploy() works
# in a clone whose user never ran `git lfs install`.
_FILTER_CONFIG = (
    "-c", "filter.lfs.clean=git-lfs clean -- %f",
    "-c", "filter.lfs.smudge=git-lfs smudge -- %f",
    "-c", "filter.lfs.process=git-lfs filter-process",
    "-c", "filter.lfs.required=true",
)
_POINTER_HEAD = b"version https://git-lfs.github.com/spec/v1\n"
_OID = re.compile(rb"^oid sha256:([0-9a-f]{64})$", re.MULTILINE)
_MAX_POINTER = 1024


class LfsError(Exception):
    """A Git LFS step failed; the message (redacted) says which and why."""


def available() -> bool:
    """True when git-lfs is installed (`git lfs` works)."""
    return git.try_run(["lfs", "version"], timeout=30) is not None


def install_local(root: str | os.PathLike[str]) -> None:
    """`git lfs install --local`: the filter config and the hooks (pre-push uploads objects)."""
    git.run(["lfs", "install", "--local"], cwd=root, timeout=60)


def tracked(root: str | os.PathLike[str], paths: list[str]) -> set[str]:
    """Which repository-relative `paths` the attributes store with LFS (`filter=lfs`)."""
    if not paths:
        return set()
    out = git.run(["check-attr", "-z", "--stdin", "filter"], cwd=root,
                  input=("\0".join(paths) + "\0").encode())
    fields = out.split("\0")
    return {fields[i] for i in range(0, len(fields) - 2, 3) if fields[i + 2] == "lfs"}


def store(root: str | os.PathLike[str], file: Path, path: str) -> str:
    """Blob id of `file` committed at `path` through the LFS clean filter (the object is written
    under .git/lfs/objects, the pointer into git). git streams the file to git-lfs."""
    try:
        return git.run([*_FILTER_CONFIG, "hash-object", "-w", f"--path={path}", str(file)], cwd=root)
    except git.GitError as exc:
        hint = "" if available() else " (git-lfs is not installed: install it, e.g. Debian's git-lfs package)"
        raise LfsError(f"storing {path} with Git LFS failed: {exc}{hint}") from None


def has_objects(root: str | os.PathLike[str]) -> bool:
    """True when the repository holds LFS objects (so a push must upload them)."""
    objects = _objects_dir(root)
    return objects.is_dir() and any(objects.iterdir())


def push(root: str | os.PathLike[str], remote: str, ref: str, timeout: float) -> None:
    """Upload the LFS objects of commits on `ref` the remote lacks (before the ref itself)."""
    try:
        git.run(["lfs", "push", remote, ref], cwd=root, timeout=timeout)
    except git.GitError as exc:
        raise LfsError(f"uploading Git LFS objects to {remote} failed: {exc}") from None


def pointer_oid(path: Path) -> str | None:
    """The object id if `path` is an LFS pointer file, else None."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_POINTER:
            return None
        head = path.read_bytes()
    except OSError:
        return None
    match = _OID.search(head) if head.startswith(_POINTER_HEAD) else None
    return match.group(1).decode() if match else None


def pointers(folder: Path) -> dict[Path, str]:
    """Every LFS pointer file under `folder` and its object id."""
    found = {}
    for path in sorted(folder.rglob("*")):
        oid = pointer_oid(path)
        if oid:
            found[path] = oid
    return found


def _object_file(objects: Path, oid: str) -> Path:
    """Where git-lfs keeps object `oid` in the store `objects` (.git/lfs/objects)."""
    return objects / oid[:2] / oid[2:4] / oid


def _objects_dir(root: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Path:
    found = git.run(["rev-parse", "--git-path", "lfs/objects"], cwd=root, env=env)
    path = Path(found)
    return path if path.is_absolute() else Path(root) / path


def default_remote(root: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> str | None:
    """The remote git-lfs downloads from: lfs.remote's, else origin, else the only remote."""
    remotes = (git.try_run(["remote"], cwd=root, env=env) or "").split()
    configured = git.try_run(["config", "lfs.remote"], cwd=root, env=env)
    if configured and configured in remotes:
        return configured
    if "origin" in remotes:
        return "origin"
    return remotes[0] if len(remotes) == 1 else None


def _lfs_url_config(root: str | os.PathLike[str], commit: str, env: Mapping[str, str] | None) -> list[str]:
    """`-c lfs.url=...` from `.lfsconfig` at `commit`: a sparse or bare checkout has no such file
    in a work tree, where git-lfs looks for it."""
    url = git.try_run(["config", "--blob", f"{commit}:.lfsconfig", "lfs.url"], cwd=root, env=env)
    return ["-c", f"lfs.url={url}"] if url else []


def materialize(
    root: str | os.PathLike[str],
    commit: str,
    folder: Path,
    include: list[str],
    *,
    env: Mapping[str, str] | None = None,
    creds: git.Credentials | None = None,
    move: bool = False,
) -> list[str]:
    """Put the bytes of every LFS object in place of its pointer under `folder` (extracted from
    `commit` of the repository at `root`). Objects not stored locally are downloaded first, only
    those of `include` (repository paths) at `commit`. `move` takes the objects out of the
    store instead of copying them (a checkout whose .git is removed next: no second copy on
    disk). Returns the paths still pointers (their object is missing: on the server, or git-lfs
    is not installed), for the caller to name. `env` is used for every git command (a pod's
    checkout belongs to another uid: its environment says the directory is safe)."""
    found = pointers(folder)
    if not found:
        return []
    objects = _objects_dir(root, env)
    missing = [oid for oid in found.values() if not _object_file(objects, oid).is_file()]
    if missing and available():
        remote = default_remote(root, env)
        # few, short retries: a missing object must be named soon (serve polls, a pod restarts)
        retries = ["-c", "lfs.transfer.maxretries=2", "-c", "lfs.transfer.maxretrydelay=2"]
        args = [*_lfs_url_config(root, commit, env), *retries, "lfs", "fetch", f"--include={','.join(include)}", "--exclude="]
        # on failure the pointers stay; the caller names each with its oid
        with contextlib.suppress(git.GitError):
            git.run([*args, *([remote, commit] if remote else [])], cwd=root, env=env, creds=creds)
    left = []
    for path, oid in found.items():
        source = _object_file(objects, oid)
        if source.is_file():
            mode = path.stat().st_mode & 0o777
            staged = path.with_name(f".{path.name}.lfs-tmp")
            if move and list(found.values()).count(oid) == 1:
                shutil.move(source, staged)
            else:
                shutil.copyfile(source, staged)  # streamed (sendfile), never read whole
            os.chmod(staged, mode)
            staged.replace(path)
        else:
            left.append(str(path))
    return left
