"""One sync of one ModelRepo (docs/operator.md), as a plain function the kopf daemon calls.

ls-remote first; with no new commit and no spec change only the status is recomputed (and
written only if it differs), so an idle poll makes no API write. With a new commit: fetch
blobless into the ModelRepo's cache, compare tree hashes per folder, export + validate + apply
only the changed folders, prune removed ones, write the status, post Events.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf

from modelrepo.format import (
    ENDPOINTS_DIR,
    DeploymentError,
    deployment_path,
    read_metadata,
    validate_folder,
)
from modelrepo.git import Credentials, GitError
from modelrepo.operator import builds, gitsource, inputs, kube, metrics
from modelrepo.operator.keys import ANN_COMMIT, ANN_NAME, ANN_TREE, ANN_VERSION
from modelrepo.operator.plan import make_plan, selected
from modelrepo.operator.policy import POLICY, refusal
from modelrepo.operator.render import (
    Folder,
    FolderSettings,
    RepoRef,
    render_deployment,
    render_service,
)
from modelrepo.operator.status import Observation, build_status, now_iso, same_status
from modelrepo.repository import HistoryError, archived_folders, deployment_versions, folder_trees

log = logging.getLogger("modelrepo.operator")


@dataclass
class RepoState:
    """What the loop of one ModelRepo remembers between polls (lost on restart, by design)."""

    commit: str | None = None
    config_hash: str | None = None
    generation: int | None = None
    folders: dict[str, Folder] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    archived: set[str] = field(default_factory=set)  # folders with Modelbit's .archived marker
    source_error: str | None = None
    source_reason: str = "FetchFailed"
    failures: int = 0
    gateway: dict[str, str] = field(default_factory=dict)  # hashes of the gateway objects last applied
    builds: dict[str, str] = field(default_factory=dict)  # folder -> its environment build's status
    waiting: set[str] = field(default_factory=set)  # folders whose image is being built


@dataclass
class SyncResult:
    commit: str | None = None
    fetched: bool = False
    applied: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    invalid: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def cache_dir(root: Path, repo: RepoRef) -> Path:
    return root / repo.namespace / repo.name / repo.uid


def _credentials(repo: RepoRef) -> Credentials | None:
    if not repo.secret_name:
        return None
    return Credentials.from_secret_data(kube.read_secret(repo.namespace, repo.secret_name))


def _source_failed(
    body: dict[str, Any], repo: RepoRef, state: RepoState, message: str, result: SyncResult,
    reason: str = "FetchFailed",
) -> SyncResult:
    """Report a git/Secret problem or a refused spec: status + one Event per new message; children untouched."""
    metrics.SYNC_ERRORS.labels(repo.namespace, repo.name, "source").inc()
    if message != state.source_error:
        kube.post_event(body, "Warning", reason, message)
        log.warning("ModelRepo %s/%s: %s", repo.namespace, repo.name, message)
    state.source_error = message
    state.source_reason = reason
    state.failures += 1
    result.error = message
    refresh_status(body, state)
    return result


@dataclass
class _Sync:
    """One sync in progress: the ModelRepo, the commit it resolved to, and what it has done."""

    body: dict[str, Any]
    repo: RepoRef
    state: RepoState
    cache: Path
    sha: str
    creds: Credentials | None
    generation: int
    result: SyncResult

    @property
    def spec(self) -> dict[str, Any]:
        return self.body.get("spec") or {}

    def event(self, kind: str, reason: str, message: str) -> None:
        kube.post_event(self.body, kind, reason, message)


def sync(body: dict[str, Any], state: RepoState, cache_root: Path) -> SyncResult:
    """Bring the children of the ModelRepo `body` in line with its repository."""
    repo = RepoRef.from_body(body)
    spec = body.get("spec") or {}
    generation = int(body["metadata"].get("generation") or 0)
    result = SyncResult()
    started = time.monotonic()
    try:
        refused = refusal(spec, POLICY)  # before any git call: a URL with credentials never reaches git
        if refused:
            return _source_failed(body, repo, state, refused.message, result, refused.reason)
        try:
            creds = _credentials(repo)
            metrics.LS_REMOTE.labels(repo.namespace, repo.name).inc()
            sha = gitsource.ls_remote(repo.url, repo.ref, creds)
        except GitError as exc:
            return _source_failed(body, repo, state, f"resolving {repo.ref!r}: {exc}", result)
        except kopf.PermanentError as exc:  # missing Secret
            return _source_failed(body, repo, state, str(exc), result)
        result.commit = sha
        if (
            sha == state.commit and repo.config_hash() == state.config_hash
            and generation == state.generation and state.source_error is None and not state.waiting
        ):
            refresh_status(body, state)
            metrics.LAST_SYNC.labels(repo.namespace, repo.name).set(time.time())
            return result
        return _full_sync(_Sync(body, repo, state, cache_dir(cache_root, repo), sha, creds, generation, result))
    finally:
        metrics.SYNC_SECONDS.labels(repo.namespace, repo.name).observe(time.monotonic() - started)


def _full_sync(run: _Sync) -> SyncResult:
    """A new commit or spec: fetch, apply the changed folders, prune the removed, remember."""
    recovered = run.state.source_error is not None
    fetched = _fetch_folders(run)
    if fetched is None:
        return run.result
    folders, archived = fetched
    repo, spec = run.repo, run.spec
    deployments, services, _pods = kube.list_children(repo.namespace, repo.name)
    plan = make_plan(
        repo.name, folders, deployments, services,
        include=spec.get("include"), exclude=spec.get("exclude"), config_hash=repo.config_hash(),
        archived=archived,
    )
    invalid = {**plan.invalid, **_apply_changed(run, plan.apply)}
    existing = set(folders_from_children(deployments)) | set(run.result.applied)
    for name in plan.services:
        if name in existing:
            kube.apply(render_service(repo, name))
    for child in plan.prune:
        kube.delete_child(repo.namespace, child)
        run.result.pruned.append(child)
        run.event("Normal", "Pruned", f"{child}: its folder is gone from {run.sha[:12]}, archived or not selected")
    if recovered:
        run.event("Normal", "FetchRecovered", f"fetched {run.sha[:12]}")
    state = run.state
    state.commit, state.config_hash, state.generation = run.sha, repo.config_hash(), run.generation
    state.folders = {
        n: f for n, f in folders.items()
        if n not in plan.invalid and selected(n, spec.get("include"), spec.get("exclude"))
    }
    state.invalid = run.result.invalid = invalid
    state.builds = {n: b for n, b in state.builds.items() if n in state.folders}
    state.waiting &= set(state.folders)
    state.archived = set(plan.archived)
    _apply_gateway(run, state.folders)
    refresh_status(run.body, state, synced=True)
    metrics.LAST_SYNC.labels(repo.namespace, repo.name).set(time.time())
    return run.result


def _fetch_folders(run: _Sync) -> tuple[dict[str, Folder], set[str]] | None:
    """Fetch the commit (blobless); every folder's tree and version, and the archived ones.

    None when the fetch failed (already reported)."""
    repo, sha = run.repo, run.sha
    fetch_started = time.monotonic()
    try:
        gitsource.fetch(run.cache, repo.url, sha, run.creds, ref=repo.branch)
        trees = folder_trees(run.cache, sha)
        archived = archived_folders(run.cache, sha, set(trees))
        history = deployment_versions(run.cache, sha)
        folders = inputs.with_inputs(run.cache, repo.url, sha, run.creds, _folders(trees, history, sha))
    except (GitError, HistoryError) as exc:
        message = f"fetching {sha[:12]}: {run.creds.redact(str(exc)) if run.creds else exc}"
        _source_failed(run.body, repo, run.state, message, run.result)
        return None
    metrics.FETCH_SECONDS.labels(repo.namespace, repo.name).observe(time.monotonic() - fetch_started)
    run.result.fetched = True
    run.state.source_error = None
    run.state.failures = 0
    return folders, archived


def _folders(trees: dict[str, str], history: dict[str, list[Any]], sha: str) -> dict[str, Folder]:
    """Each folder's tree and its newest version (commit, number) at `sha`."""
    folders: dict[str, Folder] = {}
    for name, tree in trees.items():
        versions = history.get(name) or []
        last = versions[-1] if versions else None
        folders[name] = Folder(name, tree, last.commit if last else sha, last.number if last else 1)
    return folders


