"""Endpoints and aliases in `modelrepo serve`: the gateway's routing, answered in-process.

Each served branch's RepoCatalog reads `endpoints/` at its head (from git, never the work
tree) and hands the parsed definitions here whenever the head moves; the routing table is
then rebuilt as a whole, and requests go through the gateway's pure `decide` on it. Every
served branch is its own "on-demand runtime", so a decision names (deployment, branch,
version) that this same process answers (docs/runtime.md, "Endpoints, aliases and keys in
serve"). A plain `/v1/<Name>/<ref>` whose name is neither an endpoint nor has aliases costs
one dict lookup here.
"""

from __future__ import annotations

import threading

from modelrepo.format.endpoints import Endpoints
from modelrepo.runtime.gateway.routing import Decision, Table, decide


class Routes:
    """The current routing table of the served branches, swapped whole on every update."""

    def __init__(self, branches: list[str]) -> None:
        self.branches = list(branches)
        self._definitions: dict[str, Endpoints] = {}
        self._lock = threading.Lock()
        self._state: tuple[Table, dict[str, frozenset[str]]] = self._build()

    def _build(self) -> tuple[Table, dict[str, frozenset[str]]]:
        table = Table(
            branches=self.branches, on_demand={b: "" for b in self.branches},
            endpoints={b: d.endpoints for b, d in self._definitions.items()},
            aliases={b: d.aliases for b, d in self._definitions.items()},
        )
        routed = {b: frozenset(d.endpoints) | frozenset(d.aliases) for b, d in self._definitions.items()}
        return table, routed

    def update(self, branch: str, definitions: Endpoints) -> None:
        """The definitions read at `branch`'s new head (called by its poll thread)."""
        with self._lock:
            self._definitions[branch] = definitions
            self._state = self._build()

    def decide(self, name: str, branch: str | None, ref: str, draw: float) -> Decision | None:
        """Where `/v1/<name>[/<branch>]/<ref>` goes; None when nothing reroutes it (the common case).

        Raises routing.RouteError (404) e.g. for an endpoint called at a version other than latest."""
        table, routed = self._state
        names = routed.get(branch or self.branches[0])
        if names is None or name not in names:
            return None
        return decide(table, name, branch, ref, draw)
