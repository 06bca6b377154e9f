"""Files whose real bytes are not in git: Modelbit's file stubs and Git LFS pointers.

Modelbit keeps large files (pickles, csv, binaries over 50 KB) in its own storage and commits
a small YAML stub (`_: MBFileStub`, `contentHash`, `metadata.fileSize`) in their place; Git LFS
commits a pointer (`version https://git-lfs.github.com/spec/v1`, `oid`, `size`) when its object
was not fetched. Neither may ever reach `pickle.load`: each is named with what to do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_MAX_STUB_BYTES = 1024
_MB_STUB = re.compile(rb"^\s*_:\s*MBFileStub\s*$", re.MULTILINE)
_LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"
_FIELD = re.compile(rb"^\s*(contentHash|oid|size|fileSize)[:\s]\s*(\S+)", re.MULTILINE)


def _small_file(path: Path) -> bytes | None:
    """The bytes of `path` when it is a regular file small enough to be a stub or pointer."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_STUB_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None


def is_lfs_pointer(path: str | os.PathLike[str]) -> bool:
    """True when `path` is a Git LFS pointer file (its object's bytes are elsewhere)."""
    head = _small_file(Path(path))
    return bool(head and head.startswith(_LFS_POINTER))


def stub_problem(path: str | os.PathLike[str]) -> str | None:
    """What is wrong with `path` if it is a stub or pointer instead of the file, else None."""
    head = _small_file(Path(path))
    if head is None:
        return None
    fields = {k.decode(): v.decode(errors="replace") for k, v in _FIELD.findall(head)}
    if head.startswith(_LFS_POINTER):
        size = fields.get("size", "?")
        return (
            f"a Git LFS pointer ({fields.get('oid', 'no oid')}, {size} bytes) whose object was not "
            "fetched: install git-lfs and run `git lfs pull`, or check that the LFS server has it"
        )
    if _MB_STUB.search(head):
        size = fields.get("fileSize", "?")
        return (
            f"a Modelbit file stub ({fields.get('contentHash', 'no contentHash')}, {size} bytes): the "
            "real bytes are not in git; commit the file itself in its place (or store it with Git LFS)"
        )
    return None


def find_stubs(folder: str | os.PathLike[str], *, lfs_pointers: bool = False) -> list[tuple[Path, str]]:
    """(path, problem) of every stub or pointer under `folder`, in path order (links followed).

    `lfs_pointers=True`: Git LFS pointers are no problem here, because their objects are fetched
    where the folder runs (the operator checks folders whose pods download the objects)."""
    found = []
    for path in sorted(Path(folder).rglob("*")):
        # a link (into common/) is judged by the file it points to, when that file exists
        target = path.resolve() if path.is_symlink() else path
        problem = None if lfs_pointers and is_lfs_pointer(target) else stub_problem(target)
        if problem:
            found.append((path, problem))
    return found
