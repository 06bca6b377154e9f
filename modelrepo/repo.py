"""Git operations of deploy(): commit one folder on a branch, sync the work tree, push.

The commit is built in a private index (GIT_INDEX_FILE), so whatever the user has staged or
changed elsewhere in the repository is never committed and never touched; the branch moves with
a compare-and-swap `update-ref`, so a concurrent commit is never lost.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import git

from modelrepo.history import DEPLOYMENTS_DIR

_ZERO = "0" * 40
_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")


class RepoError(Exception):
    """A git problem the user can act on."""


def scrub(text: str) -> str:
    """Remove user:password@ from URLs in git messages (credentials are never shown)."""
    return _CREDENTIALS.sub(r"\1***@", text)


def _fail(action: str, exc: git.GitCommandError) -> RepoError:
    detail = exc.stderr.strip() if isinstance(exc.stderr, str) else str(exc)
    detail = detail.removeprefix("stderr:").strip().strip("'").strip()
    return RepoError(scrub(f"{action}: {detail}"))


def open_repo(path: str | os.PathLike[str]) -> git.Repo:
    """The work tree containing `path`, or a clear error."""
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise RepoError(
            f"{os.fspath(path)} is not inside a git repository; create one with "
            f"`modelrepo init {os.fspath(path)}`"
        ) from None
    if repo.bare or not repo.working_tree_dir:
        raise RepoError(f"{os.fspath(path)} is a bare repository; deploy into a clone of it")
    return repo


def current_branch(repo: git.Repo) -> str | None:
    """The checked-out branch name (also when it has no commit yet), None when detached."""
    try:
        ref = repo.git.symbolic_ref("-q", "HEAD")
    except git.GitCommandError:
        return None
    return ref.removeprefix("refs/heads/")


def branch_tip(repo: git.Repo, branch: str) -> str | None:
    try:
        return repo.git.rev_parse("-q", "--verify", f"refs/heads/{branch}^{{commit}}")
    except git.GitCommandError:
        return None


def head_commit(repo: git.Repo) -> str | None:
    try:
        return repo.git.rev_parse("-q", "--verify", "HEAD^{commit}")
    except git.GitCommandError:
        return None


def check_branch_name(repo: git.Repo, branch: str) -> None:
    try:
        repo.git.check_ref_format("--branch", branch)
    except git.GitCommandError:
        raise RepoError(f"{branch!r} is not a valid branch name") from None


def folder_files(repo: git.Repo, commit: str | None, name: str) -> dict[str, bytes]:
    """Files of deployments/<name>/ at `commit` (relative path -> content)."""
    if commit is None:
        return {}
    tree = repo.commit(commit).tree
    try:
        folder = tree / f"{DEPLOYMENTS_DIR}/{name}"
    except KeyError:
        return {}
    prefix = len(folder.path) + 1
    return {
        blob.path[prefix:]: blob.data_stream.read()
        for blob in folder.traverse()
        if blob.type == "blob"
    }


@dataclass
class Commit:
    sha: str
    changed: bool


def commit_folder(
    repo: git.Repo,
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
    prefix = f"{DEPLOYMENTS_DIR}/{name}/"
    old_tip = branch_tip(repo, branch)
    with tempfile.TemporaryDirectory(prefix="modelrepo-index-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        g = repo.git
        try:
            if base:
                g.read_tree(base, env=env)
            else:
                g.read_tree("--empty", env=env)
            if replaced:
                g.rm("--cached", "-q", "--ignore-unmatch", "--", *[prefix + p for p in replaced], env=env)
            entries = []
            files = [p for p in staged.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
            for path in sorted(files):
                rel = path.relative_to(staged).as_posix()
                sha = g.hash_object("-w", "--", str(path))
                mode = "100755" if os.access(path, os.X_OK) else "100644"
                entries.append(f"{mode} {sha}\t{prefix}{rel}")
            if entries:
                index_info = Path(tmp) / "index-info"
                index_info.write_text("\n".join(entries) + "\n", encoding="utf-8")
                with open(index_info, "rb") as stdin:
                    g.update_index("--add", "--index-info", istream=stdin, env=env)
            tree = g.write_tree(env=env)
        except git.GitCommandError as exc:
            raise _fail("preparing the commit failed", exc) from None
    if base and repo.git.rev_parse(f"{base}^{{tree}}") == tree:
        return Commit(base, changed=False)
    try:
        parents = ["-p", base] if base else []
        sha = repo.git.commit_tree(tree, *parents, "-m", message)
        repo.git.update_ref(f"refs/heads/{branch}", sha, old_tip or _ZERO)
    except git.GitCommandError as exc:
        raise _fail(f"committing to {branch} failed", exc) from None
    return Commit(sha, changed=True)


def uncommitted_changes(repo: git.Repo, branch: str, name: str) -> list[str]:
    """Tracked files of deployments/<name>/ changed in the work tree or index of `branch`.

    Empty when `branch` is not checked out (its work tree is not touched then).
    """
    if current_branch(repo) != branch:
        return []
    out = repo.git.status("--porcelain", "--untracked-files=no", "--", f"{DEPLOYMENTS_DIR}/{name}")
    return [line[3:] for line in out.splitlines() if line.strip()]


def sync_work_tree(repo: git.Repo, branch: str, old: str | None, new: str, name: str) -> None:
    """When `branch` is checked out, make its index and work tree show the new folder."""
    if current_branch(repo) != branch:
        return
    folder = f"{DEPLOYMENTS_DIR}/{name}"
    try:
        if old:
            removed = repo.git.diff("--name-only", "--no-renames", "--diff-filter=D", old, new, "--", folder)
            for path in filter(None, removed.splitlines()):
                (Path(repo.working_tree_dir) / path).unlink(missing_ok=True)
        repo.git.reset("-q", new, "--", folder)
        repo.git.checkout(new, "--", folder)
    except git.GitCommandError as exc:
        raise _fail(f"updating the work tree of {folder} failed", exc) from None


def push_remote(repo: git.Repo, branch: str) -> str | None:
    """The remote deploys push to: the branch's upstream, else origin, else the only one."""
    reader = repo.config_reader()
    section = f'branch "{branch}"'
    if reader.has_option(section, "remote"):
        remote = reader.get_value(section, "remote")
        if remote != ".":
            return str(remote)
    names = [r.name for r in repo.remotes]
    if "origin" in names:
        return "origin"
    return names[0] if len(names) == 1 else None


def push(repo: git.Repo, remote: str, branch: str) -> None:
    try:
        repo.git.push("--porcelain", remote, f"refs/heads/{branch}:refs/heads/{branch}")
    except git.GitCommandError as exc:
        raise _fail(f"pushing {branch} to {remote} failed", exc) from None
