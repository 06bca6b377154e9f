"""The fetcher of the versions pod (docs/operator.md, "Old versions"): any version of a folder, git only.

It runs in a container of its own, the only one of the versions pod that mounts the git Secret,
and it runs git and nothing else: no repository code. The pod's `runtime` container (no Secret)
asks it over HTTP on 127.0.0.1 (not reachable from outside the pod) for two things:

  GET  /versions  -> {"commit": <branch head>, "deployments": {<Name>: [[<number>, <commit>], ...]}}
  POST /fetch     {"name": <Name>, "commit": <40 hex>, "keep": [[<Name>, <commit>], ...]}
                  -> {"dir": "<Name>-<commit>"}: deployments/<Name>/ (with the common/ files it
                     links, its LFS objects and datasets/) at that commit, under --dest, no .git

A fetch is refused unless `commit` is a version of `Name` on the followed branch (a commit of
its first-parent history that changed the folder): whatever runs beside the fetcher can obtain
the deployment folders of that branch, nothing else (no other path, no credential, no .git).
Folders not in `keep` (what the runtime still serves) are removed, so the shared volume holds
only what is served. Version numbers come from a blobless cache of the branch's history
(`repository.deployment_versions`), refreshed by ls-remote at most every `refresh` seconds.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from modelrepo.format import DATASETS_DIR, deployment_path, is_valid_name
from modelrepo.git import SHA_RE, Credentials, GitError, redact_url
from modelrepo.operator import gitsource
from modelrepo.repository import HistoryError, archived_folders, deployment_versions, folder_trees

log = logging.getLogger("modelrepo.fetcher")
MAX_BODY = 64 * 1024
TMP_PREFIX = ".fetching-"
# A folder asked for within this many seconds is never pruned, whatever `keep` says: the runtime
# may still be starting it (another request's keep list was taken before it asked).
PRUNE_GRACE = 300.0


class Refused(Exception):
    """A request the fetcher answers with `status` and a message (no credential in it)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def folder_key(name: str, commit: str) -> str:
    """The directory under --dest holding one version: `<Name>-<commit>`."""
    return f"{name}-{commit}"


def _checked(name: Any, commit: Any, where: str) -> tuple[str, str]:
    if not isinstance(name, str) or not is_valid_name(name):
        raise Refused(400, f"{where}: name must be a deployment name ([A-Za-z_][A-Za-z0-9_]*), got {name!r:.80}")
    if not isinstance(commit, str) or not SHA_RE.match(commit):
        raise Refused(400, f"{where}: commit must be a full commit SHA (40 lowercase hex digits), got {commit!r:.80}")
    return name, commit


def parse_fetch(body: bytes) -> tuple[str, str, set[tuple[str, str]]]:
    """(name, commit, keep) of a POST /fetch body; Refused(400) naming what is wrong."""
    try:
        document = json.loads(body)
    except ValueError:
        raise Refused(400, "the body must be JSON: {\"name\": ..., \"commit\": ..., \"keep\": [...]}") from None
    if not isinstance(document, dict):
        raise Refused(400, "the body must be a JSON object")
    name, commit = _checked(document.get("name"), document.get("commit"), "fetch")
    keep_list = document.get("keep") or []
    if not isinstance(keep_list, list) or not all(isinstance(k, list) and len(k) == 2 for k in keep_list):
        raise Refused(400, "keep must be a list of [name, commit] pairs")
    keep = {_checked(n, c, "keep") for n, c in keep_list}
    return name, commit, keep


