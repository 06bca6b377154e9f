"""Open a model repository given on the command line: a work tree, a bare repository or a URL.

Reading versions needs git history only, so a bare repository is as good as a clone; a URL is
cloned once (blobless, bare) into a temporary directory for the command's lifetime.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modelrepo import git


class SourceError(Exception):
    """The repository could not be opened or the revision is unknown; the message says which."""


@contextlib.contextmanager
def git_dir(source: str) -> Iterator[Path]:
    """The git directory of `source` (path or URL) for reading committed history."""
    if git.is_url(source):
        with tempfile.TemporaryDirectory(prefix="modelrepo-list-") as tmp:
            try:
                git.run(["clone", "-q", "--bare", "--filter=blob:none", source, tmp])
            except git.GitError as exc:
                raise SourceError(f"cloning {git.redact_url(source)} failed: {exc}") from None
            yield Path(tmp)
        return
    if not Path(source).is_dir():
        raise SourceError(f"{source}: no such directory")
    found = git.try_run(["rev-parse", "--absolute-git-dir"], cwd=source)
    if found is None:
        raise SourceError(f"{source} is not a git repository")
    yield Path(found)


def resolve(repo: Path, rev: str, source: str) -> str | None:
    """The commit `rev` names; None for an unborn HEAD; SourceError naming the branches otherwise."""
    sha = git.rev_parse(repo, rev)
    if sha:
        return sha
    if rev == "HEAD" or rev == (git.try_run(["symbolic-ref", "-q", "--short", "HEAD"], cwd=repo) or ""):
        return None
    branches = (git.try_run(["for-each-ref", "--format=%(refname:short)", "refs/heads/", "refs/remotes/"],
                            cwd=repo) or "").split()
    known = ", ".join(branches) if branches else "none"
    raise SourceError(
        f"{source} has no branch, tag or commit {rev!r} (branches: {known}); "
        f"a branch only on the remote must be fetched first: `git -C {source} fetch origin {rev}`"
    )
