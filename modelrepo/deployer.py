"""`modelrepo.deploy(fn)`: capture a function, check it in a fresh Python, commit its folder, push.

Order matters for the promise "a failed deploy leaves the repository exactly as it was": the
folder is built and tested in a temporary staging directory outside the repository, and only
then committed (through a private index) and copied into the work tree.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelrepo import git, publish, requirements
from modelrepo.capture import CaptureError, capture
from modelrepo.doctest_gate import run_gate
from modelrepo.format import (
    DEPLOYMENTS_DIR,
    METADATA_FILE,
    NAME_PATTERN,
    NAME_RULE,
    deployment_path,
    name_problem,
    running_python,
)
from modelrepo.repository import folder_blobs, read_blob, versions_of
from modelrepo.source_writer import GENERATED, write_folder

_branch_override: str | None = None


class DeployError(Exception):
    """deploy() refused or failed; the message says what to fix and whether anything was committed
    (only a failed push leaves a local commit, and then the message says how to retry)."""


@dataclass(frozen=True)
class DeployResult:
    """What deploy() made."""

    name: str
    commit: str
    version: int
    branch: str
    pushed_to: str | None = None
    changed: bool = True

    def __str__(self) -> str:
        what = f"Deployed {self.name} version {self.version} (commit {self.commit[:7]}) on {self.branch}"
        if not self.changed:
            what = f"{self.name} is unchanged: version {self.version} (commit {self.commit[:7]}) on {self.branch}"
        return what + (f", pushed to {self.pushed_to}" if self.pushed_to else "")


def switch_branch(name: str) -> None:
    """Send later deploy() calls of this process to branch `name`.

    A branch that does not exist yet is created on the first deploy from the remote's branch of
    that name, else from the remote's default branch (never from a stale local HEAD).
    """
    global _branch_override
    if not isinstance(name, str) or not name.strip():
        raise DeployError("switch_branch() needs a branch name")
    _branch_override = name.strip()


def current_branch(repo: str = ".") -> str | None:
    """The branch deploy(repo=repo) would commit to: switch_branch()'s, else the checked-out one."""
    if _branch_override:
        return _branch_override
    try:
        return publish.current_branch(publish.open_repo(repo))
    except publish.RepoError as exc:
        raise DeployError(str(exc)) from None


def _python_version(requested: str | None) -> str:
    if requested is None:
        return running_python()
    text = str(requested).strip()
    parts = text.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise DeployError(f"python_version must look like \"3.11\", not {requested!r}")
    return ".".join(parts[:2])


def _previous_metadata(repo: publish.WorkTree, files: dict[str, tuple[str, str]]) -> dict[str, Any] | None:
    if METADATA_FILE not in files:
        return None
    try:
        data = yaml.safe_load(read_blob(repo.root, files[METADATA_FILE][1]) or b"")
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _stage_kept_files(
    repo: publish.WorkTree, base: str | None, name: str, files: dict[str, tuple[str, str]], work: Path
) -> list[str]:
    """Put the folder's hand-added files into the staging folder; return the paths deploy regenerates."""
    replaced = [rel for rel in files if rel in GENERATED or (rel.startswith("data/") and rel.endswith(".pkl"))]
    kept = [rel for rel in files if rel not in replaced]
    if base:
        publish.stage_committed_files(repo, base, name, kept, work)
    return replaced


def _format_failures(name: str, failures: list[Any]) -> str:
    parts = [f"{name}: {len(failures)} docstring example(s) failed; nothing was committed"]
    for f in failures:
        parts.append(f"  example:  >>> {f.example}\n  expected: {f.expected or '(nothing)'}\n  got:      {f.got or '(nothing)'}")
    return "\n".join(parts)


