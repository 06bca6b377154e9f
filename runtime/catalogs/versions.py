"""The catalog of the cluster's versions pod: any version of any deployment of one branch, on demand.

`modelrepo runtime --fetcher URL --versions-dir DIR` serves `/v1/<Name>/<N | SHA prefix>` and
`/v1/<Name>/<branch>/<ref>`. It has no git and no credentials: the version list and the folders
come from the pod's fetcher container (modelrepo.operator.fetcher) over 127.0.0.1, the folders
through a volume this container mounts read-only. Each version loads in a worker process of its
own into a bounded cache (catalogs/ondemand.py), with the same answer headers as the version's
own pod. Unknown name or version: 404 saying which exist; a version whose fetch or load fails:
503 saying why.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelrepo import datasets
from modelrepo.format import DATASETS_DIR, DEPLOYMENTS_DIR, Version, describe_range, resolve_version
from modelrepo.runtime.app import NotFound, NotReady
from modelrepo.runtime.catalogs.ondemand import OnDemand, label, start_isolated
from modelrepo.runtime.served import Served, answer_headers

log = logging.getLogger("modelrepo.runtime")
MAX_CACHED = 4
FETCH_TIMEOUT = 600.0  # a large folder with LFS objects may take minutes
_EPOCH = datetime.fromtimestamp(0, timezone.utc)


class FetchFailed(Exception):
    """The fetcher could not give what was asked (the message is the fetcher's, without credentials)."""


class FetcherClient:
    """HTTP to the pod's fetcher: the version list and one folder at one commit."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _call(self, path: str, body: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="GET" if body is None else "POST",
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error") or exc.reason
            except ValueError:
                message = exc.reason
            raise FetchFailed(str(message)) from None
        except (OSError, ValueError) as exc:
            raise FetchFailed(f"the fetcher at {self.url} is not answering: {exc}") from None

    def versions(self) -> tuple[str, dict[str, list[Version]]]:
        """(branch head, versions of every deployment at the head, oldest first)."""
        answer = self._call("/versions", None, 120.0)
        return answer["commit"], {
            name: [Version(number, commit, _EPOCH, "") for number, commit in pairs]
            for name, pairs in answer["deployments"].items()
        }

    def fetch(self, name: str, commit: str, keep: list[tuple[str, str]]) -> str:
        """The directory (under the shared volume) holding deployments/<name> at `commit`."""
        answer = self._call("/fetch", {"name": name, "commit": commit, "keep": [list(k) for k in keep]}, FETCH_TIMEOUT)
        return str(answer["dir"])


class VersionsCatalog:
    """Serves every version of every deployment of `branch`, each loaded on its first call."""

    def __init__(
        self, fetcher: str, versions_dir: str | Path, branch: str, *, max_cached: int = MAX_CACHED,
        refresh: float = 2.0, default_timeout: float | None = None, memory_limit: int | None = None,
        load_timeout: float = 120.0,
    ) -> None:
        self.client = FetcherClient(fetcher)
        self.versions_dir = Path(versions_dir)
        self.branch = branch
        self.refresh = refresh
        self.default_timeout = default_timeout
        self.memory_limit = memory_limit
        self.load_timeout = load_timeout
        self.headers = answer_headers("", None)
        self._head = ""
        self._versions: dict[str, list[Version]] = {}
        self._listed_at = -1e9
        self._error = "asking the fetcher for the version list"
        self._on_demand = OnDemand(self.load, max_cached)
        self._keep: tuple[tuple[str, str], ...] = ()  # what is held, for the fetcher's pruning
        self._stop = threading.Event()

    def start(self) -> None:
        """Ask for the version list until it comes (readiness waits for it)."""
        threading.Thread(target=self._first_list, name="modelrepo-versions", daemon=True).start()

    def _first_list(self) -> None:
        while not self._stop.is_set() and not self._head:
            try:
                self._list()
            except FetchFailed as exc:
                if str(exc) != self._error:
                    print(f"version list not available yet: {exc}", flush=True)
                self._error = str(exc)
                self._stop.wait(2.0)

    def stop(self) -> None:
        self._stop.set()
        self._on_demand.close()

    def _list(self) -> None:
        head, versions = self.client.versions()
        self._versions, self._head, self._listed_at = versions, head, time.monotonic()
        self.headers = answer_headers(head, None)
        self._error = ""

    async def _known(self, name: str, ref: str) -> Version | None:
        """The version `ref` names, asking the fetcher again when the list may be stale."""
        found = resolve_version(self._versions.get(name, []), ref)
        if found is None and time.monotonic() - self._listed_at >= self.refresh:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self._list)
            except FetchFailed as exc:
                self._error = str(exc)
                if not self._head:
                    raise NotReady(f"the version list of {self.branch} is not available: {exc}") from None
            found = resolve_version(self._versions.get(name, []), ref)
        return found

    async def resolve(self, name: str, ref: str, branch: str | None = None) -> Served:
        if branch is not None and branch != self.branch:
            raise NotFound(f"{name}: this runtime serves the versions of branch {self.branch}, not {branch}")
        version = await self._known(name, ref)
        if version is None:
            versions = self._versions.get(name)
            if not versions:
                known = ", ".join(sorted(self._versions)) or "none"
                raise NotFound(f"no deployment {name} on branch {self.branch} (deployments: {known})")
            raise NotFound(f"{name} has no version {ref} on branch {self.branch} "
                           f"({describe_range(versions)}, or a commit SHA prefix)")
        self._keep = (*self._on_demand.keys(), (name, version.commit))
        try:
            return await self._on_demand.get(name, version)
        except FetchFailed as exc:
            raise NotReady(f"{label(name, version)} could not be fetched: {exc}") from None

    def load(self, name: str, version: Version) -> Served:
        """Fetch (through the fetcher) and start one version (a thread; DeploymentError if refused)."""
        root = self.versions_dir / self.client.fetch(name, version.commit, list(self._keep))
        folder = root / DEPLOYMENTS_DIR / name
        if not folder.is_dir():  # not the version's fault: not remembered as refused
            raise FetchFailed(f"{folder} is missing after the fetch")
        return start_isolated(
            name, version, folder, memory_limit=self.memory_limit, load_timeout=self.load_timeout,
            default_timeout=self.default_timeout, env={datasets.DIR_ENV: str(root / DATASETS_DIR)},
        )

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        loaded = [{"name": s.name, "version": s.number, "commit": s.commit} for s in self._on_demand.values()]
        details: dict[str, Any] = {"branch": self.branch, "commit": self._head, "loaded": loaded}
        if not self._head:
            details["error"] = self._error
            return False, details
        return True, details
