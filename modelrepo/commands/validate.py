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
    from modelrepo.format import (
        DEPLOYMENTS_DIR,
        METADATA_FILE,
        SOURCE_FILE,
        is_archived,
        validate_folder,
    )

    root = Path(args.dir)
    whole_repo = (root / DEPLOYMENTS_DIR).is_dir()
    if whole_repo:
        folders = deployment_folders(root)
    elif (root / METADATA_FILE).exists() or (root / SOURCE_FILE).exists():
        folders, root = [root], root.parent.parent if root.parent.name == DEPLOYMENTS_DIR else root.parent
    elif root.is_dir():
        raise UserError(f"{args.dir}: no deployments/ folder here (is this a model repository?)")
    else:
        raise UserError(f"{args.dir}: no such directory")
    archived = [folder for folder in folders if is_archived(folder)]
    for folder in archived:  # Modelbit's archive: kept in the tree, never served, not checked
        print(f"{os.path.relpath(folder, root)}: archived (not served)")
    folders = [folder for folder in folders if folder not in archived]
    problems = [e for folder in folders for e in validate_folder(folder)]
    endpoint_problems, endpoints = check_endpoints(root, {f.name for f in folders}) if whole_repo else ([], 0)
    if whole_repo:  # the repository's datasets/*.yaml (no database contacted)
        from modelrepo.duration import parse_duration
        from modelrepo.format.datasets import validate_datasets

        problems += validate_datasets(root, parse_duration)
    for error in problems + endpoint_problems:
        print(f"{os.path.relpath(error.path, root)}: {error.problem}")
    if problems or endpoint_problems:
        bad = len({Path(os.path.relpath(e.path, root)).parts[:2] for e in problems})
        where = [f"{bad} of {len(folders)} deployment(s)"] if problems else []
        where += [f"{len({e.path for e in endpoint_problems})} endpoints file(s)"] if endpoint_problems else []
        print(f"{len(problems) + len(endpoint_problems)} problem(s) in {' and '.join(where)}")
        return 1
    print(f"{len(folders)} deployment(s) valid" + (f", {len(archived)} archived" if archived else "")
          + (f", {endpoints} endpoints file(s) valid" if endpoints else ""))
    return 0


def check_endpoints(root: Path, deployments: set[str]) -> tuple[list, int]:
    """Problems of endpoints/*.yaml (each file, then names across the repository), and the file count."""
    from modelrepo.format import ENDPOINTS_DIR, DeploymentError
    from modelrepo.format.endpoints import cross_problems, endpoint_files, read_endpoints

    found, problems = read_endpoints(root)
    problems += [DeploymentError(root / ENDPOINTS_DIR / f, p) for f, p in cross_problems(found, deployments)]
    return problems, len(endpoint_files(root))