def deploy(
    fn: Any,
    repo: str = ".",
    name: str | None = None,
    branch: str | None = None,
    message: str | None = None,
    push: bool = True,
    python_version: str | None = None,
    batch: bool = False,
    *,
    python_packages: list[str] | None = None,
    system_packages: list[str] | None = None,
    extra_files: list[str] | dict[str, str] | None = None,
    dataframe_mode: bool = False,
    example_dataframe: Any = None,
    init: bool = False,
) -> DeployResult:
    """Write `fn` as deployments/<name>/ (docs/repo-format.md), check it, commit it and push it.

    With a remote, the branch is fetched first and the commit is built on the remote's tip
    (local deploy commits not pushed yet are replayed on it when they touch other folders); the
    version and commit reported are the remote's. A failed push raises DeployError and keeps
    the local commit; `push=False` commits locally only (no fetch, no push).
    The docstring examples of `fn` are run in a fresh Python against the files about to be
    committed; a failure raises DeployError and leaves the repository untouched.
    `batch=True` declares that `fn` takes a list of inputs and returns a list of outputs.
    As Modelbit's `mb.deploy`: `python_packages` (requirement lines, added to the pins of what
    `fn` imports, replacing the pin of the same package), `system_packages`, `python_version`,
    `extra_files` (paths, or {local path: path in the folder}), `dataframe_mode=True` with
    `example_dataframe` (its columns become `dataframeModeColumns`).
    `init=True` deploys into a repository that is not a model repository yet (no deployments/).
    """
    options = _Options(
        python_packages=_strings("python_packages", python_packages),
        system_packages=_strings("system_packages", system_packages),
        extra_files=extra_files,
        dataframe_columns=_dataframe_columns(dataframe_mode, example_dataframe),
        init=init,
    )
    try:
        return _deploy(fn, repo, name, branch, message, push, python_version, batch, options)
    except (CaptureError, publish.RepoError, git.GitError) as exc:
        raise DeployError(str(exc)) from None


@dataclass(frozen=True)
class _Options:
    """The Modelbit-style extras of one deploy() call."""

    python_packages: list[str] | None = None
    system_packages: list[str] | None = None
    extra_files: list[str] | dict[str, str] | None = None
    dataframe_columns: list[str] | None = None
    init: bool = False


def _strings(what: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) and v.strip() for v in value):
        raise DeployError(f"{what} must be a list of strings, like [\"name==1.0\"], not {value!r}")
    return [v.strip() for v in value]


def _dataframe_columns(dataframe_mode: bool, example: Any) -> list[str] | None:
    if not dataframe_mode:
        if example is not None:
            raise DeployError("example_dataframe is only used with dataframe_mode=True")
        return None
    columns = getattr(example, "columns", None)
    if columns is None:
        raise DeployError(
            "dataframe_mode=True needs example_dataframe=<a pandas DataFrame with the columns "
            "the function takes>"
        )
    return [str(c) for c in columns]


def _name_problem(name: str) -> str | None:
    problem = name_problem(name)
    if problem is None and not NAME_PATTERN.fullmatch(name):  # "Name\n" passes a `$` anchor
        problem = f"deployment name {name!r} must match {NAME_RULE}"
    return problem


