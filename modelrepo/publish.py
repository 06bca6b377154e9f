"""The git steps of deploy(): commit one folder on a branch, update the work tree, push.

The commit is built in a private index (GIT_INDEX_FILE), so whatever the user has staged or
changed elsewhere in the repository is never committed and never touched; the branch moves with
a compare-and-swap `update-ref`, so a concurrent commit is never lost.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelrepo import git, lfs
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

    def git(self, *args: str, env: dict[str, str] | None = None, input: bytes | None = None,
            timeout: float = git.TIMEOUT) -> str:
        return git.run(args, cwd=self.root, env=env, input=input, timeout=timeout)


def remote_timeout() -> float:
    """Seconds a fetch, ls-remote or push of deploy() may take (MODELREPO_GIT_TIMEOUT)."""
    try:
        return float(os.environ.get("MODELREPO_GIT_TIMEOUT", git.TIMEOUT))
    except ValueError:
        return git.TIMEOUT


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


def hash_files(repo: WorkTree, paths: list[Path], write: bool = False, at: list[str] | None = None) -> list[str]:
    """Blob ids of `paths` (streamed by git, never read into memory here); `write` stores them.

    `at` (the files' repository paths) applies the attributes: a file tracked with Git LFS is
    stored as an LFS object and its blob is the pointer.
    """
    if not paths:
        return []
    try:
        in_lfs = lfs.tracked(repo.root, at) if at else set()
    except git.GitError as exc:
        raise _fail("reading .gitattributes failed", exc) from None
    plain = [p for p, rel in zip(paths, at or [None] * len(paths)) if rel not in in_lfs]
    ids: dict[Path, str] = {}
    if plain:
        args = ["hash-object", *(["-w"] if write else []), "--stdin-paths"]
        out = repo.git(*args, input=("\n".join(str(p) for p in plain) + "\n").encode())
        ids.update(zip(plain, out.split()))
    for path, rel in zip(paths, at or []):
        if rel in in_lfs:
            try:
                ids[path] = lfs.store(repo.root, path, rel)
            except lfs.LfsError as exc:
                raise RepoError(str(exc)) from None
    return [ids[p] for p in paths]


def _mode(path: Path) -> str:
    return "100755" if os.access(path, os.X_OK) else "100644"


def staged_files(staged: Path) -> list[Path]:
    return sorted(p for p in staged.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def same_folder(repo: WorkTree, staged: Path, committed: dict[str, tuple[str, str]]) -> bool:
    """True when `staged` holds exactly the committed files (same paths, modes and blob ids)."""
    files = staged_files(staged)
    rels = [p.relative_to(staged).as_posix() for p in files]
    if sorted(rels) != sorted(committed):
        return False
    prefix = deployment_path(staged.name) + "/"
    ids = hash_files(repo, files, at=[prefix + rel for rel in rels])
    return all(committed[rel] == (_mode(path), oid) for rel, path, oid in zip(rels, files, ids))


def stage_committed_files(repo: WorkTree, commit: str, name: str, rels: list[str], work: Path) -> None:
    """Write files of deployments/<name>/ at `commit` under `work` (as `work`/deployments/<name>/...).

    git writes them itself (checkout-index), so a large file never passes through this process.
    """
    if not rels:
        return
    prefix = deployment_path(name) + "/"
    with tempfile.TemporaryDirectory(prefix="modelrepo-index-") as tmp:
        env = {**git.base_environment(), "GIT_INDEX_FILE": os.path.join(tmp, "index")}
        try:
            repo.git("read-tree", commit, env=env)
            git.run(["--work-tree", str(work), "checkout-index", "-f", "--stdin"], cwd=repo.root, env=env,
                    input=("\n".join(prefix + r for r in rels) + "\n").encode())
        except git.GitError as exc:
            raise _fail("copying the folder's files failed", exc) from None


@dataclass
class Commit:
    sha: str
    changed: bool


class Moved(RepoError):
    """The branch moved between reading its tip and updating it (a concurrent deploy)."""


def commit_folder(
    repo: WorkTree,
    branch: str,
    base: str | None,
    expected: str | None,
    name: str,
    staged: Path,
    replaced: list[str],
    message: str,
) -> Commit:
    """Commit `staged` as deployments/<name>/ on `branch` (parent `base`), without the work tree.

    `replaced` are the folder-relative paths deploy regenerates; they are removed first, every
    other file of the folder at `base` stays as it is. The branch moves from `expected` (the tip
    read once, before anything was built) to the new commit, or not at all (`Moved`).
    """
    prefix = deployment_path(name) + "/"
    with tempfile.TemporaryDirectory(prefix="modelrepo-index-") as tmp:
        env = {**git.base_environment(), "GIT_INDEX_FILE": os.path.join(tmp, "index")}
        try:
            repo.git("read-tree", *([base] if base else ["--empty"]), env=env)
            if replaced:
                repo.git("rm", "--cached", "-q", "--ignore-unmatch", "--", *[prefix + p for p in replaced], env=env)
            files = staged_files(staged)
            ids = hash_files(repo, files, write=True,
                             at=[prefix + p.relative_to(staged).as_posix() for p in files])
            entries = [
                f"{_mode(path)} {oid}\t{prefix}{path.relative_to(staged).as_posix()}"
                for path, oid in zip(files, ids)
            ]
            if entries:
                repo.git("update-index", "--add", "--index-info", env=env,
                         input=("\n".join(entries) + "\n").encode())
            tree = repo.git("write-tree", env=env)
        except git.GitError as exc:
            raise _fail("preparing the commit failed", exc) from None
    if base and repo.git("rev-parse", f"{base}^{{tree}}") == tree:
        if base != expected:
            move_branch(repo, branch, base, expected)
        return Commit(base, changed=False)
    try:
        parents = ["-p", base] if base else []
        sha = repo.git("commit-tree", tree, *parents, "-m", message)
    except git.GitError as exc:
        raise _fail(f"committing to {branch} failed", exc) from None
    move_branch(repo, branch, sha, expected)
    return Commit(sha, changed=True)


def move_branch(repo: WorkTree, branch: str, new: str, expected: str | None) -> None:
    """`update-ref` as a compare-and-swap: only when the branch still points at `expected`."""
    try:
        repo.git("update-ref", f"refs/heads/{branch}", new, expected or _ZERO)
    except git.GitError as exc:
        raise Moved(
            f"{branch} moved while this deploy ran (another deploy or commit landed first): "
            f"{exc.stderr}"
        ) from None


def uncommitted_changes(repo: WorkTree, branch: str, paths: list[str]) -> list[str]:
    """Tracked files under `paths` changed in the work tree or index of `branch`.

    Empty when `branch` is not checked out (its work tree is not touched then).
    """
    if current_branch(repo) != branch or not paths:
        return []
    out = repo.git("status", "--porcelain", "--untracked-files=no", "--", *paths)
    return [line[3:] for line in out.splitlines() if line.strip()]


def changed_paths(repo: WorkTree, old: str | None, new: str | None) -> list[str]:
    """Files that differ between two commits (every file of `new` when `old` is None)."""
    if not new or old == new:
        return []
    if old is None:
        return repo.git("ls-tree", "-r", "--name-only", "-z", new).split("\0")[:-1] or []
    out = repo.git("diff", "--name-only", "--no-renames", "-z", old, new)
    return [p for p in out.split("\0") if p]


def sync_work_tree(repo: WorkTree, branch: str, old: str | None, new: str) -> None:
    """When `branch` is checked out, make its index and work tree show `new` for every file
    that differs from `old` (the deployed folder and whatever a fetch brought in)."""
    if current_branch(repo) != branch:
        return
    paths = changed_paths(repo, old, new)
    if not paths:
        return
    try:
        removed: set[str] = set()
        if old:
            out = repo.git("diff", "--name-only", "--no-renames", "-z", "--diff-filter=D", old, new)
            removed = {path for path in out.split("\0") if path}
            for path in removed:
                (repo.root / path).unlink(missing_ok=True)
        present = [p for p in paths if p not in removed]
        spec = ("\0".join(paths) + "\0").encode()
        _while_index_locked(lambda: repo.git("reset", "-q", new, "--pathspec-from-file=-",
                                             "--pathspec-file-nul", input=spec))
        if present:
            _while_index_locked(lambda: repo.git("checkout", new, "--pathspec-from-file=-", "--pathspec-file-nul",
                                                 input=("\0".join(present) + "\0").encode()))
    except git.GitError as exc:
        raise _fail("updating the work tree failed", exc) from None


def _while_index_locked(step: Callable[[], object], deadline: float = 30.0) -> None:
    """Run a git step that takes index.lock, waiting while a concurrent deploy holds the lock."""
    end = time.monotonic() + deadline
    while True:
        try:
            step()
            return
        except git.GitError as exc:
            if "index.lock" not in str(exc) or time.monotonic() > end:
                raise
        time.sleep(0.05)


# ---- the remote: fetch, rebase local-only deploy commits, push ----

def remote_ref(remote: str, branch: str) -> str:
    return f"refs/remotes/{remote}/{branch}"


def fetch_branch(repo: WorkTree, remote: str, branch: str) -> str | None:
    """Fetch `branch` from `remote`; its tip there, or None when the remote has no such branch."""
    try:
        listed = repo.git("ls-remote", "--heads", remote, f"refs/heads/{branch}", timeout=remote_timeout())
    except git.GitError as exc:
        raise _fail(f"reading {remote} failed", exc) from None
    if not listed.strip():
        return None
    try:
        repo.git("fetch", "-q", "--no-tags", remote, f"+refs/heads/{branch}:{remote_ref(remote, branch)}",
                 timeout=remote_timeout())
    except git.GitError as exc:
        raise _fail(f"fetching {branch} from {remote} failed", exc) from None
    return git.rev_parse(repo.root, remote_ref(remote, branch))


def remote_default_branch(repo: WorkTree, remote: str) -> str | None:
    """The branch a clone of `remote` starts on: its HEAD when that branch exists, else main,
    master, or its only branch."""
    try:
        out = repo.git("ls-remote", "--symref", remote, "HEAD", "refs/heads/*", timeout=remote_timeout())
    except git.GitError as exc:
        raise _fail(f"reading {remote} failed", exc) from None
    return default_branch_of(out)


def default_branch_of(ls_remote: str) -> str | None:
    """The default branch from `git ls-remote --symref <url> HEAD refs/heads/*` output."""
    head = None
    heads = []
    for line in ls_remote.splitlines():
        if line.startswith("ref: ") and line.endswith("\tHEAD"):
            head = line[5:].split("\t")[0].removeprefix("refs/heads/")
        elif "\trefs/heads/" in line:
            heads.append(line.split("\trefs/heads/", 1)[1])
    if head in heads:
        return head
    for name in ("main", "master"):
        if name in heads:
            return name
    return heads[0] if len(heads) == 1 else None


def is_ancestor(repo: WorkTree, old: str, new: str) -> bool:
    return git.try_run(["merge-base", "--is-ancestor", old, new], cwd=repo.root) is not None


def local_only(repo: WorkTree, local: str, remote: str) -> list[str]:
    """Commits on `local` that `remote` does not have, oldest first."""
    out = repo.git("rev-list", "--reverse", "--first-parent", local, f"^{remote}")
    return out.split()


def touched_folders(paths: list[str]) -> set[str]:
    """`deployments/<Name>` for deployment files, the path itself for anything else."""
    folders = set()
    for path in paths:
        parts = path.split("/")
        folders.add("/".join(parts[:2]) if len(parts) > 2 and parts[0] == "deployments" else path)
    return folders


class Conflict(RepoError):
    """Local commits not pushed yet and the remote changed the same folder."""


def rebase_onto(repo: WorkTree, commits: list[str], onto: str, remote_label: str, merge_base: str) -> str:
    """Replay `commits` (oldest first) on `onto`; the new tip. Raises Conflict naming the folders
    changed on both sides, or when a commit does not apply cleanly."""
    theirs = touched_folders(changed_paths(repo, merge_base, onto))
    tip = onto
    for commit in commits:
        parent = repo.git("rev-parse", f"{commit}^")
        ours = touched_folders(changed_paths(repo, parent, commit))
        both = sorted(ours & theirs)
        if both:
            raise Conflict(_conflict_text(both, commit, remote_label))
        diff = repo.git("diff", "--binary", "--no-renames", parent, commit) + "\n"
        with tempfile.TemporaryDirectory(prefix="modelrepo-index-") as tmp:
            env = {**git.base_environment(), "GIT_INDEX_FILE": os.path.join(tmp, "index")}
            try:
                repo.git("read-tree", tip, env=env)
                repo.git("apply", "--cached", "--whitespace=nowarn", env=env, input=diff.encode())
                tree = repo.git("write-tree", env=env)
            except git.GitError:
                raise Conflict(_conflict_text(sorted(ours), commit, remote_label)) from None
        author = repo.git("log", "-1", "--format=%an%x00%ae%x00%ad", commit).split("\0")
        message = repo.git("log", "-1", "--format=%B", commit)
        env = {**git.base_environment(), "GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1],
               "GIT_AUTHOR_DATE": author[2]}
        tip = repo.git("commit-tree", tree, "-p", tip, "-m", message, env=env)
    return tip


def _conflict_text(paths: list[str], commit: str, remote_label: str) -> str:
    return (
        f"{', '.join(paths)} changed on {remote_label} and in your local commit {commit[:7]}, "
        f"which is not pushed yet; nothing was committed. To keep the remote's version and "
        f"deploy again: `git reset --keep {remote_label}`, then deploy(); to merge by hand: "
        f"`git pull --rebase`."
    )


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
    """Push `branch` (never forced: a remote that moved since the fetch rejects it), its Git LFS
    objects first (the ref must never name a pointer whose object is not on the server)."""
    if lfs.has_objects(repo.root):
        try:
            lfs.push(repo.root, remote, f"refs/heads/{branch}", timeout=remote_timeout())
        except lfs.LfsError as exc:
            raise RepoError(str(exc)) from None
    try:
        repo.git("push", "--porcelain", remote, f"refs/heads/{branch}:refs/heads/{branch}",
                 timeout=remote_timeout())
    except git.GitError as exc:
        raise _fail(f"pushing {branch} to {remote} failed", exc) from None
