"""Where a request goes: pure functions from (route, routing table, a random draw) to URLs.

The table says what runs where: `upstreams` (one per running deployment version: its base
URL, version number, commit and whether it is the branch's latest), per branch the endpoints
and aliases read from that branch's `endpoints/`, and optionally per branch an on-demand
runtime that serves any version of the branch (old versions not running as an upstream).

Resolution of `/v1/<name>[/<branch>]/<ref>` (branch default: the first of `branches`):
1. `name` is an endpoint of the branch and `ref` is `latest`: one backend by weight (the draw),
   each mirror as a copy.
2. `ref` is an alias of deployment `name` on the branch: replaced by the version it names.
3. The upstream of (`name`, branch) that `ref` names (latest, number, SHA prefix); else the
   branch's on-demand runtime; else 404.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from modelrepo.format import LATEST, names_version
from modelrepo.format.endpoints import Endpoint, Target, parse_endpoint


class RouteError(Exception):
    """The request cannot be routed: `status` (404) and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upstream:
    """One running deployment version reachable over HTTP at `url` (scheme://host:port)."""

    name: str
    branch: str
    url: str
    version: int | None = None
    commit: str = ""
    latest: bool = True


@dataclass(frozen=True)
class Hop:
    """One HTTP call to make: the full URL, and what it is for (for headers and logs)."""

    url: str
    name: str
    branch: str
    backend: str | None = None  # the endpoint backend's key, when an endpoint chose it
    ref: str = ""  # the version asked of the upstream (aliases resolved): serve answers it in-process


@dataclass(frozen=True)
class Decision:
    primary: Hop
    mirrors: tuple[Hop, ...] = ()


@dataclass
class _Choice:
    """An endpoint ready for weighted draws: cumulative weights over the backends."""

    endpoint: Endpoint
    cumulative: list[float]


@dataclass
class Table:
    branches: list[str]
    upstreams: list[Upstream] = field(default_factory=list)
    endpoints: dict[str, dict[str, Endpoint]] = field(default_factory=dict)  # branch -> name -> endpoint
    aliases: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # branch -> Name -> alias -> ref
    on_demand: dict[str, str] = field(default_factory=dict)  # branch -> base URL of a runtime serving any version

    def __post_init__(self) -> None:
        if not self.branches:
            raise ValueError("branches: name at least one branch")
        self._by_deployment: dict[tuple[str, str], list[Upstream]] = {}
        for upstream in self.upstreams:
            self._by_deployment.setdefault((upstream.name, upstream.branch), []).append(upstream)
        self._choices = {
            (branch, name): _Choice(e, list(accumulate(b.weight for b in e.backends)))
            for branch, table in self.endpoints.items() for name, e in table.items()
        }

    @property
    def default_branch(self) -> str:
        return self.branches[0]

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Table:
        """The gateway's configuration file (written by the operator or by hand); ValueError if wrong."""
        if not isinstance(document, dict):
            raise ValueError("the gateway configuration must be a JSON object")
        try:
            branches = [str(b) for b in document.get("branches") or []]
            upstreams = [
                Upstream(name=u["name"], branch=u.get("branch") or branches[0], url=u["url"].rstrip("/"),
                         version=u.get("version"), commit=u.get("commit") or "", latest=bool(u.get("latest", True)))
                for u in document.get("upstreams") or []
            ]
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ValueError(f"upstreams: each needs name, url (and branches must be given): {exc!r}") from None
        endpoints: dict[str, dict[str, Endpoint]] = {}
        aliases: dict[str, dict[str, dict[str, str]]] = {}
        for branch, definitions in (document.get("definitions") or {}).items():
            for name, data in (definitions.get("endpoints") or {}).items():
                try:
                    endpoints.setdefault(branch, {})[name] = parse_endpoint(name, json.dumps(data))
                except ValueError as exc:
                    raise ValueError(f"definitions.{branch}.endpoints.{name}: {exc}") from None
            aliases[branch] = {n: {a: str(r) for a, r in t.items()} for n, t in (definitions.get("aliases") or {}).items()}
        return cls(branches=branches, upstreams=upstreams, endpoints=endpoints, aliases=aliases,
                   on_demand={b: u.rstrip("/") for b, u in (document.get("onDemand") or {}).items()})

    def known(self, branch: str) -> list[str]:
        """Every name callable on `branch` (for 404 messages)."""
        names = {n for (n, b) in self._by_deployment if b == branch} | set(self.endpoints.get(branch, {}))
        return sorted(names)


def _branch_path(branch: str) -> str:
    return branch.replace("/", "~")


def decide(table: Table, name: str, branch: str | None, ref: str, draw: float) -> Decision:
    """Route `/v1/<name>[/<branch>]/<ref>`; `draw` in [0, 1) picks an endpoint's backend."""
    branch = branch or table.default_branch
    if branch not in table.branches:
        raise RouteError(404, f"no branch {branch} here (branches: {', '.join(table.branches)})")
    choice = table._choices.get((branch, name))
    if choice is not None:
        if ref != LATEST:
            raise RouteError(404, f"{name} is an endpoint: call it at /v1/{name}/latest")
        backends = choice.endpoint.backends
        index = bisect_right(choice.cumulative, draw * choice.cumulative[-1])
        backend = backends[min(index, len(backends) - 1)]
        primary = locate(table, backend.target, branch, backend.key)
        mirrors = tuple(_mirror(table, target, branch, key) for key, target in choice.endpoint.mirrors)
        return Decision(primary, tuple(m for m in mirrors if m is not None))
    return Decision(locate(table, Target(name, ref), branch))


def _mirror(table: Table, target: Target, branch: str, key: str) -> Hop | None:
    """A mirror that cannot be located is skipped: mirrors never fail the caller."""
    try:
        return locate(table, target, branch, key)
    except RouteError:
        return None


def locate(table: Table, target: Target, branch: str, backend: str | None = None) -> Hop:
    """The URL answering `target` (its own branch, else `branch`): alias, upstream, on-demand runtime."""
    branch = target.branch or branch
    name, ref = target.name, target.version
    ref = table.aliases.get(branch, {}).get(name, {}).get(ref, ref)
    candidates = table._by_deployment.get((name, branch))
    if candidates:
        for upstream in candidates:
            if names_version(ref, upstream.version, upstream.commit, is_latest=upstream.latest):
                version = LATEST if ref == LATEST else (str(upstream.version) if upstream.version is not None else ref)
                return Hop(f"{upstream.url}/v1/{name}/{version}", name, branch, backend, version)
    elif branch not in table.on_demand:
        known = table.known(branch)
        raise RouteError(404, f"no deployment or endpoint {name} on branch {branch}"
                              + (f" (known: {', '.join(known)})" if known else ""))
    base = table.on_demand.get(branch)
    if base is None:
        running = ", ".join(sorted(str(u.version) for u in candidates or [] if u.version is not None))
        raise RouteError(404, f"{name} has no version or alias {ref} on branch {branch}"
                              + (f" (running: {running})" if running else ""))
    return Hop(f"{base}/v1/{name}/{_branch_path(branch)}/{ref}", name, branch, backend, ref)
