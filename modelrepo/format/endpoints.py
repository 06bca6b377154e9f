"""`endpoints/<name>.yaml` (Modelbit's shape) and `endpoints/aliases.yaml` (ours), parsed and checked.

An endpoint is one URL, `/v1/<name>/latest`, in front of weighted backends and mirrors:

    backends:
      split_1: {deployment: {name: Linear_Model, branch: main, version: 10}, weight: 9}
      split_2: {deployment: {name: Linear_Model, version: latest}, weight: 1}
    mirrors:
      shadow: {deployment: {name: Other_Model, version: latest}}
    schemaVersion: 1

`version` is `latest`, a number N, a commit SHA prefix (7+ hex) or an alias; `branch` is
optional (default: the branch the endpoint file is read from); `weight` is a non-negative
number (default 1; at least one backend must weigh more than 0).

Aliases name a version of a deployment, so `/v1/<Name>/official` answers like
`/v1/<Name>/3`. They live in one reserved file, `endpoints/aliases.yaml`, per branch:

    aliases:
      Linear_Model: {official: 3, candidate: latest}
    schemaVersion: 1

Pure functions over already-read YAML text: no I/O beyond `read_endpoints(root)`, no git.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelrepo.format.errors import DeploymentError
from modelrepo.format.layout import ENDPOINTS_DIR, NAME_PATTERN, NAME_RULE
from modelrepo.format.versions import LATEST, SHA_PREFIX

ENDPOINT_SCHEMA_VERSION = 1
ALIASES_FILE = "aliases.yaml"  # reserved: the one file under endpoints/ that is not an endpoint
ALIAS_PATTERN = re.compile(r"\A[A-Za-z][A-Za-z0-9_.-]{0,62}\Z")
ENDPOINT_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Target:
    """A deployment version: `branch` None means the branch the definition was read from."""

    name: str
    version: str = LATEST
    branch: str | None = None


@dataclass(frozen=True)
class Backend:
    key: str
    target: Target
    weight: float = 1.0


@dataclass(frozen=True)
class Endpoint:
    name: str
    backends: tuple[Backend, ...]
    mirrors: tuple[tuple[str, Target], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Back to the file's shape (with every default filled), for a gateway's configuration."""
        return {
            "schemaVersion": ENDPOINT_SCHEMA_VERSION,
            "backends": {b.key: {"deployment": _target_json(b.target), "weight": b.weight} for b in self.backends},
            "mirrors": {key: {"deployment": _target_json(t)} for key, t in self.mirrors},
        }


@dataclass
class Endpoints:
    """Everything under one branch's endpoints/: endpoints by name and aliases by deployment."""

    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"endpoints": {n: e.to_json() for n, e in self.endpoints.items()}, "aliases": self.aliases}


def _target_json(target: Target) -> dict[str, Any]:
    data: dict[str, Any] = {"name": target.name, "version": target.version}
    if target.branch:
        data["branch"] = target.branch
    return data


def alias_problem(alias: str) -> str | None:
    """Why `alias` cannot name a version (it would read as latest, a number or a SHA), or None."""
    if not ALIAS_PATTERN.match(alias):
        return f"alias {alias!r} must match [A-Za-z][A-Za-z0-9_.-]* (at most 63 characters)"
    if alias == LATEST or SHA_PREFIX.match(alias):
        return f"alias {alias!r} would be read as {'latest' if alias == LATEST else 'a commit SHA prefix'}"
    return None


def version_problem(version: Any) -> str | None:
    """A backend's `version`: latest, a positive number, a SHA prefix or an alias."""
    if isinstance(version, bool) or version is None:
        return f"version {version!r}: use latest, a version number, a commit SHA prefix or an alias"
    if isinstance(version, int):
        return None if version >= 1 else f"version {version}: version numbers start at 1"
    text = str(version)
    if text == LATEST or text.isdigit() or SHA_PREFIX.match(text) or ALIAS_PATTERN.match(text):
        return None
    return f"version {version!r}: use latest, a version number, a commit SHA prefix or an alias"


def _parse_target(where: str, value: Any) -> Target:
    if not isinstance(value, dict):
        raise ValueError(f"{where}.deployment must be a mapping like {{name: <Name>, version: latest}}")
    name = value.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"{where}.deployment.name {name!r} must be a deployment name ({NAME_RULE})")
    version = value.get("version", LATEST)
    problem = version_problem(version)
    if problem:
        raise ValueError(f"{where}.deployment.{problem}")
    branch = value.get("branch")
    if branch is not None and (not isinstance(branch, str) or not branch.strip() or any(c.isspace() for c in branch)):
        raise ValueError(f"{where}.deployment.branch {branch!r} must be a branch name")
    return Target(name=name, version=str(version), branch=branch or None)


