"""`modelrepo validate [<dir>]`: check every deployment folder without running any of its code."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HELP = "check every deployments/<Name>/ folder of a model repository (exit 1 on problems)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", default=".", help="the repository (default: .) or one deployment folder")


def deployment_folders(root: Path) -> list[Path]:
    """The folders under deployments/ (hidden entries and plain files like .gitkeep skipped)."""
    from modelrepo.format import DEPLOYMENTS_DIR

    base = root / DEPLOYMENTS_DIR
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def run(args: argparse.Namespace) -> int:
    from modelrepo.cli import UserError
    from modelrepo.format import DEPLOYMENTS_DIR, METADATA_FILE, SOURCE_FILE, validate_folder

    root = Path(args.dir)
    if (root / DEPLOYMENTS_DIR).is_dir():
        folders = deployment_folders(root)
    elif (root / METADATA_FILE).exists() or (root / SOURCE_FILE).exists():
        folders, root = [root], root.parent.parent if root.parent.name == DEPLOYMENTS_DIR else root.parent
    elif root.is_dir():
        raise UserError(f"{args.dir}: no deployments/ folder here (is this a model repository?)")
    else:
        raise UserError(f"{args.dir}: no such directory")
    problems = [e for folder in folders for e in validate_folder(folder)]
    if (root / DEPLOYMENTS_DIR).is_dir():  # the repository's datasets/*.yaml (no database contacted)
        from modelrepo.duration import parse_duration
        from modelrepo.format.datasets import validate_datasets

        problems += validate_datasets(root, parse_duration)
    for error in problems:
        print(f"{os.path.relpath(error.path, root)}: {error.problem}")
    if problems:
        bad = len({Path(os.path.relpath(e.path, root)).parts[:2] for e in problems})
        print(f"{len(problems)} problem(s) in {bad} of {len(folders)} deployment(s)")
        return 1
    print(f"{len(folders)} deployment(s) valid")
    return 0
