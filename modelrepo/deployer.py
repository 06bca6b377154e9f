"""`modelrepo.deploy(fn)`: capture a function, check it in a fresh Python, commit its folder, push.

Order matters for the promise "a failed deploy leaves the repository exactly as it was": the
folder is built and tested in a temporary staging directory outside the repository, and only
then committed (through a private index) and copied into the work tree.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelrepo import publish, requirements
from modelrepo.capture import CaptureError, capture
from modelrepo.doctest_gate import run_gate
from modelrepo.format import METADATA_FILE, name_problem, running_python
from modelrepo.repository import folder_blobs, read_blob, versions_of
from modelrepo.source_writer import GENERATED, write_folder

_branch_override: str | None = None


class DeployError(Exception):
    """deploy() refused or failed; the message says what to fix. Nothing was committed."""


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
    """Send later deploy() calls of this process to branch `name` (created on first deploy)."""
    global _branch_override
    if not isinstance(name, str) or not name.strip():
        raise DeployError("switch_branch() needs a branch name")
    _branch_override = name.strip()


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


def _stage_kept_files(repo: publish.WorkTree, files: dict[str, tuple[str, str]], staging: Path) -> list[str]:
    """Copy the folder's hand-added files into staging; return the paths deploy regenerates."""
    replaced = []
    for rel, (mode, oid) in files.items():
        if rel in GENERATED or (rel.startswith("data/") and rel.endswith(".pkl")):
            replaced.append(rel)
            continue
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read_blob(repo.root, oid))
        if mode == "100755":
            target.chmod(0o755)
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
) -> DeployResult:
    """Write `fn` as deployments/<name>/ (docs/repo-format.md), check it, commit it and push it.

    The docstring examples of `fn` are run in a fresh Python against the files about to be
    committed; a failure raises DeployError and leaves the repository untouched.
    `batch=True` declares that `fn` takes a list of inputs and returns a list of outputs.
    """
    try:
        return _deploy(fn, repo, name, branch, message, push, python_version, batch)
    except (CaptureError, publish.RepoError) as exc:
        raise DeployError(str(exc)) from None


@dataclass(frozen=True)
class _Target:
    """Where a deploy goes: the work tree, the branch and the commit the new one builds on."""

    repo: publish.WorkTree
    branch: str
    base: str | None


def _target(repo_path: str, name: str, branch: str | None) -> _Target:
    repo = publish.open_repo(repo_path)
    branch = branch or _branch_override or publish.current_branch(repo)
    if not branch:
        raise DeployError("HEAD is detached: pass branch=... or call modelrepo.switch_branch()")
    publish.check_branch_name(repo, branch)
    base = publish.branch_tip(repo, branch) or publish.head_commit(repo)
    changed = publish.uncommitted_changes(repo, branch, name)
    if changed:
        raise DeployError(
            f"{name}: uncommitted changes in {', '.join(changed)} would be overwritten; "
            "commit or discard them first, nothing was written"
        )
    return _Target(repo, branch, base)


def _check_in_fresh_python(name: str, staging: Path, python_version: str) -> None:
    """The deploy-time gate: the staged folder loads and its docstring examples pass."""
    error, failures = run_gate(staging, check_python=(python_version == running_python()))
    if error:
        raise DeployError(f"{name}: the deployment does not load in a fresh Python; nothing was committed\n  {error}")
    if failures:
        raise DeployError(_format_failures(name, failures))


def _deploy(
    fn: Any,
    repo_path: str,
    name: str | None,
    branch: str | None,
    message: str | None,
    push: bool,
    python_version: str | None,
    batch: bool,
) -> DeployResult:
    if not callable(fn):
        raise DeployError(f"deploy() needs a function, not {type(fn).__name__}")
    name = name or getattr(fn, "__name__", "")
    problem = name_problem(name or "")
    if problem:
        raise DeployError(problem)
    version_text = _python_version(python_version)
    target = _target(repo_path, name, branch)
    requirements.refresh()
    captured = capture(fn)  # fails before anything is written, naming the variable
    existing = folder_blobs(target.repo.root, target.base, name)
    with tempfile.TemporaryDirectory(prefix="modelrepo-deploy-") as tmp:
        staging = Path(tmp) / name
        staging.mkdir()
        replaced = _stage_kept_files(target.repo, existing, staging)
        write_folder(
            captured, staging, name=name, python_version=version_text, batch=batch,
            previous_metadata=_previous_metadata(target.repo, existing),
        )
        _check_in_fresh_python(name, staging, version_text)
        commit = publish.commit_folder(
            target.repo, target.branch, target.base, name, staging, replaced, message or f"Deploy {name}"
        )
    if commit.changed:
        publish.sync_work_tree(target.repo, target.branch, target.base, commit.sha, name)
    pushed_to = _push(target, commit.sha) if push else None
    versions = versions_of(target.repo.root, name, rev=commit.sha)
    result = DeployResult(
        name=name, commit=commit.sha, version=versions[-1].number if versions else 0,
        branch=target.branch, pushed_to=pushed_to, changed=commit.changed,
    )
    print(result)
    return result


def _push(target: _Target, sha: str) -> str | None:
    """Push the branch to its remote (if it has one); the remote's name, None when not pushed."""
    remote = publish.push_remote(target.repo, target.branch)
    if not remote:
        return None
    try:
        publish.push(target.repo, remote, target.branch)
    except publish.RepoError as exc:
        print(f"modelrepo: committed {sha[:7]} locally, but {exc}", file=sys.stderr)
        return None
    return remote


__all__ = ["deploy", "switch_branch", "DeployError", "DeployResult"]
