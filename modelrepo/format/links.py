"""Symbolic links in deployment folders: Modelbit's `common/` files, and archived folders.

Modelbit shares files between deployments by keeping them once in the repository's top-level
`common/` and linking them into each folder with a relative symlink
(`deployments/A/utils.py -> ../../common/utils.py`). A link may point into `common/` or stay
inside its own folder; any other target (outside the repository, another deployment, an
absolute path) is refused by name. Whoever materialises a folder (serve's extraction, the
operator's export, the pods' sparse checkout) also materialises the `common/` paths its links
name, in the same repository-shaped layout, so the links resolve unchanged.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from modelrepo.format.layout import ARCHIVED_MARKER, COMMON_DIR, DEPLOYMENTS_DIR

SYMLINK_MODE = "120000"  # git's file mode of a symbolic link


def is_archived(folder: str | os.PathLike[str]) -> bool:
    """True when the folder carries Modelbit's `.archived` marker: it stays in the tree, unserved."""
    return (Path(folder) / ARCHIVED_MARKER).exists()


def archived_marker_path(name: str) -> str:
    """`deployments/<name>/.archived`: the repository path whose presence archives `name`."""
    return f"{DEPLOYMENTS_DIR}/{name}/{ARCHIVED_MARKER}"


def link_target(link_path: str, target: str) -> tuple[str | None, str | None]:
    """(repository path the link points to, None) or (None, why it is refused).

    `link_path` is the link's posix path in the repository (`deployments/A/utils.py`), `target`
    what the link says (`../../common/utils.py`).
    """
    if not target or posixpath.isabs(target) or target.startswith("\\"):
        return None, f"is a symbolic link to the absolute path {target!r}; use a relative link into {COMMON_DIR}/"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link_path), target))
    if resolved == ".." or resolved.startswith("../"):
        return None, f"is a symbolic link to {target!r}, which leaves the repository"
    parts = link_path.split("/")
    own_folder = "/".join(parts[:2]) + "/" if parts[0] == DEPLOYMENTS_DIR and len(parts) > 2 else None
    if resolved.startswith(COMMON_DIR + "/") or (own_folder and resolved.startswith(own_folder)):
        return resolved, None
    return None, (
        f"is a symbolic link to {target!r} ({resolved}); links may only point into the "
        f"repository's {COMMON_DIR}/ folder or inside their own folder"
    )


def common_targets(links: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """From {link repo path: link text}: (sorted common/ paths they need, {link path: problem})."""
    needed: set[str] = set()
    problems: dict[str, str] = {}
    for link_path, target in links.items():
        resolved, problem = link_target(link_path, target)
        if problem:
            problems[link_path] = problem
        elif resolved and resolved.startswith(COMMON_DIR + "/"):
            needed.add(resolved)
    return sorted(needed), problems


def folder_links(root: str | os.PathLike[str], path: str) -> dict[str, str]:
    """{link repo path: link text} of every symbolic link under `root/path` on disk."""
    root = Path(root)
    found: dict[str, str] = {}
    base = root / path
    if not base.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(base):
        for entry in (*dirnames, *filenames):
            full = Path(dirpath) / entry
            if full.is_symlink():
                found[full.relative_to(root).as_posix()] = os.readlink(full)
    return found


def link_problems(folder: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """(link, problem) for every link of a folder that is refused or dangling, in path order.

    The folder is taken as `deployments/<its name>` of the work tree two levels up, where its
    `common/` links must land.
    """
    folder = Path(os.path.abspath(folder))
    root = folder.parent.parent
    prefix = f"{DEPLOYMENTS_DIR}/{folder.name}"
    problems = []
    for rel, target in sorted(folder_links(folder, ".").items()):
        link_path = posixpath.normpath(f"{prefix}/{rel}")
        resolved, problem = link_target(link_path, target)
        if problem is None and resolved is not None:
            on_disk = folder / resolved[len(prefix) + 1:] if resolved.startswith(prefix + "/") else root / resolved
            if not on_disk.exists():
                problem = f"is a symbolic link to {target!r}, but {resolved} does not exist"
        if problem:
            problems.append((folder / rel, problem))
    return problems
