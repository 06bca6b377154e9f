"""What a deployment's pods read from the repository besides their folder: its dataset files.

A push that changes only `datasets/` leaves every folder's tree as it was, yet each pod answers
from the queries its init container fetched (`modelrepo fetch --datasets-at`). So every folder
carries the newest commit that changed a dataset it reads (`Folder.datasets_commit`); when that
commit moves, its pods roll (docs/data.md, "Which deployments a dataset change rolls").

Which datasets a folder reads, from the text of its `.py` files at the synced commit (never run):
the literal names of `get_dataset("<name>"...)` calls; a file that calls get_dataset any other
way (a name in a variable) reads every dataset; a folder whose files never call get_dataset
reads none and never rolls for a dataset change. A file that cannot be read counts as reading
every dataset (rolling once too often beats serving an old query).
"""

from __future__ import annotations

import logging
from pathlib import Path

from modelrepo.format import DEPLOYMENTS_DIR, deployment_of
from modelrepo.format.datasets import datasets_read, newest_change
from modelrepo.git import Credentials, GitError
from modelrepo.operator import gitsource
from modelrepo.repository import dataset_changes, ls_tree, read_blob

log = logging.getLogger("modelrepo.operator")

_READS: dict[str, frozenset[str] | None] = {}  # blob id of a .py file -> the datasets it reads
_READS_LIMIT = 20_000


def datasets_commits(
    cache: Path, url: str, sha: str, creds: Credentials | None, names: list[str] | set[str],
) -> dict[str, str]:
    """Folder name -> the newest commit on `sha`'s line that changed a dataset the folder reads
    ("" when it reads none, or none was ever committed). Reads only the folders' .py blobs, and
    only when datasets/ has a history at all."""
    changes = dataset_changes(cache, sha)
    if not changes:
        return {}
    sources = _python_files(cache, sha, set(names))
    unread = [path for path, oid in sources.items() if oid not in _READS]
    try:  # one round trip for the blobs this cache lacks, not one per file
        gitsource.prefetch_blobs(cache, url, sha, unread, creds)
    except GitError as exc:
        log.info("prefetch of %d source files failed (read one by one): %s", len(unread), exc)
    reads: dict[str, frozenset[str] | None] = {name: frozenset() for name in names}
    for path, oid in sources.items():
        name = deployment_of(path) or ""
        found, so_far = _reads(cache, oid), reads.get(name, frozenset())
        reads[name] = None if found is None or so_far is None else so_far | found
    return {name: newest_change(reads[name], changes) for name in names}


def _python_files(cache: Path, sha: str, names: set[str]) -> dict[str, str]:
    """Repository path -> blob id of every .py file in the folders `names` at `sha`."""
    return {
        path: oid for _mode, kind, oid, path in ls_tree(cache, sha, f"{DEPLOYMENTS_DIR}/", recursive=True)
        if kind == "blob" and path.endswith(".py") and deployment_of(path) in names
    }


def _reads(cache: Path, oid: str) -> frozenset[str] | None:
    """The datasets one .py blob reads (cached by blob id: a blob's text never changes)."""
    if oid in _READS:
        return _READS[oid]
    try:
        text = read_blob(cache, oid).decode("utf-8", errors="replace")
    except GitError as exc:
        log.info("reading %s failed; counting it as reading every dataset: %s", oid[:12], exc)
        return None
    if len(_READS) >= _READS_LIMIT:
        _READS.clear()
    _READS[oid] = datasets_read(text)
    return _READS[oid]
