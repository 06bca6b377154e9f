"""The ModelRepo's status, computed from what is really running (docs/operator.md).

Pure: takes the Deployments and Pods as the API server returns them and returns the status
dict. Rollout trouble is read from the Deployments' own conditions and the new pods' container
states, so `Degraded` names the deployment and the pod's reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from modelrepo.format import names_version
from modelrepo.format.endpoints import Endpoint, Endpoints, Target, cross_problems
from modelrepo.operator.keys import ANN_COMMIT, ANN_VERSION, LABEL_COMMIT
from modelrepo.operator.naming import child_name
from modelrepo.operator.render import Folder, RepoRef, service_url, split_key

CONDITION_TYPES = ("Ready", "SourceReady", "Progressing", "Degraded")
_BAD_WAITING = {
    "CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
}
_MAX_MESSAGE = 400


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _container_problem(status: Mapping[str, Any], init: bool) -> str | None:
    """Why one container of a new pod will not get ready, if it visibly won't."""
    name = status.get("name", "?")
    state = status.get("state") or {}
    last = (status.get("lastState") or {}).get("terminated") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    failed = terminated if terminated.get("exitCode") not in (None, 0) else last
    if waiting.get("reason") in _BAD_WAITING or (failed and (status.get("restartCount") or 0) > 0) or (
        init and terminated.get("exitCode") not in (None, 0)
    ):
        reason = waiting.get("reason") or failed.get("reason") or "Error"
        detail = failed.get("message") or waiting.get("message") or ""
        kind = "init container" if init else "container"
        return _short(f"{kind} {name}: {reason}" + (f": {detail}" if detail else ""))
    return None


def pod_problem(pods: Iterable[Mapping[str, Any]], commit: str) -> str | None:
    """The first visible failure among the pods running `commit` (the new ReplicaSet)."""
    for pod in pods:
        if ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_COMMIT) != commit:
            continue
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:  # e.g. a GPU no node has: the scheduler says why
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
                return _short(f"pod {cond['reason']}: {cond.get('message', '')}")
        for init, key in ((True, "initContainerStatuses"), (False, "containerStatuses")):
            for cs in status.get(key) or []:
                problem = _container_problem(cs, init)
                if problem:
                    return problem
    return None


def rollout_complete(deploy: Mapping[str, Any]) -> bool:
    """The Deployment's newest template is fully rolled out and available."""
    spec, st = deploy.get("spec") or {}, deploy.get("status") or {}
    want = spec.get("replicas", 1)
    return (
        st.get("observedGeneration", 0) >= (deploy.get("metadata") or {}).get("generation", 0)
        and st.get("updatedReplicas", 0) >= want
        and st.get("availableReplicas", 0) >= want
        and st.get("replicas", 0) <= want
    )


