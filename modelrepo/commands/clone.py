"""`modelrepo clone <url> [dir]`: a working copy of a shared model repository, ready to deploy into.

Unlike a plain `git clone`, it checks out the default branch even when the remote's HEAD names a
branch that does not exist (`git init --bare` makes HEAD `master`), installs the validating
pre-commit hook, and sets a local git identity when the machine has none, so the first
deploy() commits.
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
from pathlib import Path

HELP = "clone a model repository: default branch checked out, validate hook installed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the remote repository (URL or path)")
    parser.add_argument("dir", nargs="?", default=None,
                        help="where to clone it (default: the repository's name)")


def _default_dir(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return name.removesuffix(".git") or "models"


def ensure_identity(root: Path) -> str | None:
    """Set user.name/user.email in the repository when git has none; the identity set, or None."""
    from modelrepo import git

    missing = [key for key in ("user.name", "user.email") if not git.try_run(["config", key], cwd=root)]
    if not missing:
        return None
    user = getpass.getuser() or "modelrepo"
    values = {"user.name": user, "user.email": f"{user}@{socket.gethostname() or 'localhost'}"}
    for key in missing:
        git.run(["config", key, values[key]], cwd=root)
    return ", ".join(f"{key}={values[key]!r}" for key in missing)


def run(args: argparse.Namespace) -> int:
    from modelrepo import git
    from modelrepo.cli import UserError
    from modelrepo.commands.init import DEFAULT_BRANCH, install_hook
    from modelrepo.publish import default_branch_of

    target = Path(args.dir or _default_dir(args.url))
    if target.exists() and any(target.iterdir()):
        raise UserError(f"{target}: exists and is not empty; give another directory")
    try:
        git.run(["clone", "-q", "--no-checkout", args.url, str(target)])
        listing = git.run(["ls-remote", "--symref", "origin", "HEAD", "refs/heads/*"], cwd=target)
    except git.GitError as exc:
        raise UserError(f"cloning {git.redact_url(args.url)} failed: {exc}") from None
    branch = default_branch_of(listing)
    made: list[str] = []
    if branch is None:
        git.run(["symbolic-ref", "HEAD", f"refs/heads/{DEFAULT_BRANCH}"], cwd=target)
        print(f"Cloned an empty repository into {target}; make it a model repository with "
              f"`modelrepo init {target}` (branch {DEFAULT_BRANCH}), then deploy() and push.")
    else:
        try:
            git.run(["checkout", "-q", "-B", branch, "--track", f"origin/{branch}"], cwd=target)
        except git.GitError as exc:
            raise UserError(f"checking out {branch} in {target} failed: {exc}") from None
        install_hook(target, made, write_bin=False)
        print(f"Cloned {git.redact_url(args.url)} into {target} on branch {branch}")
    identity = ensure_identity(target)
    if identity:
        print(f"  git had no identity: set {identity} in {target} (change with `git -C {target} config user.name ...`)")
    for item in made:
        print(f"  {item}")
    if branch is not None and not (target / "deployments").is_dir():
        print(f"  note: {target} has no deployments/ yet; `modelrepo init {target}` adds it")
    return 0 if os.path.isdir(target) else 1