def _mapping(document: dict[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a mapping of names to definitions")
    return value


def _schema(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise ValueError("must be a YAML mapping")
    version = document.get("schemaVersion", ENDPOINT_SCHEMA_VERSION)
    if version != ENDPOINT_SCHEMA_VERSION:
        raise ValueError(f"schemaVersion {version!r} is not supported (use {ENDPOINT_SCHEMA_VERSION})")
    return document


def parse_endpoint(name: str, text: str) -> Endpoint:
    """An endpoint from its file's text; ValueError saying what is wrong."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"endpoint name {name!r} (the file name) must match {NAME_RULE}")
    document = _schema(_load(text))
    backends: list[Backend] = []
    for key, value in _mapping(document, "backends").items():
        where = f"backends.{key}"
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping with deployment and weight")
        weight = value.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0 or weight != weight:
            raise ValueError(f"{where}.weight {weight!r} must be a number >= 0")
        backends.append(Backend(str(key), _parse_target(where, value.get("deployment")), float(weight)))
    if not backends:
        raise ValueError("backends: an endpoint needs at least one backend")
    if not any(b.weight > 0 for b in backends):
        raise ValueError("backends: every weight is 0, so no request could be answered")
    mirrors = []
    for key, value in _mapping(document, "mirrors").items():
        if not isinstance(value, dict):
            raise ValueError(f"mirrors.{key} must be a mapping with deployment")
        mirrors.append((str(key), _parse_target(f"mirrors.{key}", value.get("deployment"))))
    return Endpoint(name=name, backends=tuple(backends), mirrors=tuple(mirrors))


def parse_aliases(text: str) -> dict[str, dict[str, str]]:
    """`aliases: {<Name>: {<alias>: <version>}}` -> {Name: {alias: version}}; ValueError if wrong."""
    document = _schema(_load(text))
    result: dict[str, dict[str, str]] = {}
    for name, table in _mapping(document, "aliases").items():
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ValueError(f"aliases: {name!r} must be a deployment name ({NAME_RULE})")
        if not isinstance(table, dict) or not table:
            raise ValueError(f"aliases.{name} must map alias names to versions, like {{official: 3}}")
        for alias, version in table.items():
            problem = alias_problem(str(alias))
            if problem:
                raise ValueError(f"aliases.{name}: {problem}")
            problem = version_problem(version)
            if problem is None and not isinstance(version, int) and ALIAS_PATTERN.match(str(version)) \
                    and str(version) != LATEST and not SHA_PREFIX.match(str(version)):
                problem = f"version {version!r}: an alias names latest, a number or a commit SHA prefix, not another alias"
            if problem:
                raise ValueError(f"aliases.{name}.{alias}: {problem}")
            result.setdefault(name, {})[str(alias)] = str(version)
    return result


def _load(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None


def endpoint_files(root: str | Path) -> list[Path]:
    """The YAML files under `<root>/endpoints/` (hidden files and .gitkeep skipped)."""
    base = Path(root) / ENDPOINTS_DIR
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_file() and p.suffix in ENDPOINT_SUFFIXES and not p.name.startswith("."))


def parse_files(files: dict[str, str]) -> tuple[Endpoints, list[tuple[str, str]]]:
    """{file name under endpoints/: text} -> (what parsed, [(file name, problem)]).

    A bad file is reported and left out; the others still count (one typo must not take
    every endpoint down)."""
    result = Endpoints()
    problems: list[tuple[str, str]] = []
    for filename, text in sorted(files.items()):
        try:
            if filename in (ALIASES_FILE, "aliases.yml"):
                result.aliases = parse_aliases(text)
            else:
                stem = filename.rsplit(".", 1)[0]
                result.endpoints[stem] = parse_endpoint(stem, text)
        except ValueError as exc:
            problems.append((filename, str(exc)))
    return result, problems


def cross_problems(found: Endpoints, deployments: set[str]) -> list[tuple[str, str]]:
    """What only the whole repository can say: names that clash, backends naming no deployment.

    Targets on another branch are not checked (that branch's tree is not at hand)."""
    problems: list[tuple[str, str]] = []
    for name, endpoint in sorted(found.endpoints.items()):
        filename = f"{name}.yaml"
        if name in deployments:
            problems.append((filename, f"endpoint {name} has the name of a deployment; rename one of them"))
        targets = [(f"backends.{b.key}", b.target) for b in endpoint.backends]
        targets += [(f"mirrors.{key}", t) for key, t in endpoint.mirrors]
        for where, target in targets:
            if target.branch is None and target.name not in deployments:
                problems.append((filename, f"{where}: no deployment {target.name} in deployments/"))
    for name in sorted(found.aliases):
        if name not in deployments:
            problems.append((ALIASES_FILE, f"aliases.{name}: no deployment {name} in deployments/"))
    return problems


def read_endpoints(root: str | Path) -> tuple[Endpoints, list[DeploymentError]]:
    """Parse a work tree's endpoints/ folder; problems as DeploymentErrors naming the file."""
    files = {p.name: p.read_text(errors="replace") for p in endpoint_files(root)}
    found, problems = parse_files(files)
    base = Path(root) / ENDPOINTS_DIR
    return found, [DeploymentError(base / filename, problem) for filename, problem in problems]