def _apply_changed(run: _Sync, changed: list[Folder]) -> dict[str, str]:
    """Export, check and apply each changed folder; the problems of those refused, by name."""
    repo, sha = run.repo, run.sha
    paths = [deployment_path(f.name) for f in changed]
    invalid: dict[str, str] = {}
    try:  # one round trip for every changed folder's files instead of one per file
        gitsource.prefetch_blobs(run.cache, repo.url, sha, paths, run.creds)
    except GitError as exc:
        log.info("prefetch of %d folders failed, files will be fetched one by one: %s", len(changed), exc)
    with tempfile.TemporaryDirectory(prefix="modelrepo-export-") as tmp:
        exported: Path | None = Path(tmp)
        try:
            gitsource.export_folders(run.cache, repo.url, sha, paths, Path(tmp), run.creds)
        except GitError as exc:  # one bad path must not block the others: export one by one
            log.info("exporting %d folders at once failed (%s); one by one", len(changed), exc)
            exported = None
        for folder in changed:
            was_building = run.state.builds.get(folder.name) == "building"
            problem = _check_and_apply(repo, run.cache, sha, run.creds, folder, Path(tmp), exported, run.state)
            if problem:
                invalid[folder.name] = problem
                failed = problem.startswith("build failed")
                run.event("Warning", "BuildFailed" if failed else "InvalidDeployment",
                          f"{folder.name}: {problem}" if failed else problem)
                continue
            if folder.name in run.state.waiting:
                if not was_building and run.state.builds.get(folder.name) == "building":
                    run.event("Normal", "Building", f"{folder.name}: building its environment image")
                continue
            run.result.applied.append(folder.name)
            metrics.ROLLOUTS.labels(repo.namespace, repo.name).inc()
            run.event("Normal", "RollingOut", f"{folder.name}: version {folder.version} (commit {folder.commit[:12]})")
    return invalid


