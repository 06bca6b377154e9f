"""`modelrepo fetch`: the pods' first init container — only one deployment folder at one commit.

Shallow, blobless and sparse, with credentials from a mounted Secret, so a pod downloads just
its own model. It runs git and nothing else: no repository code runs where the Secret is
readable (`modelrepo check` does that next, in a container without it). What it leaves holds
no credential: `.git` (remote URL, config) is removed, the files are all the runtime needs.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from modelrepo.cli import UserError

HELP = "fetch one deployment folder at one commit, git only (the operator's init container)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="repository URL (no credentials in it: use --credentials)")
    parser.add_argument("--commit", required=True, help="full commit SHA to check out")
    parser.add_argument("--path", required=True, help="folder inside the repository, e.g. deployments/Name")
    parser.add_argument("--dest", required=True, help="directory to fetch into (an emptyDir in pods)")
    parser.add_argument("--ref", help="branch the commit is on (fallback for servers refusing SHA wants)")
    parser.add_argument("--credentials", help="directory of a mounted Secret (identity, known_hosts, username, password, bearerToken)")
    parser.add_argument("--datasets-at", help="commit to take datasets/ from (default: --commit)")


def run(args: argparse.Namespace) -> int:
    from modelrepo.format import DATASETS_DIR
    from modelrepo.git import Credentials, GitError
    from modelrepo.operator.gitsource import sparse_checkout

    creds = Credentials.from_dir(args.credentials) if args.credentials else None
    dest = Path(args.dest)
    clear(dest)  # a restarted init container starts from scratch
    try:
        # datasets/ of the same commit comes along (small YAML files): the runtime reads the
        # queries there (MODELREPO_DATASETS_DIR=<dest>/datasets, docs/data.md).
        target = sparse_checkout(args.url, args.commit, args.path, dest, creds, ref=args.ref,
                                 also=(DATASETS_DIR,), also_at=args.datasets_at)
    except GitError as exc:
        clear(dest)
        raise UserError(f"fetching {args.path} at {args.commit[:12]}: {exc}") from None
    shutil.rmtree(dest / ".git")
    print(f"fetched {args.path} at {args.commit[:12]} into {target}")
    return 0


def clear(dest: Path) -> None:
    """Empty `dest` (kept itself: it is a volume's mount point)."""
    if dest.is_dir():
        for child in dest.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
