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

from modelrepo import repo as gitrepo
from modelrepo import requirements
from modelrepo.capture import CaptureError, capture
from modelrepo.doctest_gate import run_gate
from modelrepo.history import versions_of
from modelrepo.runtime.loader import NAME_PATTERN
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
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if requested is None:
        return here
    text = str(requested).strip()
    parts = text.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise DeployError(f"python_version must look like \"3.11\", not {requested!r}")
    return ".".join(parts[:2])


def _previous_metadata(files: dict[str, bytes]) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(files.get("metadata.yaml", b"") or b"")
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _stage_kept_files(files: dict[str, bytes], staging: Path) -> list[str]:
    """Copy the folder's hand-added files into staging; return the paths deploy regenerates."""
    replaced = []
    for rel, content in files.items():
        if rel in GENERATED or (rel.startswith("data/") and rel.endswith(".pkl")):
            replaced.append(rel)
            continue
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
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
    """Write `fn` as deployments/<name>/ (DESIGN §3), check it, commit it and push it.

    The docstring examples of `fn` are run in a fresh Python against the files about to be
    committed; a failure raises DeployError and leaves the repository untouched.
    `batch=True` declares that `fn` takes a list of inputs and returns a list of outputs.
    """
    try:
        return _deploy(fn, repo, name, branch, message, push, python_version, batch)
    except (CaptureError, gitrepo.RepoError) as exc:
        raise DeployError(str(exc)) from None


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
    if not NAME_PATTERN.match(name or ""):
        raise DeployError(f"deployment name {name!r} must match [A-Za-z_][A-Za-z0-9_]*")
    version_text = _python_version(python_version)
    repo = gitrepo.open_repo(repo_path)
    branch = branch or _branch_override or gitrepo.current_branch(repo)
    if not branch:
        raise DeployError("HEAD is detached: pass branch=... or call modelrepo.switch_branch()")
    gitrepo.check_branch_name(repo, branch)
    base = gitrepo.branch_tip(repo, branch) or gitrepo.head_commit(repo)
    changed = gitrepo.uncommitted_changes(repo, branch, name)
    if changed:
        raise DeployError(
            f"{name}: uncommitted changes in {', '.join(changed)} would be overwritten; "
            "commit or discard them first, nothing was written"
        )

    requirements.refresh()
    captured = capture(fn)  # fails before anything is written, naming the variable
    existing = gitrepo.folder_files(repo, base, name)
    with tempfile.TemporaryDirectory(prefix="modelrepo-deploy-") as tmp:
        staging = Path(tmp) / name
        staging.mkdir()
        replaced = _stage_kept_files(existing, staging)
        write_folder(
            captured, staging, name=name, python_version=version_text, batch=batch,
            previous_metadata=_previous_metadata(existing),
        )
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        error, failures = run_gate(staging, check_python=(version_text == here))
        if error:
            raise DeployError(f"{name}: the deployment does not load in a fresh Python; nothing was committed\n  {error}")
        if failures:
            raise DeployError(_format_failures(name, failures))
        commit = gitrepo.commit_folder(
            repo, branch, base, name, staging, replaced, message or f"Deploy {name}"
        )
    if commit.changed:
        gitrepo.sync_work_tree(repo, branch, base, commit.sha, name)
    pushed_to = None
    remote = gitrepo.push_remote(repo, branch) if push else None
    if remote:
        try:
            gitrepo.push(repo, remote, branch)
            pushed_to = remote
        except gitrepo.RepoError as exc:
            print(f"modelrepo: committed {commit.sha[:7]} locally, but {exc}", file=sys.stderr)
    versions = versions_of(repo.working_tree_dir, name, rev=commit.sha)
    result = DeployResult(
        name=name, commit=commit.sha, version=versions[-1].number if versions else 0,
        branch=branch, pushed_to=pushed_to, changed=commit.changed,
    )
    print(result)
    return result


__all__ = ["deploy", "switch_branch", "DeployError", "DeployResult"]