def _check_and_apply(
    repo: RepoRef, cache: Path, sha: str, creds: Credentials | None, folder: Folder, tmp: Path,
    exported_root: Path | None, state: RepoState,
) -> str | None:
    """Check one changed (already exported) folder statically and apply its Deployment; or say why not."""
    path = deployment_path(folder.name)
    root = exported_root or tmp / folder.name
    if exported_root is None:
        try:
            gitsource.export_folder(cache, repo.url, sha, path, root, creds)
        except GitError as exc:
            return f"{path}: could not read it at {sha[:12]}: {exc}"
    exported = root / path
    errors = validate_folder(exported, lfs_pointers=True)  # the pods download the LFS objects
    if errors:
        return "; ".join(_relative(str(e), root) for e in errors)
    try:
        metadata = read_metadata(exported)
    except DeploymentError as exc:
        return _relative(str(exc), root)
    outcome = builds.serve_with(repo.namespace, repo.name, exported)
    state.waiting.discard(folder.name)
    state.builds.pop(folder.name, None)
    if outcome.build:
        state.builds[folder.name] = outcome.build
    if outcome.problem:
        return outcome.problem
    if outcome.wait:
        state.waiting.add(folder.name)
        return None
    settings = FolderSettings(
        replicas=metadata.replicas, resources=metadata.resources, env=metadata.env,
        image=outcome.image, gpu=outcome.gpu_fields,
    )
    kube.apply(render_deployment(repo, folder, settings))
    return None


