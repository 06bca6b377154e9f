"""What a sync must change: desired folders versus the children that exist (docs/operator.md).

Pure: takes the folders found at the synced commit and the existing Deployments/Services,
returns which to apply, which are unchanged and which to prune. Only called after a
successful fetch, so an unreachable repository can never prune anything.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelrepo.format import deployment_path, name_problem
from modelrepo.operator.keys import ANN_COMMON, ANN_CONFIG, ANN_DATASETS, ANN_TREE
from modelrepo.operator.naming import gateway_child_name
from modelrepo.operator.render import Folder, folder_child, is_pattern


@dataclass
class Plan:
    apply: list[Folder] = field(default_factory=list)  # new, or its tree/settings/datasets/common files changed
    unchanged: list[Folder] = field(default_factory=list)
    services: list[str] = field(default_factory=list)  # folder keys whose Service is missing/stale
    prune: list[str] = field(default_factory=list)  # child names (Deployment and Service) to delete
    invalid: dict[str, str] = field(default_factory=dict)  # folder key -> problem
    archived: list[str] = field(default_factory=list)  # folder keys with Modelbit's .archived marker

    @property
    def changes(self) -> bool:
        return bool(self.apply or self.services or self.prune)


def match_branches(entries: Iterable[str], heads: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """spec.branches against the remote's branches (name -> commit): the followed branches in
    order (names as listed, each pattern's matches sorted, each branch once) with their commits,
    and the listed names the remote does not have."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for entry in entries:
        if is_pattern(entry):
            for branch in sorted(b for b in heads if fnmatch.fnmatchcase(b, entry)):
                found.setdefault(branch, heads[branch])
        elif entry in heads:
            found.setdefault(entry, heads[entry])
        else:
            missing.append(entry)
    return found, missing


def selected(name: str, include: Iterable[str] | None, exclude: Iterable[str] | None) -> bool:
    """True when `name` matches an include glob (default: all) and no exclude glob."""
    include = list(include) if include is not None else ["*"]
    return any(fnmatch.fnmatchcase(name, g) for g in include) and not any(
        fnmatch.fnmatchcase(name, g) for g in exclude or []
    )


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _name(obj: Mapping[str, Any]) -> str:
    return obj["metadata"]["name"]


def make_plan(
    repo_name: str,
    folders: Mapping[str, Folder],
    deployments: Iterable[Mapping[str, Any]],
    services: Iterable[Mapping[str, Any]],
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    config_hash: str = "",
    archived: Collection[str] = (),
) -> Plan:
    """`folders` by key (Folder.key), of every followed branch: child names are checked for
    collisions across branches. Archived folders (keys) are neither applied nor kept: their
    children are pruned."""
    plan = Plan()
    by_child = {_name(d): d for d in deployments}
    svc_by_child = {_name(s): s for s in services}
    wanted: set[str] = set()
    owners: dict[str, str] = {}
    # The first branch's folders first: in a name collision they keep the name they already have.
    for key in sorted(folders, key=lambda k: (bool(folders[k].named_branch), folders[k].named_branch, k)):
        folder = folders[key]
        name = folder.name
        problem = name_problem(name)
        if problem:
            plan.invalid[key] = f"{deployment_path(name)}: {problem} (a Python identifier)"
            continue
        if not selected(name, include, exclude):
            continue
        if key in archived:
            plan.archived.append(key)
            continue
        child = folder_child(repo_name, folder)
        where = deployment_path(name) + (f" on branch {folder.branch}" if folder.named_branch else "")
        if child == gateway_child_name(repo_name):
            plan.invalid[key] = f"{where}: its Kubernetes name {child!r} is the workspace gateway's; rename the folder"
            continue
        if child in owners:
            plan.invalid[key] = f"{where}: its Kubernetes name {child!r} collides with {owners[child]}; rename one"
            continue
        owners[child] = where
        wanted.add(child)
        current = by_child.get(child)
        ann = _annotations(current) if current else {}
        if (
            current is None or ann.get(ANN_TREE) != folder.tree or ann.get(ANN_CONFIG) != config_hash
            or ann.get(ANN_DATASETS, "") != folder.datasets_commit  # a dataset it reads changed
            or ann.get(ANN_COMMON, "") != folder.common_commit  # a common/ file it links changed
        ):
            plan.apply.append(folder)
        else:
            plan.unchanged.append(folder)
        svc = svc_by_child.get(child)
        if svc is None or _annotations(svc).get(ANN_CONFIG) != config_hash:
            plan.services.append(key)
    stale = (set(by_child) | set(svc_by_child)) - wanted
    plan.prune = sorted(stale)
    return plan
