"""Version numbers of deployments, and the one rule for naming a version in a URL.

Version N of `<Name>` is the N-th commit, on the first-parent history of a branch, that changed
`deployments/<Name>/`; a revert is a new version. The history is read with one `git log`
(`LOG_ARGS`, run by the caller's git wrapper: this package runs no git itself) and all folders
are numbered in that one pass, so a caller that needs every deployment's versions pays for one
walk of the history, without blobs (the operator's cache is blobless).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from modelrepo.format.layout import deployment_of

SHA_PREFIX = re.compile(r"^[0-9a-fA-F]{7,40}$")
LATEST = "latest"
# `git <LOG_ARGS> <rev> --` prints what `parse_log` reads: a merge lists the files it changed
# against its first parent. `-m` with log.diffMerges set, not --diff-merges=first-parent, which
# git < 2.31 (Debian bullseye's, in the Python 3.9 image) refuses; older git ignores the key.
LOG_ARGS = (
    "-c", "log.diffMerges=first-parent", "log", "--first-parent", "--reverse", "--no-renames", "-m",
    "--name-only", "-z", "--format=%x1e%H%x1f%cI%x1f%s",
)


@dataclass(frozen=True)
class Version:
    """One version of one deployment: the commit that made it and its 1-based number."""

    number: int
    commit: str
    date: datetime
    message: str


def parse_log(text: str) -> dict[str, list[Version]]:
    """Versions of every deployment folder in a `git log LOG_ARGS` output, oldest first."""
    result: dict[str, list[Version]] = {}
    for record in text.split("\x1e"):
        if not record:
            continue
        header, _, names = record.partition("\0")
        sha, date, message = header.split("\x1f", 2)
        changed: list[str] = []
        for path in names.split("\0"):
            name = deployment_of(path.lstrip("\n"))
            if name and name not in changed:
                changed.append(name)
        when = datetime.fromisoformat(date)
        for name in changed:
            versions = result.setdefault(name, [])
            versions.append(Version(len(versions) + 1, sha, when, message))
    return result


def names_version(ref: str, number: int | None, commit: str, *, is_latest: bool) -> bool:
    """Does `ref` ("latest", a version number, a SHA prefix of 7+ hex digits) name this version?"""
    ref = str(ref).strip()
    if ref == LATEST:
        return is_latest
    if number is not None and ref.isdigit() and len(ref) <= 10 and int(ref) == number:
        return True
    return bool(commit) and bool(SHA_PREFIX.match(ref)) and commit.lower().startswith(ref.lower())


def resolve_version(versions: Sequence[Version], ref: str) -> Version | None:
    """Find `ref` ("latest", a version number, or a commit SHA prefix of 7+ hex digits).

    A ref made only of digits is read as a version number when such a version exists, and
    otherwise as a SHA prefix, so `1234567` still finds a commit when there are fewer versions.
    A SHA prefix matching several versions names none.
    """
    ref = str(ref).strip()
    if not versions:
        return None
    if ref == LATEST:
        return versions[-1]
    if ref.isdigit() and len(ref) <= 10 and 1 <= int(ref) <= len(versions):
        return versions[int(ref) - 1]
    if SHA_PREFIX.match(ref):
        matches = [v for v in versions if v.commit.lower().startswith(ref.lower())]
        if len(matches) == 1:
            return matches[0]
    return None


def describe_range(versions: Sequence[Version]) -> str:
    """"versions are 1 to N" in words a user reads right, also for one version."""
    if len(versions) == 1:
        return "the only version is 1"
    return f"versions are 1 to {len(versions)}"
