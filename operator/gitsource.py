"""Git access for the operator and the pods' init container: resolve, fetch, read trees.

Everything goes through the `git` command line (GitPython's `Git` runner) with credentials
passed in the environment (GIT_ASKPASS, GIT_CONFIG_* headers, GIT_SSH_COMMAND) so they never
appear on a command line, in a log line, an Event or a status message.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEPLOYMENTS_DIR = "deployments"
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
GIT_TIMEOUT = 300  # seconds for one git network command


class GitError(Exception):
    """A git command failed; the message is already redacted and safe to show."""


@dataclass(frozen=True)
class Credentials:
    """Credentials from a ModelRepo's Secret (keys as documented in DESIGN §5)."""

    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    identity: bytes | None = None
    known_hosts: bytes | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:  # never print secret values
        kinds = [k for k in ("username", "password", "bearer_token", "identity", "known_hosts") if getattr(self, k)]
        return f"Credentials({', '.join(kinds)})"

    @classmethod
    def from_mapping(cls, data: Mapping[str, bytes]) -> Credentials:
        """Build from decoded Secret data (key -> bytes)."""

        def text(key: str) -> str | None:
            value = data.get(key)
            return value.decode().strip() if value else None

        creds = cls(
            username=text("username"),
            password=text("password"),
            bearer_token=text("bearerToken"),
            identity=data.get("identity") or None,
            known_hosts=data.get("known_hosts") or None,
        )
        secret_values = tuple(
            v for v in (creds.password, creds.bearer_token, (creds.identity or b"").decode(errors="ignore").strip())
            if v and len(v) >= 4
        )
        return cls(**{**creds.__dict__, "secrets": secret_values})

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str] | None) -> Credentials:
        """Build from a Secret's `.data` (base64 values)."""
        return cls.from_mapping({k: base64.b64decode(v) for k, v in (data or {}).items()})

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str]) -> Credentials:
        """Build from a mounted Secret volume (one file per key)."""
        root = Path(path)
        if not root.is_dir():
            return cls()
        data = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file() and not p.name.startswith("..")}
        return cls.from_mapping(data)

    def redact(self, text: str) -> str:
        """Remove every secret value and URL userinfo from a message."""
        for value in self.secrets:
            text = text.replace(value, "***")
        return redact_urls(text)


_USERINFO_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def redact_urls(text: str) -> str:
    """Replace the userinfo of every URL in `text` with `***` (ssh `git@host:` has none to hide)."""
    return _USERINFO_RE.sub(lambda m: f"{m.group('scheme')}***@", text)


def redact_url(url: str) -> str:
    """A URL fit for logs and status: no password, no token."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
    return url


def is_ssh_url(url: str) -> bool:
    return url.startswith("ssh://") or bool(re.match(r"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:", url))


_ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$MODELREPO_GIT_USERNAME" ;;
  *) printf '%s\\n' "$MODELREPO_GIT_PASSWORD" ;;
esac
"""


@contextlib.contextmanager
def git_environment(creds: Credentials | None, url: str) -> Iterator[dict[str, str]]:
    """Environment for git commands talking to `url` with `creds`; temp files removed after."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("GIT_", "MODELREPO_GIT_", "SSH_ASKPASS"))
    }
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_PROTOCOL_FROM_USER": "0", "LC_ALL": "C"})
    env.setdefault("HOME", tempfile.gettempdir())
    creds = creds or Credentials()
    tmp = tempfile.mkdtemp(prefix="modelrepo-git-")
    try:
        os.chmod(tmp, 0o700)
        # Hermetic: no user/global config; and pods clone into an emptyDir owned by root, which
        # git >= 2.35.2 would refuse as "dubious ownership" (settable only in global config).
        global_config = Path(tmp, "gitconfig")
        global_config.write_text("[safe]\n\tdirectory = *\n")
        env["GIT_CONFIG_GLOBAL"] = str(global_config)
        config: list[tuple[str, str]] = [("protocol.file.allow", "always"), ("core.askPass", "")]
        if creds.username or creds.password:
            askpass = Path(tmp, "askpass.sh")
            askpass.write_text(_ASKPASS)
            askpass.chmod(stat.S_IRWXU)
            env["GIT_ASKPASS"] = str(askpass)
            env["MODELREPO_GIT_USERNAME"] = creds.username or ""
            env["MODELREPO_GIT_PASSWORD"] = creds.password or ""
            config = [c for c in config if c[0] != "core.askPass"]
        if creds.bearer_token:
            config.append(("http.extraHeader", f"Authorization: Bearer {creds.bearer_token}"))
        for i, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        env["GIT_CONFIG_COUNT"] = str(len(config))
        if is_ssh_url(url):
            env["GIT_SSH_COMMAND"] = _ssh_command(creds, tmp)
        yield env
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ssh_command(creds: Credentials, tmp: str) -> str:
    """ssh with the Secret's key and known_hosts; the host key is always verified."""
    known_hosts = Path(tmp, "known_hosts")
    known_hosts.write_bytes(creds.known_hosts or b"")
    parts = [
        "ssh", "-F", "/dev/null",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=20",
        "-o", "LogLevel=ERROR",
    ]
    if creds.identity:
        identity = Path(tmp, "identity")
        key = creds.identity if creds.identity.endswith(b"\n") else creds.identity + b"\n"
        identity.write_bytes(key)
        identity.chmod(0o600)
        parts += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
    return " ".join(parts)


