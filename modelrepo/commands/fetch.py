"""`modelrepo fetch`: the pods' init container — only one deployment folder at one commit.

Shallow, blobless and sparse, with credentials from a mounted Secret, so a pod downloads just
its own model. With --check it also loads the function and runs its docstring tests, so a bad
version fails here, visibly (the pod's reason, then the ModelRepo's Degraded condition), while
the old pods keep serving.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from modelrepo.cli import UserError

HELP = "fetch one deployment folder at one commit (the operator's init container)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="repository URL")
    parser.add_argument("--commit", required=True, help="full commit SHA to check out")
    parser.add_argument("--path", required=True, help="folder inside the repository, e.g. deployments/Name")
    parser.add_argument("--dest", required=True, help="directory to fetch into (an emptyDir in pods)")
    parser.add_argument("--ref", help="branch the commit is on (fallback for servers refusing SHA wants)")
    parser.add_argument("--credentials", help="directory of a mounted Secret (identity, known_hosts, username, password, bearerToken)")
    parser.add_argument("--datasets-at", help="commit to take datasets/ from (default: --commit)")
    parser.add_argument("--check", action="store_true", help="load the function and run its docstring tests")


def run(args: argparse.Namespace) -> int:
    from modelrepo.format import DATASETS_DIR
    from modelrepo.git import Credentials, GitError
    from modelrepo.operator.gitsource import sparse_checkout

    creds = Credentials.from_dir(args.credentials) if args.credentials else None
    dest = Path(args.dest)
    if dest.is_dir():  # a restarted init container starts from scratch
        for child in dest.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    try:
        # datasets/ of the same commit comes along (small YAML files): the runtime reads the
        # queries there (MODELREPO_DATASETS_DIR=<dest>/datasets, docs/data.md).
        target = sparse_checkout(args.url, args.commit, args.path, dest, creds, ref=args.ref,
                                 also=(DATASETS_DIR,), also_at=args.datasets_at)
    except GitError as exc:
        raise UserError(f"fetching {args.path} at {args.commit[:12]}: {exc}") from None
    print(f"fetched {args.path} at {args.commit[:12]} into {target}")
    if args.check:
        problems = check(target)
        if problems:
            for line in problems:
                print(line, file=sys.stderr)
            return 1
        print(f"{args.path}: loads and its docstring tests pass")
    return 0


def check(folder: Path) -> list[str]:
    """Every reason the folder cannot serve: static problems, import, Python version, doctests."""
    from modelrepo.datasets import reads_runtime_data
    from modelrepo.format import DeploymentError, load_deployment, run_doctests, validate_folder

    errors = [str(e) for e in validate_folder(folder)]
    if errors:
        return errors
    if reads_runtime_data(folder):
        # Warehouses and secrets are mounted into the runtime container only (never here, beside
        # the git credentials): it imports, reads the datasets and runs the docstring tests
        # before it gets ready, so a failure still keeps the old pods serving.
        print(f"{folder.name}: reads datasets or secrets: import and docstring tests run in the runtime container")
        return []
    try:
        loaded = load_deployment(folder)
    except DeploymentError as exc:
        return [str(exc)]
    failures = run_doctests(loaded)
    return [
        f"{folder.name}: docstring test {f.example.strip()!r} expected {f.expected.strip()!r}, got {f.got.strip()!r}"
        for f in failures
    ]
