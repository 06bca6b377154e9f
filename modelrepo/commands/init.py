"""`modelrepo init <dir>`: create (or complete) a model repository. Safe to run again."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

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
    """git's output, or None when it failed (init asks questions whose answer may be no)."""
    from modelrepo import git

    return git.try_run(args, cwd=root)


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
    from modelrepo import git

    top = _git(root, "rev-parse", "--show-toplevel")
    # deployments/ must sit at the top of a work tree: a folder inside another repository
    # (e.g. ./demo-repo in a project checkout) becomes a repository of its own.
    if top is None or Path(top).resolve() != root.resolve():
        try:
            git.run(["init", "-q", "-b", "main"], cwd=root)
        except git.GitError as exc:
            raise UserError(f"{args.dir}: git init failed: {exc}") from None
        made.append(".git (branch main)")
    for folder in ("deployments", "endpoints", "datasets"):
        _write(root / folder / ".gitkeep", "", made, root)
    _write(root / "README.md", README, made, root)
    _write(root / ".gitignore", GITIGNORE, made, root)
    hook = root / "bin" / "pre-commit"
    _write(hook, PRE_COMMIT, made, root)
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    hooks_dir = Path(_git(root, "rev-parse", "--git-path", "hooks") or ".git/hooks")
    installed = (root / hooks_dir / "pre-commit") if not hooks_dir.is_absolute() else hooks_dir / "pre-commit"
    if not installed.exists() and not installed.is_symlink():
        installed.parent.mkdir(parents=True, exist_ok=True)
        installed.symlink_to(os.path.relpath(hook.resolve(), installed.parent.resolve()))
        made.append(f"{os.path.relpath(installed, root)} -> bin/pre-commit")
    if git.rev_parse(root, "HEAD") is None:
        _git(root, "add", "deployments", "endpoints", "datasets", "bin", "README.md", ".gitignore")
        try:
            git.run(["commit", "-q", "-m", "Initialize model repository"], cwd=root)
            made.append("commit 'Initialize model repository'")
        except git.GitError as exc:
            print(f"note: files are staged but not committed: {exc}")
    if made:
        print(f"Initialized model repository in {root.resolve()}:")
        for item in made:
            print(f"  {item}")
    else:
        print(f"{root.resolve()} is already a model repository; nothing to do")
    return 0