def run_git(
    args: list[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    creds: Credentials | None = None,
    timeout: float = GIT_TIMEOUT,
    input: bytes | None = None,
) -> str:
    """Run git; on failure raise GitError with the redacted stderr."""
    try:
        proc = subprocess.run(
            ["git", *args], env=dict(env) if env is not None else None, cwd=cwd,
            capture_output=True, timeout=timeout, input=input, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip() or f"git {args[0]} exited {proc.returncode}"
        lines = [
            line.strip() for line in message.splitlines()
            if line.strip() and not line.startswith(("Please make sure you have", "and the repository exists"))
        ]
        message = "; ".join(lines[-4:])
        raise GitError((creds or Credentials()).redact(redact_urls(message)))
    return proc.stdout.decode(errors="replace")


def check_credentials(url: str, creds: Credentials | None) -> None:
    """Refuse ssh without known_hosts: the host key must be verified, never trusted blindly."""
    if is_ssh_url(url) and not (creds and creds.known_hosts):
        raise GitError("ssh URL needs a Secret with `known_hosts` (host keys are always verified)")


def ls_remote(url: str, ref: str, creds: Credentials | None = None) -> str:
    """Resolve a branch, tag or full SHA to a commit SHA with one `git ls-remote`."""
    if SHA_RE.match(ref):
        return ref
    check_credentials(url, creds)
    with git_environment(creds, url) as env:
        out = run_git(["ls-remote", "--", url, f"refs/heads/{ref}", f"refs/tags/{ref}", f"refs/tags/{ref}^{{}}"], env=env, creds=creds)
    refs: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    for name in (f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}"):
        if name in refs:
            return refs[name]
    raise GitError(f"no branch or tag {ref!r} in {redact_url(url)}")


def ensure_cache(cache: Path, url: str) -> Path:
    """A bare, blobless (partial) repository for one ModelRepo; its origin follows `url`."""
    if not (cache / "HEAD").exists():
        cache.mkdir(parents=True, exist_ok=True)
        run_git(["init", "--bare", "-q", str(cache)])
        for key, value in (
            ("core.repositoryformatversion", "1"),
            ("extensions.partialClone", "origin"),
            ("remote.origin.promisor", "true"),
            ("remote.origin.partialclonefilter", "blob:none"),
            ("gc.auto", "0"),
        ):
            run_git(["config", key, value], cwd=cache)
    run_git(["config", "remote.origin.url", url], cwd=cache)
    return cache


def has_commit(cache: Path, sha: str) -> bool:
    try:
        run_git(["cat-file", "-e", f"{sha}^{{commit}}"], cwd=cache)
        return True
    except GitError:
        return False


def fetch(cache: Path, url: str, sha: str, creds: Credentials | None = None, ref: str | None = None) -> None:
    """Fetch commit `sha` (and its history, without blobs) into the cache; no-op if present."""
    ensure_cache(cache, url)
    if has_commit(cache, sha):
        run_git(["update-ref", "refs/modelrepo/head", sha], cwd=cache)
        return
    check_credentials(url, creds)
    with git_environment(creds, url) as env:
        wants = [f"+refs/heads/{ref}:refs/modelrepo/branch"] if ref and not SHA_RE.match(ref) else []
        try:
            run_git(["fetch", "-q", "--no-tags", "--filter=blob:none", "origin", *(wants or [sha])], cwd=cache, env=env, creds=creds)
        except GitError:
            if not wants:
                raise
        if not has_commit(cache, sha):  # the branch moved on, or a tag: ask for the SHA itself
            run_git(["fetch", "-q", "--no-tags", "--filter=blob:none", "origin", sha], cwd=cache, env=env, creds=creds)
    if not has_commit(cache, sha):
        raise GitError(f"commit {sha[:12]} not found in {redact_url(url)}")
    run_git(["update-ref", "refs/modelrepo/head", sha], cwd=cache)


def folder_trees(cache: Path, sha: str) -> dict[str, str]:
    """Name -> tree hash of every directory directly under deployments/ at `sha` (no blob needed)."""
    out = run_git(["ls-tree", "-z", sha, f"{DEPLOYMENTS_DIR}/"], cwd=cache)
    trees: dict[str, str] = {}
    for entry in out.split("\0"):
        if not entry:
            continue
        meta, _, path = entry.partition("\t")
        mode, kind, oid = meta.split()
        if kind == "tree":
            trees[path.rsplit("/", 1)[-1]] = oid
    return trees


def prefetch_blobs(
    cache: Path, url: str, sha: str, paths: list[str], creds: Credentials | None = None, chunk: int = 2000
) -> int:
    """Fetch the missing blobs under `paths` at `sha` in a few round trips (not one per file)."""
    if not paths:
        return 0
    out = run_git(["rev-list", "--objects", "--missing=print", sha, "--", *paths], cwd=cache)
    missing = [line[1:].strip() for line in out.splitlines() if line.startswith("?")]
    if not missing:
        return 0
    with git_environment(creds, url) as env:
        for i in range(0, len(missing), chunk):
            run_git(
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
    with git_environment(creds, url) as env:
        env["GIT_INDEX_FILE"] = str(dest / ".modelrepo-index")
        try:
            run_git(
                ["--git-dir", str(cache), "--work-tree", str(dest), "checkout", "-q", sha, "--", *paths],
                env=env, creds=creds,
            )
        finally:
            Path(env["GIT_INDEX_FILE"]).unlink(missing_ok=True)
    return dest


def export_folder(
    cache: Path, url: str, sha: str, path: str, dest: Path, creds: Credentials | None = None
) -> Path:
    """Write the files of `path` at `sha` under `dest` (missing blobs fetched on demand)."""
    return export_folders(cache, url, sha, [path], dest, creds) / path


def sparse_checkout(
    url: str, sha: str, path: str, dest: Path, creds: Credentials | None = None, ref: str | None = None
) -> Path:
    """Fetch only `path` at `sha` into the work tree `dest`: shallow, blobless, sparse.

    Used by the pods' init container; falls back to fetching the branch when the server refuses
    a request for a bare SHA (protocol v0 servers without allowReachableSHA1InWant).
    """
    check_credentials(url, creds)
    dest.mkdir(parents=True, exist_ok=True)
    with git_environment(creds, url) as env:
        def git(*args: str) -> str:
            return run_git(list(args), cwd=dest, env=env, creds=creds)

        git("init", "-q")
        git("remote", "add", "origin", url)
        git("config", "core.sparseCheckout", "true")
        git("sparse-checkout", "set", "--no-cone", f"/{path.strip('/')}/")
        try:
            git("fetch", "-q", "--no-tags", "--depth=1", "--filter=blob:none", "origin", sha)
        except GitError:
            if not ref or SHA_RE.match(ref):
                raise
            git("fetch", "-q", "--no-tags", "--filter=blob:none", "origin", f"+refs/heads/{ref}:refs/remotes/origin/{ref}")
        git("-c", "advice.detachedHead=false", "checkout", "-q", sha)
    folder = dest / path
    if not folder.is_dir():
        raise GitError(f"{path} does not exist at commit {sha[:12]}")
    return folder