def _check_name_length(root: Path, name: str) -> None:
    try:
        limit = os.pathconf(root, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if len(os.fsencode(name)) > limit:
        raise DeployError(
            f"deployment name {name[:20]}... is {len(os.fsencode(name))} bytes long; the filesystem "
            f"of {root} allows at most {limit}"
        )


def _is_model_repository(repo: publish.WorkTree) -> bool:
    """deployments/ in the work tree or at HEAD, or `modelrepo init` made it."""
    if (repo.root / DEPLOYMENTS_DIR).is_dir():
        return True
    if git.try_run(["config", "--bool", "modelrepo.repository"], cwd=repo.root) == "true":
        return True
    return git.try_run(["cat-file", "-e", f"HEAD:{DEPLOYMENTS_DIR}"], cwd=repo.root) is not None


@dataclass(frozen=True)
class _Target:
    """Where a deploy goes: the work tree, the branch, its tip as read once (the compare-and-swap's
    expected value), the commit the new one builds on, and the remote with its tip."""

    repo: publish.WorkTree
    branch: str
    local: str | None
    base: str | None
    remote: str | None
    remote_tip: str | None


def _target(repo_path: str, name: str, branch: str | None, push: bool, init: bool) -> _Target:
    repo = publish.open_repo(repo_path)
    if not init and not _is_model_repository(repo):
        raise DeployError(
            f"{repo.root} is not a model repository (no {DEPLOYMENTS_DIR}/, not made by `modelrepo "
            f"init`); deploy() would write {repo.root / deployment_path(name)}. Pass repo=<a model "
            f"repository> (make one with `modelrepo init <dir>` or `modelrepo clone <url>`), or "
            f"deploy(..., init=True) to use this repository; nothing was written"
        )
    _check_name_length(repo.root, name)
    branch = branch or _branch_override or publish.current_branch(repo)
    if not branch:
        raise DeployError("HEAD is detached: pass branch=... or call modelrepo.switch_branch()")
    publish.check_branch_name(repo, branch)
    remote = publish.push_remote(repo, branch) if push else None
    local = publish.branch_tip(repo, branch)
    base, remote_tip = _base(repo, branch, remote, local)
    paths = [deployment_path(name), *publish.changed_paths(repo, local, base)]
    changed = publish.uncommitted_changes(repo, branch, paths)
    if changed:
        raise DeployError(
            f"{name}: uncommitted changes in {', '.join(changed)} would be overwritten; "
            "commit or discard them first, nothing was written"
        )
    return _Target(repo, branch, local, base, remote, remote_tip)


def _base(
    repo: publish.WorkTree, branch: str, remote: str | None, local: str | None
) -> tuple[str | None, str | None]:
    """(the commit to build on, the remote branch's tip). Fetches first when there is a remote."""
    if remote is None:
        return local or publish.head_commit(repo), None
    try:
        theirs = publish.fetch_branch(repo, remote, branch)
    except publish.RepoError as exc:
        raise DeployError(
            f"{exc}; nothing was written. deploy() builds on {remote}/{branch} before committing; "
            f"to commit locally only, pass push=False"
        ) from None
    if theirs is None:  # a new branch on the remote
        if local:
            return local, None
        default = publish.remote_default_branch(repo, remote)
        start = publish.fetch_branch(repo, remote, default) if default else None
        return start or publish.head_commit(repo), None
    if local is None or local == theirs or publish.is_ancestor(repo, local, theirs):
        return theirs, theirs
    if publish.is_ancestor(repo, theirs, local):
        return local, theirs
    merge_base = repo.git("merge-base", local, theirs)
    commits = publish.local_only(repo, local, theirs)
    return publish.rebase_onto(repo, commits, theirs, f"{remote}/{branch}", merge_base), theirs


def _check_in_fresh_python(name: str, staging: Path, python_version: str) -> None:
    """The deploy-time gate: the staged folder loads and its docstring examples pass."""
    error, failures = run_gate(staging, check_python=(python_version == running_python()))
    if error:
        raise DeployError(f"{name}: the deployment does not load in a fresh Python; nothing was committed\n  {error}")
    if failures:
        raise DeployError(_format_failures(name, failures))


def _copy_extra_files(extra: list[str] | dict[str, str] | None, staging: Path) -> None:
    """Modelbit's extra_files: a list of paths (kept under their base name) or {local: in-folder path}."""
    if not extra:
        return
    pairs = extra.items() if isinstance(extra, dict) else [(p, os.path.basename(os.fspath(p).rstrip("/"))) for p in extra]
    for local, rel in pairs:
        source = Path(os.path.expanduser(os.fspath(local)))
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts:
            raise DeployError(f"extra_files: {rel!r} must be a relative path inside the deployment folder")
        if rel in GENERATED:
            raise DeployError(f"extra_files: {rel!r} is written by deploy() itself; give the file another name")
        if not source.exists():
            raise DeployError(f"extra_files: {local}: no such file or directory; nothing was written")
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)


def _deploy(
    fn: Any,
    repo_path: str,
    name: str | None,
    branch: str | None,
    message: str | None,
    push: bool,
    python_version: str | None,
    batch: bool,
    options: _Options,
) -> DeployResult:
    if not callable(fn):
        raise DeployError(f"deploy() needs a function, not {type(fn).__name__}")
    name = name or getattr(fn, "__name__", "")
    problem = _name_problem(name or "")
    if problem:
        raise DeployError(problem)
    version_text = _python_version(python_version)
    target = _target(repo_path, name, branch, push, options.init)
    requirements.refresh()
    captured = capture(fn)  # fails before anything is written, naming the variable
    if options.dataframe_columns is not None and len(captured.args) != 1:
        raise DeployError(f"{name}: dataframe_mode=True needs a function of one argument (the DataFrame)")
    repo = target.repo
    existing = folder_blobs(repo.root, target.base, name)
    with tempfile.TemporaryDirectory(prefix="modelrepo-deploy-") as tmp:
        staging = Path(tmp) / deployment_path(name)
        staging.mkdir(parents=True)
        replaced = _stage_kept_files(repo, target.base, name, existing, Path(tmp))
        _copy_extra_files(options.extra_files, staging)
        write_folder(
            captured, staging, name=name, python_version=version_text, batch=batch,
            previous_metadata=_previous_metadata(repo, existing),
            python_packages=options.python_packages, system_packages=options.system_packages,
            dataframe_columns=options.dataframe_columns,
        )
        if target.base and publish.same_folder(repo, staging, existing):
            # Unchanged: no need to run the gate again (the committed folder passed it).
            commit = _swap(target, name, existing, lambda base, expected: _fast_forward(target, base, expected))
        else:
            _check_in_fresh_python(name, staging, version_text)
            commit = _swap(target, name, existing, lambda base, expected: publish.commit_folder(
                repo, target.branch, base, expected, name, staging, replaced, message or f"Deploy {name}",
            ))
    publish.sync_work_tree(repo, target.branch, target.local, commit.sha)
    versions = versions_of(repo.root, name, rev=commit.sha)
    number = versions[-1].number if versions else 0
    pushed_to = None
    if target.remote:
        if commit.sha != target.remote_tip:
            _push(target, name, commit.sha, number)
        pushed_to = target.remote
    result = DeployResult(
        name=name, commit=commit.sha, version=number,
        branch=target.branch, pushed_to=pushed_to, changed=commit.changed,
    )
    print(result)
    return result


