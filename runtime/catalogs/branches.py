"""The catalog of `modelrepo serve --branch a --branch b`: one repository catalog per branch.

`/v1/<Name>/<ref>` is the first branch's; `/v1/<Name>/<branch>/<ref>` the named branch's (with
`~` for `/`); a commit SHA (prefix) that is not on the branch asked for is looked up on the other
served branches, so a SHA copied from any served branch's answer header works everywhere.
"""

from __future__ import annotations

import re
from typing import Any

from modelrepo.runtime.app import NotFound
from modelrepo.runtime.catalogs.repository import RepoCatalog
from modelrepo.runtime.catalogs.routes import Routes
from modelrepo.runtime.served import Served

_SHA = re.compile(r"[0-9a-fA-F]{7,40}")


class BranchesCatalog:
    """Serves several branches of one repository, each followed by its own RepoCatalog."""

    def __init__(self, catalogs: list[RepoCatalog]) -> None:
        if not catalogs:
            raise ValueError("at least one branch to serve")
        self.catalogs = {c.branch: c for c in catalogs}
        self.first = catalogs[0]
        self.routes = Routes(list(self.catalogs))  # endpoints and aliases of every branch
        for catalog in catalogs:
            catalog.on_definitions = self.routes.update

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return self.first.headers

    def start(self) -> None:
        for catalog in self.catalogs.values():
            catalog.start()

    def stop(self) -> None:
        for catalog in self.catalogs.values():
            catalog.stop()

    async def resolve(self, name: str, ref: str, branch: str | None = None) -> Served:
        catalog = self.first if branch is None else self.catalogs.get(branch)
        if catalog is None:
            raise NotFound(f"branch {branch} is not served here (served: {', '.join(self.catalogs)})")
        try:
            return await catalog.resolve(name, ref)
        except NotFound:
            if not _SHA.fullmatch(ref):
                raise
            for other in self.catalogs.values():
                if other is not catalog:
                    try:
                        return await other.resolve(name, ref)
                    except NotFound:
                        continue
            raise

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        states = {branch: catalog.readiness() for branch, catalog in self.catalogs.items()}
        ready, details = states[self.first.branch]
        details = dict(details)
        details["branches"] = [{"ready": r, **d} for r, d in states.values()]
        errors = [f"{branch}: {d['error']}" for branch, (r, d) in states.items() if not r and "error" in d]
        all_ready = all(r for r, _ in states.values())
        if errors and len(states) > 1:
            details["error"] = "; ".join(errors)
        return all_ready, details
