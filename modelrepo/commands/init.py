"""`modelrepo init <dir>`: create (or complete) a model repository. Safe to run again."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

from modelrepo import git, lfs

# The branch `modelrepo init` and `modelrepo clone` use; `serve`, the operator and deploy()
# follow the repository's branch, this is only where a new repository starts.
DEFAULT_BRANCH = "main"

HELP = "create a model repository: deployments/, endpoints/, datasets/, bin/ with a validate hook"

README = """\
# Model repository

Every folder `deployments/<Name>/` is one deployed Python function (made by
`modelrepo.deploy(fn)` or by hand): `source.py`, `metadata.yaml`, `requirements.txt`,
`data/*.pkl`. Every commit that changes a folder is a new version of it; `git revert` is a
rollback. Check the folders with `modelrepo validate`, list versions with
`modelrepo versions . <Name>`.

- `deployments/` deployed functions
- `endpoints/`   aliases and traffic splits (later)
- `datasets/`    SQL datasets (later)
- `bin/`         repository helpers; `bin/pre-commit` runs `modelrepo validate`
"""

PRE_COMMIT = """\
#!/bin/sh
# Refuse a commit that leaves a deployment folder invalid (installed by `modelrepo init`).
if ! command -v modelrepo >/dev/null 2>&1; then
    echo "pre-commit: modelrepo is not on PATH; skipping modelrepo validate" >&2
    exit 0
fi
exec modelrepo validate "$(git rev-parse --show-toplevel)"
"""

GITIGNORE = "__pycache__/\n*.pyc\n.ipynb_checkpoints/\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="directory of the repository (created if missing)")


def _git(root: Path, *args: str) -> str | None:
    """git's output, or None when it failed (the callers say what that means)."""
    return git.try_run(list(args), cwd=root)


def install_hook(root: Path, made: list[str], write_bin: bool = True) -> None:
    """bin/pre-commit (runs `modelrepo validate`), linked as the repository's pre-commit hook.

    Without `write_bin` (a clone: its files are the remote's), a repository that has no
    bin/pre-commit gets the hook written into its hooks directory only.
    """
    hook = root / "bin" / "pre-commit"
    if write_bin:
        _write(hook, PRE_COMMIT, made, root)
    elif not hook.exists():
        hook = Path(git.run(["rev-parse", "--git-path", "hooks/modelrepo-pre-commit"], cwd=root))
        hook = hook if hook.is_absolute() else root / hook
        hook.parent.mkdir(parents=True, exist_ok=True)
        hook.write_text(PRE_COMMIT, encoding="utf-8")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    hooks_dir = Path(_git(root, "rev-parse", "--git-path", "hooks") or ".git/hooks")
    installed = (root / hooks_dir / "pre-commit") if not hooks_dir.is_absolute() else hooks_dir / "pre-commit"
    if not installed.exists() and not installed.is_symlink():
        installed.parent.mkdir(parents=True, exist_ok=True)
        installed.symlink_to(os.path.relpath(hook.resolve(), installed.parent.resolve()))
        made.append(f"{os.path.relpath(installed, root)} -> bin/pre-commit")
    # deploy() recognises a model repository by this (or by its deployments/ folder)
    _git(root, "config", "modelrepo.repository", "true")


def use_lfs(root: Path, made: list[str]) -> None:
    """With git-lfs installed: `.gitattributes` storing model files as LFS objects (deploy()
    then streams pickles to LFS, history grows by pointers only) and `git lfs install --local`
    (its pre-push hook uploads objects on a plain `git push` too). Without it: nothing."""
    if not lfs.available():
        return
    _write(root / ".gitattributes", lfs.ATTRIBUTES, made, root)
    if _git(root, "config", "--local", "filter.lfs.process") is None:
        try:
            lfs.install_local(root)
            made.append("git lfs install --local")
        except git.GitError as exc:
            print(f"note: `git lfs install --local` failed: {exc}")


def _write(path: Path, text: str, made: list[str], root: Path) -> None:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        made.append(os.path.relpath(path, root))


def run(args: argparse.Namespace) -> int:
    from modelrepo.cli import UserError

    root = Path(args.dir)
    if root.exists() and not root.is_dir():
        raise UserError(f"{args.dir}: exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    made: list[str] = []
    top = _git(root, "rev-parse", "--show-toplevel")
    # deployments/ must sit at the top of a work tree: a folder inside another repository
    # (e.g. ./demo-repo in a project checkout) becomes a repository of its own.
    if top is None or Path(top).resolve() != root.resolve():
        try:
            git.run(["init", "-q", "-b", DEFAULT_BRANCH], cwd=root)
        except git.GitError as exc:
            raise UserError(f"{args.dir}: git init failed: {exc}") from None
        made.append(f".git (branch {DEFAULT_BRANCH})")
    elif _git(root, "rev-parse", "-q", "--verify", "HEAD") is None:
        # An empty clone (or `git init` without -b) may sit on `master`: start on main.
        unborn = (_git(root, "symbolic-ref", "--short", "HEAD") or "")
        if unborn != DEFAULT_BRANCH:
            _git(root, "symbolic-ref", "HEAD", f"refs/heads/{DEFAULT_BRANCH}")
            made.append(f"branch {DEFAULT_BRANCH} (instead of {unborn or 'a detached HEAD'})")
    for folder in ("deployments", "endpoints", "datasets"):
        _write(root / folder / ".gitkeep", "", made, root)
    _write(root / "README.md", README, made, root)
    _write(root / ".gitignore", GITIGNORE, made, root)
    install_hook(root, made)
    use_lfs(root, made)
    if _git(root, "rev-parse", "-q", "--verify", "HEAD") is None:
        _git(root, "add", "deployments", "endpoints", "datasets", "bin", "README.md", ".gitignore",
             *([".gitattributes"] if (root / ".gitattributes").exists() else []))
        try:
            git.run(["commit", "-q", "-m", "Initialize model repository"], cwd=root)
            made.append("commit 'Initialize model repository'")
        except git.GitError as exc:
            print(f"note: files are staged but not committed: {exc}")
    branch = _git(root, "symbolic-ref", "--short", "HEAD") or "(detached HEAD)"
    if made:
        print(f"Initialized model repository in {root.resolve()} on branch {branch}:")
        for item in made:
            print(f"  {item}")
    else:
        print(f"{root.resolve()} is already a model repository on branch {branch}; nothing to do")
    return 0