# A deploy that loses the compare-and-swap to a concurrent one retries on the new tip this often
# (each loss means another deploy landed, so N concurrent deploys need at most N - 1 retries).
_SWAP_ATTEMPTS = 8


def _fast_forward(target: _Target, base: str, expected: str | None) -> publish.Commit:
    if base != expected:
        publish.move_branch(target.repo, target.branch, base, expected)
    return publish.Commit(base, changed=False)


def _swap(
    target: _Target, name: str, existing: dict[str, tuple[str, str]],
    attempt: Callable[[str | None, str | None], publish.Commit],
) -> publish.Commit:
    """Run `attempt(base, expected tip)`; when another deploy moved the branch meanwhile, build on
    its commit instead, as long as it left this deployment's folder as this deploy found it."""
    base, expected = target.base, target.local
    moved: publish.Moved | None = None
    for _ in range(_SWAP_ATTEMPTS):
        try:
            return attempt(base, expected)
        except publish.Moved as exc:
            moved = exc
        tip = publish.branch_tip(target.repo, target.branch)
        if tip is None or folder_blobs(target.repo.root, tip, name) != existing:
            break  # the folder itself changed under us: do not overwrite it blindly
        if expected and not publish.is_ancestor(target.repo, expected, tip):
            break  # rewritten, not moved forward
        base = expected = tip
    raise DeployError(f"{name}: nothing was committed: {moved}; run deploy() again")


def _push(target: _Target, name: str, sha: str, number: int) -> None:
    """Push the branch; a rejected or failed push raises, keeping the local commit.

    Deploys running at once from one clone push the same branch: one push can fail on the
    remote's ref lock while another one lands this very commit. So after a failure, the push
    counts as done when the remote's tip contains `sha`, and is tried again (a few times) when
    the remote is only behind this clone; anything else is reported.
    """
    assert target.remote
    failure: publish.RepoError | None = None
    for attempt in range(PUSH_ATTEMPTS):
        try:
            publish.push(target.repo, target.remote, target.branch)
            return
        except publish.RepoError as exc:
            failure = exc
        tip = _remote_tip(target)
        if tip and publish.is_ancestor(target.repo, sha, tip):
            return  # a concurrent deploy from this clone pushed it, on top of its own
        local = publish.branch_tip(target.repo, target.branch)
        if not (tip and local and publish.is_ancestor(target.repo, tip, local)):
            break  # the remote moved elsewhere: retrying cannot help
        time.sleep(0.2 * (attempt + 1))  # the remote is behind: a transient lock, try again
    raise DeployError(
        f"{name}: committed {sha[:7]} (version {number}) on {target.branch} locally, but "
        f"{failure}\n  The local commit is kept. To retry, run deploy() again (it fetches "
        f"{target.remote}/{target.branch} and builds on it), or push it yourself: "
        f"`git -C {target.repo.root} push {target.remote} {target.branch}`"
    ) from None


PUSH_ATTEMPTS = 5


def _remote_tip(target: _Target) -> str | None:
    """The remote branch's tip, fetched when this clone lacks it; None when it cannot be read."""
    for _ in range(3):  # concurrent fetches from one clone contend for its remote-tracking ref
        try:
            return publish.fetch_branch(target.repo, target.remote, target.branch)
        except publish.RepoError:
            time.sleep(0.1)
    return None


__all__ = ["deploy", "switch_branch", "current_branch", "DeployError", "DeployResult"]
