"""Remote git for the operator and the pods' init container: resolve, fetch, export, sparse checkout.

Every command runs through `modelrepo.git` (timeouts, credentials in the environment, redacted
errors); this module knows only which commands the operator's blobless cache and the pods'
shallow, sparse fetch need.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from modelrepo import lfs
from modelrepo.format import common_targets
from modelrepo.format.links import folder_links
from modelrepo.git import (
    SHA_RE,
    Credentials,
    GitError,
    environment,
    is_ssh_url,
    redact_url,
    run,
    try_run,
)

__all__ = [
    "Credentials", "GitError", "check_credentials", "ensure_cache", "export_folder", "export_folders",
    "fetch", "has_commit", "ls_remote", "ls_remote_heads", "prefetch_blobs", "sparse_checkout",
]


def check_credentials(url: str, creds: Credentials | None) -> None:
    """Refuse ssh without known_hosts: the host key must be verified, never trusted blindly."""
    if is_ssh_url(url) and not (creds and creds.known_hosts):
        raise GitError("ssh URL needs a Secret with `known_hosts` (host keys are always verified)")


def ls_remote(url: str, ref: str, creds: Credentials | None = None) -> str:
    """Resolve a branch, tag or full SHA to a commit SHA with one `git ls-remote`."""
    if SHA_RE.match(ref):
        return ref
    check_credentials(url, creds)
    with environment(creds, url) as env:
        out = run(["ls-remote", "--", url, f"refs/heads/{ref}", f"refs/tags/{ref}", f"refs/tags/{ref}^{{}}"], env=env, creds=creds)
    refs: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    for name in (f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}"):
        if name in refs:
            return refs[name]
    raise GitError(f"no branch or tag {ref!r} in {redact_url(url)}")


def ls_remote_heads(url: str, creds: Credentials | None = None) -> dict[str, str]:
    """Every branch of the remote and its head commit, with one `git ls-remote --heads`
    (spec.branches: names and patterns are matched against these)."""
    check_credentials(url, creds)
    with environment(creds, url) as env:
        out = run(["ls-remote", "--heads", "--", url], env=env, creds=creds)
    heads: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if name.startswith("refs/heads/") and SHA_RE.match(sha):
            heads[name.removeprefix("refs/heads/")] = sha
    return heads


def ensure_cache(cache: Path, url: str) -> Path:
    """A bare, blobless (partial) repository for one ModelRepo; its origin follows `url`."""
    if not (cache / "HEAD").exists():
        cache.mkdir(parents=True, exist_ok=True)
        run(["init", "--bare", "-q", str(cache)])
        for key, value in (
            ("core.repositoryformatversion", "1"),
            ("extensions.partialClone", "origin"),
            ("remote.origin.promisor", "true"),
            ("remote.origin.partialclonefilter", "blob:none"),
            ("gc.auto", "0"),
        ):
            run(["config", key, value], cwd=cache)
    run(["config", "remote.origin.url", url], cwd=cache)
    return cache


def has_commit(cache: Path, sha: str) -> bool:
    return try_run(["cat-file", "-e", f"{sha}^{{commit}}"], cwd=cache) is not None


def fetch(cache: Path, url: str, sha: str, creds: Credentials | None = None, ref: str | None = None) -> None:
    """Fetch commit `sha` (and its history, without blobs) into the cache; no-op if present."""
    ensure_cache(cache, url)
    if has_commit(cache, sha):
        run(["update-ref", "refs/modelrepo/head", sha], cwd=cache)
        return
    check_credentials(url, creds)
    with environment(creds, url) as env:
        wants = [f"+refs/heads/{ref}:refs/modelrepo/branches/{ref}"] if ref and not SHA_RE.match(ref) else []
        try:
            run(["fetch", "-q", "--no-tags", "--filter=blob:none", "origin", *(wants or [sha])], cwd=cache, env=env, creds=creds)
        except GitError:
            if not wants:
                raise
        if not has_commit(cache, sha):  # the branch moved on, or a tag: ask for the SHA itself
            run(["fetch", "-q", "--no-tags", "--filter=blob:none", "origin", sha], cwd=cache, env=env, creds=creds)
    if not has_commit(cache, sha):
        raise GitError(f"commit {sha[:12]} not found in {redact_url(url)}")
    run(["update-ref", "refs/modelrepo/head", sha], cwd=cache)


def prefetch_blobs(
    cache: Path, url: str, sha: str, paths: list[str], creds: Credentials | None = None, chunk: int = 2000
) -> int:
    """Fetch the missing blobs under `paths` at `sha` in a few round trips (not one per file)."""
    if not paths:
        return 0
    # --no-walk: the blobs of `sha` only, not those of every older commit touching `paths`
    out = run(["rev-list", "--objects", "--missing=print", "--no-walk", sha, "--", *paths], cwd=cache)
    missing = [line[1:].strip() for line in out.splitlines() if line.startswith("?")]
    if not missing:
        return 0
    with environment(creds, url) as env:
        for i in range(0, len(missing), chunk):
            run(
                ["-c", "fetch.writeCommitGraph=false", "fetch", "-q", "--no-tags", "--no-write-fetch-head",
                 "origin", *missing[i:i + chunk]],
                cwd=cache, env=env, creds=creds,
            )
    return len(missing)


def export_folders(
    cache: Path, url: str, sha: str, paths: list[str], dest: Path, creds: Credentials | None = None
) -> Path:
    """Write the files under `paths` at `sha` below `dest` in one checkout; returns `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    if not paths:
        return dest
    with environment(creds, url) as env:
        env["GIT_INDEX_FILE"] = str(dest / ".modelrepo-index")
        try:
            def checkout(wanted: list[str]) -> None:
                run(
                    ["--git-dir", str(cache), "--work-tree", str(dest), "checkout", "-q", sha, "--", *wanted],
                    env=env, creds=creds,
                )

            checkout(paths)
            common = _existing(cache, sha, linked_common(dest, paths))
            if common:  # Modelbit's shared files, linked into the folders from common/
                checkout(common)
        finally:
            Path(env["GIT_INDEX_FILE"]).unlink(missing_ok=True)
    return dest


def linked_common(root: Path, paths: list[str]) -> list[str]:
    """The common/ paths the symbolic links under `root/<path>` point to (refused links skipped:
    the folder check names them)."""
    links: dict[str, str] = {}
    for path in paths:
        links.update(folder_links(root, path))
    return common_targets(links)[0]


def _existing(
    cache: Path | None, sha: str, paths: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
) -> list[str]:
    """Those of `paths` that exist at `sha` (a dangling link is named by the folder check).

    `env`: the pod's git environment (its safe.directory: /model belongs to another uid)."""
    if not paths:
        return []
    out = run(["ls-tree", "-r", "-z", "--name-only", sha, "--", *paths], cwd=cache or cwd, env=env)
    present = [p for p in out.split("\0") if p]
    return [p for p in paths if any(q == p or q.startswith(p + "/") for q in present)]


def export_folder(
    cache: Path, url: str, sha: str, path: str, dest: Path, creds: Credentials | None = None
) -> Path:
    """Write the files of `path` at `sha` under `dest` (missing blobs fetched on demand)."""
    return export_folders(cache, url, sha, [path], dest, creds) / path


def sparse_checkout(
    url: str, sha: str, path: str, dest: Path, creds: Credentials | None = None, ref: str | None = None,
    also: Sequence[str] = (), also_at: str | None = None,
) -> Path:
    """Fetch only `path` (and the folders in `also`, if present) at `sha` into `dest`: shallow, blobless, sparse.

    `also_at`: take the `also` folders from that commit instead (the newest commit that changed
    them, so an unrelated push changes nothing in the pod).

    Used by the pods' init container; falls back to fetching the branch when the server refuses
    a request for a bare SHA (protocol v0 servers without allowReachableSHA1InWant).
    """
    check_credentials(url, creds)
    dest.mkdir(parents=True, exist_ok=True)
    with environment(creds, url) as env:
        def git(*args: str) -> str:
            return run(list(args), cwd=dest, env=env, creds=creds)

        git("init", "-q")
        git("remote", "add", "origin", url)
        git("config", "core.sparseCheckout", "true")
        git("sparse-checkout", "set", "--no-cone", *(f"/{p.strip('/')}/" for p in (path, *also)))

        def fetch_commit(commit: str) -> None:
            try:
                git("fetch", "-q", "--no-tags", "--depth=1", "--filter=blob:none", "origin", commit)
            except GitError:
                if not ref or SHA_RE.match(ref):
                    raise
                git("fetch", "-q", "--no-tags", "--filter=blob:none", "origin", f"+refs/heads/{ref}:refs/remotes/origin/{ref}")

        fetch_commit(sha)
        env["GIT_LFS_SKIP_SMUDGE"] = "1"  # pointers first; lfs.materialize fetches only this folder's
        git("-c", "advice.detachedHead=false", "checkout", "-q", sha)
        common = _existing(None, sha, linked_common(dest, [path.strip("/")]), cwd=dest, env=env)
        if common:  # Modelbit's shared files: the common/ paths the folder's links point to
            git("sparse-checkout", "add", *(f"/{p}" for p in common))
        if also and also_at and also_at != sha:
            fetch_commit(also_at)
            for extra in also:
                shutil.rmtree(dest / extra, ignore_errors=True)
                if git("ls-tree", "--name-only", also_at, "--", extra.strip("/")):
                    git("checkout", "-q", also_at, "--", extra.strip("/"))
        lfs.materialize(dest, sha, dest, [path.strip("/"), *common], env=env, creds=creds, move=True)
    folder = dest / path
    if not folder.is_dir():
        raise GitError(f"{path} does not exist at commit {sha[:12]}")
    return folder