def _apply_gateway(run: _Sync, folders: dict[str, Folder]) -> None:
    """The gateway's routing table (deployed folders, endpoints/ at the commit), Deployment, Service.

    A failure here is reported and leaves the model deployments alone."""
    from modelrepo.format.endpoints import cross_problems, read_endpoints
    from modelrepo.operator import gateway

    repo = run.repo
    try:
        with tempfile.TemporaryDirectory(prefix="modelrepo-endpoints-") as tmp:
            with contextlib.suppress(GitError):  # no endpoints/ at this commit
                gitsource.export_folders(run.cache, repo.url, run.sha, [ENDPOINTS_DIR], Path(tmp), run.creds)
            found, errors = read_endpoints(tmp)
        problems = [_relative(str(e), Path(tmp)) for e in errors]
        problems += [f"{ENDPOINTS_DIR}/{f}: {p}" for f, p in cross_problems(found, set(folders))]
        for problem in problems:
            run.event("Warning", "InvalidEndpoint", problem)
        table = gateway.routing_table(repo, folders, found.to_json())
        keys_secret = (run.spec.get("apiKeysSecretRef") or {}).get("name")
        wanted = {"table": gateway.table_hash(table), "pods": gateway.table_hash([repo.config_hash(), keys_secret])}
        applied = run.state.gateway
        if applied.get("table") != wanted["table"]:
            kube.apply(gateway.render_config_map(repo, table))
        if applied.get("pods") != wanted["pods"]:
            kube.apply(gateway.render_deployment(repo, keys_secret))
            kube.apply(gateway.render_service(repo))
        if applied.get("table") != wanted["table"]:
            kube.annotate_pods(repo.namespace, gateway.gateway_labels(repo), {gateway.ANN_TABLE: wanted["table"]})
        run.state.gateway = wanted
    except Exception as exc:  # noqa: BLE001 - the gateway must never block the model deployments
        log.exception("gateway of %s/%s not applied", repo.namespace, repo.name)
        run.event("Warning", "GatewayFailed", f"gateway not updated: {exc}")


def folders_from_children(deployments: list[dict[str, Any]]) -> dict[str, Folder]:
    """What is deployed, as folders: the status before this process's first successful fetch."""
    folders: dict[str, Folder] = {}
    for d in deployments:
        ann = d["metadata"].get("annotations") or {}
        name = ann.get(ANN_NAME)
        if name:
            folders[name] = Folder(name, ann.get(ANN_TREE, ""), ann.get(ANN_COMMIT, ""), int(ann.get(ANN_VERSION, 0) or 0))
    return folders


def _relative(message: str, root: Path) -> str:
    return message.replace(f"{root.resolve()}/", "").replace(f"{root}/", "")


def refresh_status(body: dict[str, Any], state: RepoState, *, synced: bool = False) -> bool:
    """Recompute the status from the children; write it only if it changed. True if written."""
    repo = RepoRef.from_body(body)
    previous = dict(body.get("status") or {})
    deployments, _services, pods = kube.list_children(repo.namespace, repo.name)
    status = build_status(Observation(
        repo=repo, generation=int(body["metadata"].get("generation") or 0),
        commit=state.commit or previous.get("commit"),
        folders=state.folders or folders_from_children(deployments),
        deployments=deployments, pods=pods, invalid=state.invalid, archived=state.archived,
        source_error=state.source_error, source_reason=state.source_reason, previous=previous,
        builds=state.builds,
    ))
    if synced and status.get("commit") != previous.get("commit"):
        status["lastSyncTime"] = now_iso()
    if same_status(status, previous) and status.get("lastSyncTime") == previous.get("lastSyncTime"):
        return False
    kube.apply_status(repo.namespace, repo.name, status)
    body["status"] = status  # later refreshes compare against what was written
    return True
