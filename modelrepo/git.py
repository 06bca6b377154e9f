"""The one way modelrepo runs git: every git command of the SDK, runtime, operator and CLI.

`run()` is the only place that starts a git process. It gives every command a timeout, a
predictable environment (no terminal prompts, C locale) and, when talking to a remote,
credentials through the environment (`environment()`: GIT_ASKPASS, GIT_CONFIG_PARAMETERS headers,
GIT_SSH_COMMAND), so they never appear on a command line. A failure raises `GitError`, whose
command and stderr are already redacted (URL userinfo and every secret value replaced by
`***`): it is safe to print, log, post as an Event or write into a status.
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# Seconds one git command may take: long enough for a large fetch, short enough that a hung
# server never freezes a sync loop, a poll thread or a notebook forever.
TIMEOUT = 300.0
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_USERINFO_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:")
_NOISE = ("Please make sure you have", "and the repository exists")


class GitError(Exception):
    """A git operation failed. The message (git's stderr, or what was wrong) and `command` are
    redacted and safe to show; `returncode` is None when git did not run to an exit."""

    def __init__(self, message: str, *, command: str = "", returncode: int | None = None) -> None:
        self.command = command
        self.returncode = returncode
        super().__init__(message)

    @property
    def stderr(self) -> str:
        return str(self)


def redact_urls(text: str) -> str:
    """Replace the userinfo of every URL in `text` with `***` (ssh `git@host:` has none to hide)."""
    return _USERINFO_RE.sub(lambda m: f"{m.group('scheme')}***@", text)


def redact_url(url: str) -> str:
    """A URL fit for logs and status: no password, no token."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
    return url


# Schemes whose userinfo is a secret even without a colon (`https://<token>@host`); for ssh a
# bare user (`ssh://git@host`) is no secret, a `user:password` is.
_SECRET_USERINFO_SCHEMES = {"http", "https", "git", "ftp", "ftps"}


def url_has_credentials(url: str) -> bool:
    """True if `url` embeds a password or token (`https://user:pass@`, `https://token@`, `ssh://u:p@`)."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return False
    userinfo = parts.netloc.rsplit("@", 1)[0]
    return parts.scheme.lower() in _SECRET_USERINFO_SCHEMES or ":" in userinfo


def strip_credentials(url: str) -> str:
    """`url` without the userinfo `url_has_credentials` objects to."""
    if not url_has_credentials(url):
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def is_ssh_url(url: str) -> bool:
    return url.startswith("ssh://") or bool(_SCP_LIKE.match(url))


def is_url(source: str) -> bool:
    """A remote location (any scheme, or scp-like `user@host:path`) rather than a local path."""
    return "://" in source or bool(_SCP_LIKE.match(source))


@dataclass(frozen=True)
class Credentials:
    """Credentials from a Secret (keys: username + password | bearerToken | identity + known_hosts)."""

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


_ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$MODELREPO_GIT_USERNAME" ;;
  *) printf '%s\\n' "$MODELREPO_GIT_PASSWORD" ;;
esac
"""


def base_environment() -> dict[str, str]:
    """The environment of every git command: the caller's, without prompts, in the C locale."""
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


@contextlib.contextmanager
def environment(creds: Credentials | None, url: str) -> Iterator[dict[str, str]]:
    """A hermetic environment for git commands talking to `url` with `creds`; temp files removed after.

    No user or global config is read (the operator and the pods must not depend on one).
    """
    env = {
        k: v for k, v in base_environment().items()
        if not k.startswith(("GIT_", "MODELREPO_GIT_", "SSH_ASKPASS"))
    }
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_PROTOCOL_FROM_USER": "0", "LC_ALL": "C"})
    env.setdefault("HOME", tempfile.gettempdir())
    creds = creds or Credentials()
    tmp = tempfile.mkdtemp(prefix="modelrepo-git-")
    try:
        os.chmod(tmp, 0o700)
        # Pods clone into an emptyDir owned by root, which git >= 2.35.2 would refuse as
        # "dubious ownership" (settable only in global config). Git < 2.32 (Debian bullseye's,
        # in the Python 3.9 image, has the check) knows no GIT_CONFIG_GLOBAL: it reads the same
        # file as $XDG_CONFIG_HOME/git/config.
        global_config = Path(tmp, "git", "config")
        global_config.parent.mkdir()
        global_config.write_text("[safe]\n\tdirectory = *\n")
        env["GIT_CONFIG_GLOBAL"] = str(global_config)
        env["XDG_CONFIG_HOME"] = tmp
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
        # What `git -c` hands to its children, in the form every git reads: GIT_CONFIG_COUNT
        # needs git >= 2.31 (Debian bullseye's 2.30, in the Python 3.9 image, ignores it).
        env["GIT_CONFIG_PARAMETERS"] = " ".join(_sq_quote(f"{key}={value}") for key, value in config)
        if is_ssh_url(url):
            env["GIT_SSH_COMMAND"] = _ssh_command(creds, tmp)
        yield env
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sq_quote(text: str) -> str:
    """`text` in single quotes as git reads GIT_CONFIG_PARAMETERS (a quote inside as '\\'')."""
    return "'" + text.replace("'", "'\\''") + "'"


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


def run(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    creds: Credentials | None = None,
    timeout: float = TIMEOUT,
    input: bytes | None = None,
    binary: bool = False,
) -> str:
    """Run `git <args>`; return its stdout (bytes if `binary`, else text without the final newline).

    On a non-zero exit or after `timeout` seconds raise GitError with the redacted command and
    the last lines of stderr.
    """
    args = list(args)
    redact = (creds or Credentials()).redact
    command = redact("git " + " ".join(args[:3]) + (" ..." if len(args) > 3 else ""))
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, env=dict(env) if env is not None else base_environment(),
            capture_output=True, timeout=timeout, input=input, check=False,
        )
    except subprocess.TimeoutExpired:
        raise GitError(f"{command} timed out after {timeout:g}s", command=command) from None
    except OSError as exc:  # git missing, cwd gone
        raise GitError(f"{command}: {redact(str(exc))}", command=command) from None
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip() or f"exited {proc.returncode}"
        lines = [line.strip() for line in message.splitlines() if line.strip() and not line.startswith(_NOISE)]
        raise GitError(redact("; ".join(lines[-4:])), command=command, returncode=proc.returncode)
    if binary:
        return proc.stdout  # type: ignore[return-value]
    return proc.stdout.decode(errors="replace").removesuffix("\n")


def try_run(args: Sequence[str], **kwargs: object) -> str | None:
    """`run()`, but None instead of GitError: for questions whose answer may be "no"."""
    try:
        return run(args, **kwargs)  # type: ignore[arg-type]
    except GitError:
        return None


def rev_parse(cwd: str | os.PathLike[str], rev: str) -> str | None:
    """The commit SHA `rev` names in the repository at `cwd`, or None when it names none."""
    return try_run(["rev-parse", "-q", "--verify", f"{rev}^{{commit}}"], cwd=cwd) or None
