"""The git steps of deploy(): commit one folder on a branch, update the work tree, push.

The commit is built in a private index (GIT_INDEX_FILE), so whatever the user has staged or
changed elsewhere in the repository is never committed and never touched; the branch moves with
a compare-and-swap `update-ref`, so a concurrent commit is never lost.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modelrepo import git
from modelrepo.format import deployment_path

_ZERO = "0" * 40


class RepoError(Exception):
    """A git problem the user can act on."""


def _fail(action: str, exc: git.GitError) -> RepoError:
    return RepoError(f"{action}: {exc.stderr}")


@dataclass(frozen=True)
class WorkTree:
    """A non-bare git repository: `root` is the top of its work tree."""

    root: Path

    def git(self, *args: str, env: dict[str, str] | None = None, input: bytes | None = None) -> str:
        return git.run(args, cwd=self.root, env=env, input=input)


def open_repo(path: str | os.PathLike[str]) -> WorkTree:
    """The work tree containing `path`, or a clear error."""
    where = Path(path)
    if not where.exists():
        raise RepoError(f"{os.fspath(path)}: no such directory; create a repository with `modelrepo init {os.fspath(path)}`")
    bare = git.try_run(["rev-parse", "--is-bare-repository"], cwd=where)
    if bare is None:
        raise RepoError(
            f"{os.fspath(path)} is not inside a git repository; create one with "
            f"`modelrepo init {os.fspath(path)}`"
        )
    if bare == "true":
        raise RepoError(f"{os.fspath(path)} is a bare repository; deploy into a clone of it")
    top = git.run(["rev-parse", "--show-toplevel"], cwd=where)
    return WorkTree(Path(top))


def current_branch(repo: WorkTree) -> str | None:
    """The checked-out branch name (also when it has no commit yet), None when detached."""
    ref = git.try_run(["symbolic-ref", "-q", "HEAD"], cwd=repo.root)
    return ref.removeprefix("refs/heads/") if ref else None


def branch_tip(repo: WorkTree, branch: str) -> str | None:
    return git.rev_parse(repo.root, f"refs/heads/{branch}")


def head_commit(repo: WorkTree) -> str | None:
    return git.rev_parse(repo.root, "HEAD")


def check_branch_name(repo: WorkTree, branch: str) -> None:
    if git.try_run(["check-ref-format", "--branch", branch], cwd=repo.root) is None:
        raise RepoError(f"{branch!r} is not a valid branch name")


@dataclass
class Commit:
    sha: str
    changed: bool


def commit_folder(
    repo: WorkTree,
    branch: str,
    base: str | None,
    name: str,
    staged: Path,
    replaced: list[str],
    message: str,
) -> Commit:
    """Commit `staged` as deployments/<name>/ on `branch` (parent `base`), without the work tree.

    `replaced` are the folder-relative paths deploy regenerates; they are removed first, every
    other file of the folder at `base` stays as it is.
    """
    prefix = deployment_path(name) + "/"
    old_tip = branch_tip(repo, branch)
    with tempfile.TemporaryDirectory(prefix="modelrepo-index-") as tmp:
        env = {**git.base_environment(), "GIT_INDEX_FILE": os.path.join(tmp, "index")}
        try:
            repo.git("read-tree", *([base] if base else ["--empty"]), env=env)
            if replaced:
                repo.git("rm", "--cached", "-q", "--ignore-unmatch", "--", *[prefix + p for p in replaced], env=env)
            entries = []
            files = [p for p in staged.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
            for path in sorted(files):
                rel = path.relative_to(staged).as_posix()
                sha = repo.git("hash-object", "-w", "--", str(path))
                mode = "100755" if os.access(path, os.X_OK) else "100644"
                entries.append(f"{mode} {sha}\t{prefix}{rel}")
            if entries:
                repo.git("update-index", "--add", "--index-info", env=env,
                         input=("\n".join(entries) + "\n").encode())
            tree = repo.git("write-tree", env=env)
        except git.GitError as exc:
            raise _fail("preparing the commit failed", exc) from None
    if base and repo.git("rev-parse", f"{base}^{{tree}}") == tree:
        return Commit(base, changed=False)
    try:
        parents = ["-p", base] if base else []
        sha = repo.git("commit-tree", tree, *parents, "-m", message)
        repo.git("update-ref", f"refs/heads/{branch}", sha, old_tip or _ZERO)
    except git.GitError as exc:
        raise _fail(f"committing to {branch} failed", exc) from None
    return Commit(sha, changed=True)


def uncommitted_changes(repo: WorkTree, branch: str, name: str) -> list[str]:
    """Tracked files of deployments/<name>/ changed in the work tree or index of `branch`.

    Empty when `branch` is not checked out (its work tree is not touched then).
    """
    if current_branch(repo) != branch:
        return []
    out = repo.git("status", "--porcelain", "--untracked-files=no", "--", deployment_path(name))
    return [line[3:] for line in out.splitlines() if line.strip()]


def sync_work_tree(repo: WorkTree, branch: str, old: str | None, new: str, name: str) -> None:
    """When `branch` is checked out, make its index and work tree show the new folder."""
    if current_branch(repo) != branch:
        return
    folder = deployment_path(name)
    try:
        if old:
            removed = repo.git("diff", "--name-only", "--no-renames", "--diff-filter=D", old, new, "--", folder)
            for path in filter(None, removed.splitlines()):
                (repo.root / path).unlink(missing_ok=True)
        repo.git("reset", "-q", new, "--", folder)
        repo.git("checkout", new, "--", folder)
    except git.GitError as exc:
        raise _fail(f"updating the work tree of {folder} failed", exc) from None


def push_remote(repo: WorkTree, branch: str) -> str | None:
    """The remote deploys push to: the branch's upstream, else origin, else the only one."""
    remote = git.try_run(["config", "--get", f"branch.{branch}.remote"], cwd=repo.root)
    if remote and remote != ".":
        return remote
    names = (git.try_run(["remote"], cwd=repo.root) or "").split()
    if "origin" in names:
        return "origin"
    return names[0] if len(names) == 1 else None


def push(repo: WorkTree, remote: str, branch: str) -> None:
    try:
        repo.git("push", "--porcelain", remote, f"refs/heads/{branch}:refs/heads/{branch}")
    except git.GitError as exc:
        raise _fail(f"pushing {branch} to {remote} failed", exc) from None
