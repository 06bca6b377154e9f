"""What a deployment's pods read from the repository besides their folder: datasets and common/.

A push that changes only `datasets/` or only a `common/` file leaves every folder's tree as it
was, yet each pod answers from the files its init container fetched. So every folder carries
the commits those files come from, and when one moves its pods roll (docs/data.md, "Which
deployments a dataset change rolls"; docs/repo-format.md, common/):
- `datasets_commit`: the newest commit that changed a dataset the folder reads. Which datasets
  it reads comes from the text of its `.py` files (never run): the literal names of
  `get_dataset("<name>"...)` calls; a file calling get_dataset any other way (a name in a
  variable) reads every dataset; a folder never calling it reads none. A file that cannot be
  read counts as reading every dataset (rolling once too often beats serving an old query).
- `common_commit`: the newest commit after the folder's own that changed a common/ path its
  symbolic links point to; the pod fetches at that commit (where the folder is the same).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from modelrepo.format import DEPLOYMENTS_DIR, SYMLINK_MODE, common_targets, deployment_of
from modelrepo.format.datasets import datasets_read, newest_change
from modelrepo.git import Credentials, GitError
from modelrepo.operator import gitsource
from modelrepo.operator.render import Folder
from modelrepo.repository import dataset_changes, last_change, ls_tree, read_blob

log = logging.getLogger("modelrepo.operator")

_TEXTS: dict[str, str] = {}  # blob id of a .py file or link -> its text (a blob never changes)
_TEXTS_LIMIT = 20_000


def with_inputs(
    cache: Path, url: str, sha: str, creds: Credentials | None, folders: dict[str, Folder],
) -> dict[str, Folder]:
    """`folders` (at `sha`) with `datasets_commit` and `common_commit` filled in. Reads only the
    folders' .py and link blobs, and the .py ones only when datasets/ has a history at all."""
    changes = dataset_changes(cache, sha)
    wanted = {
        path: (mode, oid) for mode, kind, oid, path in ls_tree(cache, sha, f"{DEPLOYMENTS_DIR}/", recursive=True)
        if kind == "blob" and deployment_of(path) in folders
        and (mode == SYMLINK_MODE or (changes and path.endswith(".py")))
    }
    texts = _texts(cache, url, sha, creds, {path: oid for path, (_mode, oid) in wanted.items()})
    reads: dict[str, frozenset[str] | None] = {name: frozenset() for name in folders}
    links: dict[str, dict[str, str]] = {name: {} for name in folders}
    for path, (mode, _oid) in wanted.items():
        name, text = deployment_of(path) or "", texts.get(path)
        if mode == SYMLINK_MODE:
            links[name][path] = text or ""
            continue
        found, so_far = datasets_read(text) if text is not None else None, reads[name]
        reads[name] = None if found is None or so_far is None else so_far | found
    result = {}
    for name, folder in folders.items():
        common = common_targets(links[name])[0]
        result[name] = dataclasses.replace(
            folder, datasets_commit=newest_change(reads[name], changes),
            common_commit=(last_change(cache, folder.commit, sha, common) or "") if common else "",
        )
    return result


def _texts(
    cache: Path, url: str, sha: str, creds: Credentials | None, blobs: dict[str, str],
) -> dict[str, str | None]:
    """Path -> text of each blob (None: unreadable), fetching those the cache lacks at once."""
    unread = [path for path, oid in blobs.items() if oid not in _TEXTS]
    try:  # one round trip for the blobs this cache lacks, not one per file
        gitsource.prefetch_blobs(cache, url, sha, unread, creds)
    except GitError as exc:
        log.info("prefetch of %d files failed (read one by one): %s", len(unread), exc)
    texts: dict[str, str | None] = {}
    for path, oid in blobs.items():
        if oid not in _TEXTS:
            try:
                text = read_blob(cache, oid).decode("utf-8", errors="replace")
            except GitError as exc:
                log.info("reading %s failed (a .py file then reads every dataset): %s", path, exc)
                texts[path] = None
                continue
            if len(_TEXTS) >= _TEXTS_LIMIT:
                _TEXTS.clear()
            _TEXTS[oid] = text
        texts[path] = _TEXTS[oid]
    return texts
