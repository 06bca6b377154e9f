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


def stub_problem(path: str | os.PathLike[str]) -> str | None:
    """What is wrong with `path` if it is a stub or pointer instead of the file, else None."""
    path = Path(path)
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_STUB_BYTES:
            return None
        head = path.read_bytes()
    except OSError:
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


def find_stubs(folder: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """(path, problem) of every stub or pointer under `folder`, in path order (links followed)."""
    found = []
    for path in sorted(Path(folder).rglob("*")):
        # a link (into common/) is judged by the file it points to, when that file exists
        problem = stub_problem(path.resolve() if path.is_symlink() else path)
        if problem:
            found.append((path, problem))
    return found
