"""Where things live in a model repository, and what a deployment may be called.

Every path and name rule of the repository layout (docs/repo-format.md) is stated here once;
the SDK, the runtime, the operator and the CLI import it instead of spelling it again.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DEPLOYMENTS_DIR = "deployments"
ENDPOINTS_DIR = "endpoints"
DATASETS_DIR = "datasets"
COMMON_DIR = "common"
BIN_DIR = "bin"
# Folders `modelrepo init` creates, in the order it creates them.
TOP_LEVEL_DIRS = (DEPLOYMENTS_DIR, ENDPOINTS_DIR, DATASETS_DIR)
METADATA_FILE = "metadata.yaml"
SOURCE_FILE = "source.py"
REQUIREMENTS_FILE = "requirements.txt"
DATA_DIR = "data"
# An empty file that marks a deployment as archived (Modelbit's archive): it stays in the tree
# but is not served.
ARCHIVED_MARKER = ".archived"
SCHEMA_VERSION = 2
NAME_RULE = "[A-Za-z_][A-Za-z0-9_]*"
NAME_PATTERN = re.compile(rf"\A{NAME_RULE}\Z")  # \Z: "Name\n" is no name


def is_valid_name(name: str) -> bool:
    """A folder under deployments/ is a deployment only if its name is a Python identifier."""
    return bool(NAME_PATTERN.match(name))


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a deployment name, or None when it can."""
    if is_valid_name(name):
        return None
    return f"deployment name {name!r} must match {NAME_RULE}"


def deployment_path(name: str) -> str:
    """`deployments/<name>`, the folder's path inside the repository (posix, no trailing slash)."""
    return f"{DEPLOYMENTS_DIR}/{name}"


def folder_path(root: str | os.PathLike[str], name: str) -> Path:
    """Where deployment `name` lives in a work tree whose top is `root`."""
    return Path(root) / DEPLOYMENTS_DIR / name


def deployment_of(path: str) -> str | None:
    """The deployment a repository path belongs to (`deployments/<Name>/...` -> Name), else None."""
    prefix = DEPLOYMENTS_DIR + "/"
    if not path.startswith(prefix):
        return None
    name, sep, _rest = path[len(prefix):].partition("/")
    return name if sep and name else None