@dataclass
class Fetcher:
    """The state of one versions pod's fetcher: the followed branch and what is on the volume."""

    url: str
    ref: str
    dest: Path
    cache: Path
    creds: Credentials | None = None
    refresh: float = 2.0
    head: str = ""
    deployments: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    _checked_at: float = -1e9
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _fetching: dict[str, threading.Lock] = field(default_factory=dict)
    _asked: dict[str, float] = field(default_factory=dict)  # folder key -> last asked (monotonic)

    def clear_partial(self) -> None:
        """Remove what a fetch interrupted by a restart left (complete folders stay: still served)."""
        self.dest.mkdir(parents=True, exist_ok=True)
        for child in self.dest.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(child, ignore_errors=True)

    def versions(self, force: bool = False) -> dict[str, Any]:
        """The version list of the branch head, refreshed when older than `refresh` seconds."""
        with self._lock:
            if force or time.monotonic() - self._checked_at >= self.refresh:
                self._refresh()
            return {"commit": self.head, "deployments": self.deployments}

    def _refresh(self) -> None:
        try:
            head = gitsource.ls_remote(self.url, self.ref, self.creds)
            if head != self.head:
                gitsource.fetch(self.cache, self.url, head, self.creds, ref=self.ref)
                versions = deployment_versions(self.cache, head)
                present = set(folder_trees(self.cache, head))
                present -= archived_folders(self.cache, head, present)
                self.deployments = {
                    n: [(v.number, v.commit) for v in vs] for n, vs in sorted(versions.items()) if n in present
                }
                self.head = head
                log.info("%s at %s: %d deployments", self.ref, head[:12], len(self.deployments))
        except (GitError, HistoryError) as exc:
            raise Refused(502, f"reading {self.ref} of {redact_url(self.url)}: {exc}") from None
        self._checked_at = time.monotonic()

    def is_version(self, name: str, commit: str) -> bool:
        return any(c == commit for _, c in self.deployments.get(name, []))

    def fetch(self, name: str, commit: str, keep: set[tuple[str, str]]) -> str:
        """deployments/<name> at `commit` under dest (once); the directory's name under dest."""
        if not self.is_version(name, commit):
            self.versions(force=True)
            if not self.is_version(name, commit):
                raise Refused(404, f"{commit[:12]} is not a version of {name} on {self.ref}")
        key = folder_key(name, commit)
        with self._lock:
            lock = self._fetching.setdefault(key, threading.Lock())
            self._asked[key] = time.monotonic()
        with lock:
            if not (self.dest / key).is_dir():
                self._fetch_into(name, commit, key)
        self.prune({folder_key(n, c) for n, c in keep} | {key})
        return key

    def _fetch_into(self, name: str, commit: str, key: str) -> None:
        tmp = self.dest / f"{TMP_PREFIX}{key}-{secrets.token_hex(4)}"
        try:
            gitsource.sparse_checkout(self.url, commit, deployment_path(name), tmp, self.creds,
                                      ref=self.ref, also=(DATASETS_DIR,))
            shutil.rmtree(tmp / ".git")
            tmp.rename(self.dest / key)
        except GitError as exc:
            raise Refused(502, f"fetching {deployment_path(name)} at {commit[:12]}: {exc}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("fetched %s at %s", deployment_path(name), commit[:12])

    def prune(self, keep: set[str]) -> None:
        """Remove the folders the runtime no longer serves (fetches in progress and folders asked
        for within PRUNE_GRACE seconds stay)."""
        now = time.monotonic()
        with self._lock:
            recent = {k for k, t in self._asked.items() if now - t < PRUNE_GRACE}
            self._asked = {k: t for k, t in self._asked.items() if k in recent}
        for child in self.dest.iterdir():
            if child.name not in keep | recent and not child.name.startswith(TMP_PREFIX):
                shutil.rmtree(child, ignore_errors=True)


class Handler(BaseHTTPRequestHandler):
    """GET /versions, POST /fetch, GET /livez; JSON answers, errors as {"error": ...}."""

    fetcher: Fetcher  # set on the subclass made by `server()`
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if self.path == "/livez":
            return self._answer(200, {"live": True})
        if self.path != "/versions":
            return self._answer(404, {"error": f"no route GET {self.path[:80]}"})
        self._run(lambda: self.fetcher.versions())

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/fetch":
            return self._answer(404, {"error": f"no route POST {self.path[:80]}"})
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY:
            return self._answer(413, {"error": f"body over {MAX_BODY} bytes"})
        body = self.rfile.read(length)
        self._run(lambda: {"dir": self.fetcher.fetch(*parse_fetch(body))})

    def _run(self, work: Any) -> None:
        try:
            self._answer(200, work())
        except Refused as exc:
            log.warning("%s %s: %s", self.command, self.path, exc)
            self._answer(exc.status, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - answer, never drop the connection
            log.exception("%s %s failed", self.command, self.path)
            self._answer(500, {"error": f"{type(exc).__name__} in the fetcher (see its log)"})

    def _answer(self, status: int, document: Any) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - no request bodies in logs
        log.debug(format, *args)


def server(fetcher: Fetcher, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """The fetcher's HTTP server, on the loopback address only (the pod's containers share it)."""
    handler = type("BoundHandler", (Handler,), {"fetcher": fetcher})
    httpd = ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True
    return httpd
