"""The catalog of `modelrepo serve`: every deployment of a branch head, following new commits.

Committed state only: each version's folder is extracted with `git archive` into a cache
directory keyed by commit (never the work tree). A poll thread watches the branch; a changed
folder is loaded (import + docstring tests) beside the old version and swapped in only when
it is ready, so requests never see a gap; a version that fails leaves the old one serving and
the reason is printed. Older versions load on demand into a small LRU cache.

Every version runs in a worker process of its own (runtime/isolation.py): one that crashes,
hangs or exhausts its memory harms no other, and loading one is bounded by `load_timeout`, so
a source.py that hangs at import is refused and a later commit is still picked up.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelrepo import datasets, git
from modelrepo.format import (
    DeploymentError,
    Version,
    deployment_path,
    describe_range,
    resolve_version,
)
from modelrepo.format.endpoints import Endpoints, cross_problems, parse_files
from modelrepo.repository import (
    HistoryError,
    archived_folders,
    deployment_versions,
    endpoint_texts,
    extract_folder,
    folder_trees,
)
from modelrepo.runtime.app import NotFound, NotReady
from modelrepo.runtime.catalogs.ondemand import OnDemand, in_repository, retire, start_isolated
from modelrepo.runtime.environments import Environments, Interpreter
from modelrepo.runtime.isolation import DEFAULT_LOAD_TIMEOUT
from modelrepo.runtime.served import Served, answer_headers

log = logging.getLogger("modelrepo.runtime")
MAX_CACHED_OLD_VERSIONS = 8


class RepoCatalog:
    """Serves `deployments/*` of `branch` in the git repository at `repo` (a work tree or bare)."""

    def __init__(
        self, repo: str | Path, branch: str = "main", interval: float = 2.0, cache_dir: str | Path = "",
        default_timeout: float | None = None, fetch: bool = False,
        max_cached: int = MAX_CACHED_OLD_VERSIONS, memory_limit: int | None = None,
        load_timeout: float = DEFAULT_LOAD_TIMEOUT, environments: Environments | None = None,
    ) -> None:
        self.repo = str(repo)
        self.environments = environments  # None: every worker runs this Python (as before environments)
        self.branch = branch
        self.interval = interval
        self.cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="modelrepo-serve-"))
        self.default_timeout = default_timeout
        self.fetch = fetch
        self.max_cached = max_cached
        self.memory_limit = memory_limit
        self.load_timeout = load_timeout
        self.headers = answer_headers("", None)
        self._head = ""
        self._versions: dict[str, list[Version]] = {}
        self._present: frozenset[str] = frozenset()
        self._latest: dict[str, Served] = {}          # replaced as a whole by the poll thread
        self._problems: dict[str, str] = {}           # name -> why its newest version is refused
        self._synced = False
        self._sync_error = ""
        self._archived: set[str] = set()
        self._on_demand = OnDemand(self.load, max_cached)  # older versions (event loop only)
        self._refused: dict[str, str] = {}             # name -> newest commit that was refused
        # datasets/*.yaml of the branch head, each replaced only once its query works; the
        # results are cached on disk too, so worker processes (which inherit the env) share them.
        self.datasets_dir = self.cache_dir / "datasets"
        os.environ.setdefault(datasets.CACHE_ENV, str(self.cache_dir / "dataset-results"))
        self._dataset_problems: dict[str, str] = {}
        # Given the endpoints/ definitions read at every new head (runtime/catalogs/routes.py).
        self.on_definitions: Callable[[str, Endpoints], None] | None = None
        self._definitions_said = "no endpoints or aliases"  # silent for a repository without any
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelrepo-poll", daemon=True)

    # -- the poll thread ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and every worker process."""
        self._stop.set()
        for served in self._latest.values():
            close = getattr(served.function, "close", None)
            if close is not None:
                close()
        self._on_demand.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # git unreachable, repository broken: say so, keep serving
                message = f"cannot read {self.branch} of {self.repo}: {exc}"
                if message != self._sync_error:
                    print(message, flush=True)
                    log.error("%s", message)
                self._sync_error = message
            self._stop.wait(self.interval)

    def sync(self) -> None:
        """Bring the served versions up to the branch head (one poll)."""
        if self.fetch:
            git.run(["fetch", "--quiet", "--prune", "origin",
                     f"+refs/heads/{self.branch}:refs/heads/{self.branch}"], cwd=self.repo)
        head = git.rev_parse(self.repo, f"refs/heads/{self.branch}")
        if head is None:
            raise RuntimeError(f"no branch {self.branch!r} with a commit")
        if head == self._head:
            return
        try:
            versions = deployment_versions(self.repo, head)
        except HistoryError as exc:
            raise RuntimeError(str(exc)) from None
        present = self._served_folders(head)
        self._sync_datasets(head)
        latest = dict(self._latest)
        problems = dict(self._problems)
        self._versions = {**self._versions, **versions}
        for name in sorted(present):
            newest = versions.get(name, [])[-1:]
            if newest:
                self._update(name, newest[0], versions[name], latest, problems)
        for name in sorted(set(latest) - present):
            retire(latest.pop(name))
            print(f"{name} removed at {head[:7]}", flush=True)
        self._present = present
        self._latest = latest
        self._problems = {k: v for k, v in problems.items() if k in present}
        self._versions = versions
        self._read_definitions(head, present)
        self._head = head
        self.headers = answer_headers(head, None)
        self._synced = True
        self._sync_error = ""

    def _served_folders(self, head: str) -> frozenset[str]:
        """The deployment folders at `head` that are served: all but the archived ones."""
        present = frozenset(folder_trees(self.repo, head))
        archived = archived_folders(self.repo, head, present)  # Modelbit's .archived: not served
        for name in sorted(archived - self._archived):
            print(f"{name} archived at {head[:7]} (not served)", flush=True)
        self._archived = archived
        return present - archived

    def _sync_datasets(self, head: str) -> None:
        """datasets/*.yaml at `head`: a changed query replaces the old one only once it works."""
        dataset_problems = datasets.sync_repository(self.repo, head, self.datasets_dir)
        for name, problem in sorted(dataset_problems.items()):
            if self._dataset_problems.get(name) != problem:
                kept = (self.datasets_dir / f"{name}.yaml").exists()
                print(f"{problem} (at {head[:7]}; {'the previous definition stays' if kept else 'nothing'} in use)",
                      flush=True)
        for fixed in set(self._dataset_problems) - set(dataset_problems):  # retry who it kept out
            for name, reason in self._problems.items():
                if f"dataset '{fixed}'" in reason:
                    self._refused.pop(name, None)
        self._dataset_problems = dataset_problems

    def _update(
        self, name: str, version: Version, history: list[Version],
        latest: dict[str, Served], problems: dict[str, str],
    ) -> None:
        """Load the newest version of `name` beside the serving one and swap it in once ready."""
        current = latest.get(name)
        if current is not None and current.commit == version.commit:
            return
        if self._refused.get(name) == version.commit:  # refused already: said so once
            return
        label = f"{name} v{version.number} ({version.commit[:7]})"
        started = time.monotonic()
        try:
            served = self.load(name, version)
        except DeploymentError as exc:
            problems[name] = f"{label} refused: {exc}"
            self._refused[name] = version.commit
            if current is None:  # nothing serving yet (server start): fall back to an older version
                current = self._newest_working(name, history[:-1])
                if current is not None:
                    latest[name] = current
                    self._latest = dict(latest)
                    print(f"{label} refused: {exc}; serving v{current.number} ({current.commit[:7]}) instead",
                          flush=True)
                    return
            still = f"; still serving v{current.number} ({current.commit[:7]})" if current else ""
            print(f"{label} refused: {exc}{still}", flush=True)
            return
        except Exception as exc:
            problems[name] = f"{label} refused: {type(exc).__name__}: {exc}"
            self._refused[name] = version.commit
            print(problems[name], flush=True)
            log.exception("%s refused", label)
            return
        latest[name] = served  # the swap: new requests get the new version from here on
        self._latest = dict(latest)
        if current is not None:
            retire(current)
        problems.pop(name, None)
        self._refused.pop(name, None)
        print(f"{label} ready in {time.monotonic() - started:.1f}s", flush=True)

    def _read_definitions(self, head: str, present: frozenset[str]) -> None:
        """Parse endpoints/ at `head` and hand it on; say what changed (a bad file is left out)."""
        if self.on_definitions is None:
            return
        found, problems = parse_files(endpoint_texts(self.repo, head))
        problems += cross_problems(found, set(present))
        self.on_definitions(self.branch, found)
        said = describe_definitions(found) + "".join(f"\nendpoints/{f}: {p}" for f, p in problems)
        if said != self._definitions_said:
            print(f"{self.branch} at {head[:7]}: {said}", flush=True)
            self._definitions_said = said

    def _newest_working(self, name: str, older: list[Version], tries: int = 5) -> Served | None:
        """The newest of the last `tries` older versions that loads and passes its tests."""
        for version in reversed(older[-tries:]):
            try:
                return self.load(name, version)
            except DeploymentError:
                continue
        return None

    def load(self, name: str, version: Version) -> Served:
        """Extract, import and test one version (any thread); raise DeploymentError if refused."""
        folder = extract_folder(self.repo, version.commit, name, self.cache_dir)
        for dataset in datasets.datasets_used(folder):  # never worked: say why, not "no file"
            problem = self._dataset_problems.get(dataset)
            if problem and not (self.datasets_dir / f"{dataset}.yaml").exists():
                raise DeploymentError(f"{deployment_path(name)}/source.py", problem)
        try:  # its environment: this Python, or a virtualenv built (once) for it
            interpreter = self.environments.interpreter(folder, name) if self.environments else Interpreter()
        except DeploymentError as exc:
            raise in_repository(exc, folder, name) from None
        return start_isolated(
            name, version, folder, memory_limit=self.memory_limit, load_timeout=self.load_timeout,
            default_timeout=self.default_timeout,
            env={datasets.DIR_ENV: str(self.datasets_dir)},  # this branch's dataset definitions
            python=interpreter.python, pythonpath=interpreter.pythonpath, check_python=interpreter.check_python,
        )

    # -- requests (event loop) ---------------------------------------------------------------
    async def resolve(self, name: str, ref: str, branch: str | None = None) -> Served:
        if branch is not None and branch != self.branch:
            raise NotFound(f"{name} is served here from branch {self.branch}, not {branch}")
        if not self._synced and name not in self._latest:
            raise NotReady(f"not ready: {self._sync_error or 'reading the repository'}")
        versions = self._versions.get(name)
        if name in self._archived:
            raise NotFound(f"{name} is archived on branch {self.branch} (not served)")
        if not versions or name not in self._present:
            raise NotFound(f"no deployment {name} on branch {self.branch}")
        latest = self._latest.get(name)
        if ref == "latest":
            if latest is None:
                raise NotReady(self._problems.get(name, f"{name} is loading"))
            return latest
        version = resolve_version(versions, ref)
        if version is None:
            raise NotFound(f"{name} has no version {ref} ({describe_range(versions)}, or a commit SHA prefix)")
        if latest is not None and latest.commit == version.commit:
            return latest
        return await self._on_demand.get(name, version)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        latest = self._latest
        deployments = []
        for name in sorted(self._present):
            served = latest.get(name)
            entry: dict[str, Any] = {"name": name, "ready": served is not None}
            if served is not None:
                entry.update(version=served.number, commit=served.commit)
            crashed = getattr(served.function, "cause", "") if served is not None else ""
            if name in self._problems or crashed:
                entry["reason"] = "; ".join(filter(None, (crashed, self._problems.get(name))))
            elif served is not None:  # still serving with the old query of a dataset it reads
                broken = [self._dataset_problems[d] for d in datasets.datasets_used(served.loaded.folder)
                          if d in self._dataset_problems]
                if broken:
                    entry["reason"] = "; ".join(broken)
            deployments.append(entry)
        details: dict[str, Any] = {"branch": self.branch, "commit": self._head, "deployments": deployments}
        if not self._synced:
            details["error"] = self._sync_error or "reading the repository"
            return False, details
        missing = [d for d in deployments if not d["ready"]]
        if missing:
            details["error"] = "; ".join(d.get("reason", f"{d['name']} is loading") for d in missing)
            return False, details
        return True, details


def describe_definitions(found: Endpoints) -> str:
    """One line: the endpoints with their weights and mirrors, and the aliases."""
    parts = []
    for name, endpoint in sorted(found.endpoints.items()):
        total = sum(b.weight for b in endpoint.backends) or 1
        split = ", ".join(f"{b.target.name}/{b.target.version} {100 * b.weight / total:g}%" for b in endpoint.backends)
        mirrors = "".join(f", mirror {t.name}/{t.version}" for _, t in endpoint.mirrors)
        parts.append(f"endpoint {name} -> {split}{mirrors}")
    for name, table in sorted(found.aliases.items()):
        parts += [f"alias {name}/{alias} -> {ref}" for alias, ref in sorted(table.items())]
    return "; ".join(parts) if parts else "no endpoints or aliases"

