"""`modelrepo check --dir <folder>`: the pods' second init container — can this folder serve?

Imports the function and runs its docstring tests, so a bad version fails here, visibly (the
pod's reason, then the ModelRepo's Degraded condition), while the old pods keep serving. It
runs repository code, so it takes no credentials of any kind and the operator never mounts
the git Secret in its container.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modelrepo.cli import UserError

HELP = "load one deployment folder and run its docstring tests (the operator's init container)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", required=True, help="the deployment folder, e.g. /model/deployments/Name")


def run(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    if not folder.is_dir():
        raise UserError(f"--dir {args.dir}: no such directory")
    problems = check(folder)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return 1
    print(f"{folder.name}: loads and its docstring tests pass")
    return 0


def check(folder: Path) -> list[str]:
    """Every reason the folder cannot serve: static problems, import, Python version, doctests."""
    from modelrepo.format import (
        DeploymentError,
        enter_folder,
        load_deployment,
        run_doctests,
        validate_folder,
    )
    from modelrepo.modelbit_compat import install as install_modelbit

    install_modelbit()  # `import modelbit` in source.py works here as in the runtime

    errors = [str(e) for e in validate_folder(folder)]
    if errors:
        return errors
    from modelrepo.datasets import reads_runtime_data

    if reads_runtime_data(folder):
        # Warehouses and secrets are mounted into the runtime container only: it imports, reads
        # the datasets and runs the docstring tests before it gets ready, so a failure still
        # keeps the old pods serving.
        print(f"{folder.name}: reads datasets or secrets: import and docstring tests run in the runtime container")
        return []
    try:
        enter_folder(folder)  # as the runtime serves it: relative open() and packages of the folder work
        loaded = load_deployment(folder)
    except DeploymentError as exc:
        return [str(exc)]
    failures = run_doctests(loaded)
    return [
        f"{folder.name}: docstring test {f.example.strip()!r} expected {f.expected.strip()!r}, got {f.got.strip()!r}"
        for f in failures
    ]