def deployment_problem(deploy: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> str | None:
    """Why a rollout is stuck: the Deployment's conditions, then the new pods' reasons."""
    if rollout_complete(deploy):
        return None
    commit = ((deploy.get("metadata") or {}).get("annotations") or {}).get(ANN_COMMIT, "")
    problem = pod_problem(pods, commit)
    if problem:
        return problem
    for cond in (deploy.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return _short(f"rollout stuck: {cond.get('message', '')}")
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return _short(f"{cond.get('reason', 'ReplicaFailure')}: {cond.get('message', '')}")
    return None


def condition(
    type_: str, status: bool | None, reason: str, message: str, generation: int,
    previous: Iterable[Mapping[str, Any]] = (), now: str | None = None,
) -> dict[str, Any]:
    """One API-conventions condition; lastTransitionTime kept while the status is unchanged."""
    value = "Unknown" if status is None else ("True" if status else "False")
    old = next((c for c in previous if c.get("type") == type_), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == value else None
    return {
        "type": type_, "status": value, "reason": reason, "message": _short(message),
        "lastTransitionTime": since or now or now_iso(), "observedGeneration": generation,
    }


@dataclass
class Observation:
    """Everything the status is computed from."""

    repo: RepoRef
    generation: int
    commit: str | None  # the synced head, None before the first successful fetch
    folders: Mapping[str, Folder]  # selected, valid-named folders at `commit`
    deployments: Iterable[Mapping[str, Any]]
    pods: Iterable[Mapping[str, Any]] = ()
    invalid: Mapping[str, str] = field(default_factory=dict)
    source_error: str | None = None
    source_reason: str = "FetchFailed"  # SourceReady's reason while source_error is set
    previous: Mapping[str, Any] = field(default_factory=dict)  # the current status
    archived: Iterable[str] = ()  # folders with Modelbit's .archived marker: listed, not served
    builds: Mapping[str, str] = field(default_factory=dict)  # folder key -> building / built <digest> / build failed: ...
    branches: Sequence[tuple[str, str]] = ()  # (branch, synced commit) of every followed branch, first first
    endpoints: Sequence[Mapping[str, Any]] | None = None  # endpoint_entries of every branch; None: keep the previous


def _pods_of(pods: list[Mapping[str, Any]], child: str, deploy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    selector = ((deploy.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return [
        p for p in pods
        if selector and all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in selector.items())
    ]


@dataclass
class _Health:
    """Which deployments are degraded (with why) and which are still rolling out."""

    degraded: list[str] = field(default_factory=list)
    progressing: list[str] = field(default_factory=list)


def _branch_of(obs: Observation, key: str) -> str:
    """The branch a folder key is on (its real name, also for the first branch)."""
    folder = obs.folders.get(key)
    if folder is not None and folder.branch:
        return folder.branch
    named, _name = split_key(key)
    return named or obs.repo.first_branch or obs.repo.ref


def _deployment_entry(obs: Observation, key: str, deploy: Mapping[str, Any] | None,
                      pods: list[Mapping[str, Any]], health: _Health) -> dict[str, Any]:
    """One entry of status.deployments; notes its trouble or progress in `health`."""
    folder = obs.folders.get(key)
    named, name = split_key(key)
    branch = _branch_of(obs, key)
    entry: dict[str, Any] = {"name": name, "branch": branch, "url": service_url(obs.repo, name, named)}
    label = name if not named else f"{name} (branch {branch})"
    problem = obs.invalid.get(key)
    if deploy is not None:
        ann = deploy["metadata"].get("annotations") or {}
        st = deploy.get("status") or {}
        serving_commit = ann.get(ANN_COMMIT, "")
        entry.update(
            version=int(ann.get(ANN_VERSION, 0) or 0), commit=serving_commit,
            replicas=int((deploy.get("spec") or {}).get("replicas", 1)),
            readyReplicas=int(st.get("readyReplicas", 0) or 0),
        )
        up_to_date = folder is not None and serving_commit == folder.commit
        entry["ready"] = rollout_complete(deploy) and up_to_date and problem is None
        if problem is None:
            problem = deployment_problem(deploy, _pods_of(pods, deploy["metadata"]["name"], deploy))
        if problem:
            serving = f" (serving version {entry['version']})" if entry["readyReplicas"] else ""
            health.degraded.append(f"{label}: {problem}{serving}")
        elif not entry["ready"]:
            health.progressing.append(label)
    else:
        entry.update(ready=False, replicas=0, readyReplicas=0)
        if folder is not None:
            entry.update(version=folder.version, commit=folder.commit)
        if problem:
            health.degraded.append(f"{label}: {problem}")
        else:
            health.progressing.append(label)
    # A build's state (building, built <digest>) is the message while nothing is wrong; in
    # the existing field, so that an operator newer than the installed CRD still writes status.
    entry["message"] = _short(problem or obs.builds.get(key, ""))
    return entry


def _conditions(obs: Observation, health: _Health, ready_count: int, served: int, now: str) -> list[dict[str, Any]]:
    """Ready, SourceReady, Progressing, Degraded, in that order."""
    previous = obs.previous.get("conditions") or []

    def cond(t: str, s: bool | None, reason: str, message: str) -> dict[str, Any]:
        return condition(t, s, reason, message, obs.generation, previous, now)

    if obs.source_error:
        source = cond("SourceReady", False, obs.source_reason, obs.source_error)
    elif obs.commit:
        source = cond("SourceReady", True, "Fetched", f"fetched {obs.commit[:12]}")
    else:
        source = cond("SourceReady", None, "Pending", "not fetched yet")
    degraded, progressing = health.degraded, health.progressing
    deg = cond("Degraded", bool(degraded), "DeploymentFailing" if degraded else "AsExpected",
               "; ".join(degraded) or "every deployment is healthy")
    prog = cond("Progressing", bool(progressing), "RollingOut" if progressing else "Complete",
                f"rolling out: {', '.join(progressing)}" if progressing else "every rollout is complete")
    if source["status"] == "True" and not degraded and not progressing:
        ready = cond("Ready", True, "Serving", f"{ready_count}/{served} deployments serve {obs.commit[:12] if obs.commit else ''}")
    elif source["status"] == "False":
        ready = cond("Ready", False, "SourceNotReady", source["message"])
    elif degraded:
        ready = cond("Ready", False, "Degraded", deg["message"])
    else:
        ready = cond("Ready", False, "Progressing", prog["message"])
    return [ready, source, prog, deg]


def build_status(obs: Observation, now: str | None = None) -> dict[str, Any]:
    """The whole status subresource for one ModelRepo."""
    now = now or now_iso()
    by_child = {d["metadata"]["name"]: d for d in obs.deployments}
    pods = list(obs.pods)
    health = _Health()
    archived = set(obs.archived)
    entries: list[dict[str, Any]] = []
    served = 0
    for key in _ordered_keys(obs):
        if key in archived and key not in obs.invalid:
            entries.append({"name": split_key(key)[1], "branch": _branch_of(obs, key), "ready": False,
                            "replicas": 0, "readyReplicas": 0, "message": "archived"})
            continue
        served += 1
        named, name = split_key(key)
        entries.append(_deployment_entry(obs, key, by_child.get(child_name(obs.repo.name, name, named)), pods, health))
    ready_count = sum(1 for e in entries if e.get("ready"))
    status: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "ready": f"{ready_count}/{served}",
        "deployments": entries,
        "conditions": _conditions(obs, health, ready_count, served, now),
    }
    if obs.commit:
        status["commit"] = obs.commit
        status["shortCommit"] = obs.commit[:7]
    branches = [{"name": b, "commit": c} for b, c in obs.branches] or obs.previous.get("branches")
    if branches:
        status["branches"] = list(branches)
    endpoints = obs.endpoints if obs.endpoints is not None else obs.previous.get("endpoints")
    if endpoints:
        status["endpoints"] = list(endpoints)
    last = obs.previous.get("lastSyncTime")
    if last:
        status["lastSyncTime"] = last
    return status


def _ordered_keys(obs: Observation) -> list[str]:
    """Folder keys, the first branch's first, then by branch and name."""
    def order(key: str) -> tuple[bool, str, str]:
        named, name = split_key(key)
        return (bool(named), named, name)

    return sorted(set(obs.folders) | set(obs.invalid), key=order)


def _resolve(target: Target, branch: str, folders: Mapping[tuple[str, str], Folder],
             aliases: Mapping[str, Mapping[str, Mapping[str, str]]]) -> dict[str, Any]:
    """One backend or mirror: what the file says and the running version it names (when known)."""
    branch = target.branch or branch
    entry: dict[str, Any] = {"deployment": target.name, "branch": branch, "version": target.version}
    folder = folders.get((branch, target.name))
    ref = aliases.get(branch, {}).get(target.name, {}).get(target.version, target.version)
    if folder is None:
        return entry
    if names_version(ref, folder.version, folder.commit, is_latest=True):
        entry["resolvedVersion"] = folder.version
    elif ref.isdigit() and 1 <= int(ref) <= folder.version:
        entry["resolvedVersion"] = int(ref)
    return entry


def endpoint_entries(
    branch: str, found: Endpoints, problems: Iterable[tuple[str, str]],
    folders: Mapping[tuple[str, str], Folder], aliases: Mapping[str, Mapping[str, Mapping[str, str]]],
) -> list[dict[str, Any]]:
    """status.endpoints of one branch: every endpoint file with its backends resolved, or why it is invalid.

    `problems`: (file name under endpoints/, problem) of the files that did not parse; the
    problems only the whole branch can show (a backend naming no deployment) are added here.
    `folders`: (branch, name) -> Folder of every followed branch; `aliases`: branch -> Name -> alias -> ref."""
    names = {name for (b, name) in folders if b == branch}
    by_file: dict[str, list[str]] = {}
    for filename, problem in [*problems, *cross_problems(found, names)]:
        by_file.setdefault(filename, []).append(problem)
    entries: list[dict[str, Any]] = []
    for name, endpoint in sorted(found.endpoints.items()):
        entries.append(_endpoint_entry(branch, endpoint, by_file.pop(f"{name}.yaml", []), folders, aliases))
    for filename, messages in sorted(by_file.items()):
        if filename.rsplit(".", 1)[0] in found.endpoints or filename.startswith("aliases."):
            continue  # a .yml endpoint (already listed) or the aliases file (not an endpoint)
        entries.append({"name": filename.rsplit(".", 1)[0], "branch": branch, "file": f"endpoints/{filename}",
                        "valid": False, "message": _short("; ".join(messages))})
    return entries


def _endpoint_entry(branch: str, endpoint: Endpoint, messages: list[str],
                    folders: Mapping[tuple[str, str], Folder],
                    aliases: Mapping[str, Mapping[str, Mapping[str, str]]]) -> dict[str, Any]:
    backends = [{"key": b.key, **_resolve(b.target, branch, folders, aliases), "weight": b.weight}
                for b in endpoint.backends]
    mirrors = [{"key": key, **_resolve(t, branch, folders, aliases)} for key, t in endpoint.mirrors]
    return {"name": endpoint.name, "branch": branch, "file": f"endpoints/{endpoint.name}.yaml",
            "valid": not messages, "message": _short("; ".join(messages)), "backends": backends, "mirrors": mirrors}


def same_status(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal except lastSyncTime: a poll that changes nothing writes nothing."""
    strip = {"lastSyncTime"}
    return {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}
