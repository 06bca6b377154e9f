"""Versions loaded on their first call into a bounded cache, each in its own worker process.

Shared by `modelrepo serve` (older versions of a branch, catalogs/repository.py) and the
cluster's versions pod (any version, catalogs/versions.py). A version that cannot be loaded
(its import or docstring tests fail) is remembered and answered 503 with the reason without
trying again: the folder at a commit never changes. Other failures (the folder could not be
fetched) are not remembered, so the next call tries again. Beyond `max_cached` versions the
least recently called one is retired: its worker stops after a grace period.
"""

from __future__ import annotations

import asyncio
import sys
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelrepo.format import DeploymentError, Version, deployment_path
from modelrepo.runtime.app import NotReady
from modelrepo.runtime.isolation import IsolatedFunction, isolated_deployment
from modelrepo.runtime.served import Served

# Seconds a replaced version's worker lives on, so requests that resolved to it before the swap
# still get their answer.
SWAP_GRACE_SECONDS = 10.0


def retire(served: Served) -> None:
    """Stop the worker of a version no longer served, once requests already sent to it are answered."""
    close = getattr(served.function, "close", None)
    if close is not None:
        close(SWAP_GRACE_SECONDS)


def label(name: str, version: Version) -> str:
    return f"{name} v{version.number} ({version.commit[:7]})"


def start_isolated(
    name: str, version: Version, folder: Path, *, memory_limit: int | None, load_timeout: float,
    default_timeout: float | None = None, env: dict[str, str] | None = None,
    python: str = sys.executable, pythonpath: str | None = None, check_python: bool = True,
) -> Served:
    """Start `folder` (deployments/<name> at `version`) in a worker process of its own and load it
    with its docstring tests; DeploymentError naming the file as it is in the repository."""
    function = IsolatedFunction(folder, label(name, version), memory_limit=memory_limit,
                                load_timeout=load_timeout, env=env, python=python, pythonpath=pythonpath,
                                check_python=check_python)
    try:
        function.start()
        kwargs: dict[str, Any] = {} if default_timeout is None else {"default_timeout": default_timeout}
        return Served(name=name, number=version.number, commit=version.commit,
                      loaded=isolated_deployment(folder, function), **kwargs)
    except DeploymentError as exc:
        function.close()
        raise in_repository(exc, folder, name) from None
    except BaseException:
        function.close()
        raise


def in_repository(exc: DeploymentError, folder: Path, name: str) -> DeploymentError:
    """The same error naming the file as it is in the repository, not in the cache."""
    where = Path(exc.path)
    if where.is_relative_to(folder):
        where = Path(deployment_path(name), where.relative_to(folder))
    return DeploymentError(where, exc.problem)


class OnDemand:
    """An LRU cache of loaded versions keyed by (name, commit); used from the event loop only.

    `load(name, version)` runs in a thread (it starts a worker process and waits for it) and
    raises DeploymentError when the version is refused, anything else when it could not try."""

    def __init__(self, load: Callable[[str, Version], Served], max_cached: int) -> None:
        self.load = load
        self.max_cached = max_cached
        self._cache: OrderedDict[tuple[str, str], Served] = OrderedDict()
        self._failed: dict[tuple[str, str], str] = {}
        self._loading: dict[tuple[str, str], asyncio.Future[Served]] = {}

    def keys(self) -> list[tuple[str, str]]:
        """(name, commit) of every version held, also those still loading."""
        return [*self._cache, *(k for k in self._loading if k not in self._cache)]

    def values(self) -> list[Served]:
        return list(self._cache.values())

    async def get(self, name: str, version: Version) -> Served:
        """The loaded version (loading it on its first call); NotReady saying why it cannot be."""
        key = (name, version.commit)
        served = self._cache.get(key)
        if served is not None:
            self._cache.move_to_end(key)
            return served
        if key in self._failed:
            raise NotReady(self._failed[key])
        pending = self._loading.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = self._loading[key] = loop.run_in_executor(None, self.load, name, version)
        try:
            served = await asyncio.shield(pending)
        except DeploymentError as exc:
            self._failed[key] = f"{label(name, version)} cannot be served: {exc}"
            raise NotReady(self._failed[key]) from None
        finally:
            self._loading.pop(key, None)
        if key not in self._cache:
            self._cache[key] = served
            print(f"{label(name, version)} loaded on demand", flush=True)
            while len(self._cache) > self.max_cached:
                _, evicted = self._cache.popitem(last=False)
                retire(evicted)
        return self._cache[key]

    def close(self) -> None:
        """Stop every worker at once (the server is stopping)."""
        for served in self._cache.values():
            close = getattr(served.function, "close", None)
            if close is not None:
                close()
