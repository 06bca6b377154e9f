"""One sync of one ModelRepo (docs/operator.md), as a plain function the kopf daemon calls.

ls-remote first (of spec.branch/revision, or of every branch for spec.branches); with no new
commit on any followed branch and no spec change only the status is recomputed (and written only
if it differs), so an idle poll makes no API write. With a new commit: fetch blobless into the
ModelRepo's cache, compare tree hashes per (branch, folder), export + validate + apply only the
changed folders, prune removed ones (and those of branches gone from the remote), write the
gateway's table and the status, post Events. Each branch's folders are keyed by Folder.key.
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
from modelrepo.format.endpoints import Endpoints, cross_problems, endpoint_files, parse_files
from modelrepo.git import Credentials, GitError, redact_url
from modelrepo.operator import builds, gitsource, inputs, kube, metrics
from modelrepo.operator.keys import ANN_BRANCH, ANN_COMMIT, ANN_NAME, ANN_TREE, ANN_VERSION
from modelrepo.operator.plan import make_plan, match_branches, selected
from modelrepo.operator.policy import POLICY, refusal
from modelrepo.operator.render import (
    Folder,
    FolderSettings,
    RepoRef,
    render_deployment,
    render_service,
    split_key,
)
from modelrepo.operator.status import (
    Observation,
    build_status,
    endpoint_entries,
    now_iso,
    same_status,
)
from modelrepo.repository import HistoryError, archived_folders, deployment_versions, folder_trees

log = logging.getLogger("modelrepo.operator")


@dataclass
class RepoState:
    """What the loop of one ModelRepo remembers between polls (lost on restart, by design)."""

    commit: str | None = None  # the first branch's head
    heads: dict[str, str] = field(default_factory=dict)  # every followed branch -> its synced head, first first
    missing: tuple[str, ...] = ()  # spec.branches names the remote lacks (reported once)
    config_hash: str | None = None
    generation: int | None = None
    folders: dict[str, Folder] = field(default_factory=dict)  # by Folder.key
    invalid: dict[str, str] = field(default_factory=dict)
    archived: set[str] = field(default_factory=set)  # folder keys with Modelbit's .archived marker
    endpoints: list[dict[str, Any]] | None = None  # status.endpoints of every branch, None before a sync
    source_error: str | None = None
    source_reason: str = "FetchFailed"
    failures: int = 0
    gateway: dict[str, str] = field(default_factory=dict)  # hashes of the gateway objects last applied
    builds: dict[str, str] = field(default_factory=dict)  # folder key -> its environment build's status
    waiting: set[str] = field(default_factory=set)  # folder keys whose image is being built


@dataclass
class SyncResult:
    commit: str | None = None
    fetched: bool = False
    applied: list[str] = field(default_factory=list)  # folder keys
    pruned: list[str] = field(default_factory=list)  # child names
    invalid: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def cache_dir(root: Path, repo: RepoRef) -> Path:
    return root / repo.namespace / repo.name / repo.uid


def resolve_heads(repo: RepoRef, creds: Credentials | None) -> tuple[dict[str, str], list[str]]:
    """The followed branches and their heads (first branch first), and the names spec.branches
    lists that the remote lacks. GitError when the first branch (or every branch) is missing."""
    if not repo.branches:
        return {repo.ref: gitsource.ls_remote(repo.url, repo.ref, creds)}, []
    heads, missing = match_branches(repo.branches, gitsource.ls_remote_heads(repo.url, creds))
    first = repo.first_branch
    if first is not None and first not in heads:
        raise GitError(f"no branch {first!r} in {redact_url(repo.url)}")
    if not heads:
        raise GitError(f"no branch of {redact_url(repo.url)} matches {', '.join(repo.branches)}")
    return heads, missing


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
    """One sync in progress: the ModelRepo, the commits its branches resolved to, what it has done."""

    body: dict[str, Any]
    repo: RepoRef
    state: RepoState
    cache: Path
    heads: dict[str, str]  # branch (or revision) -> commit, the first branch first
    creds: Credentials | None
    generation: int
    result: SyncResult

    @property
    def spec(self) -> dict[str, Any]:
        return self.body.get("spec") or {}

    @property
    def sha(self) -> str:
        """The first branch's head."""
        return next(iter(self.heads.values()))

    def branch_of(self, folder: Folder) -> str:
        """The key of `heads` a folder was read from (its branch; the revision when pinned)."""
        return folder.branch or self.repo.ref

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
            heads, missing = resolve_heads(repo, creds)
        except GitError as exc:
            what = repr(repo.ref) if not repo.branches else f"spec.branches {list(repo.branches)}"
            return _source_failed(body, repo, state, f"resolving {what}: {exc}", result)
        except kopf.PermanentError as exc:  # missing Secret
            return _source_failed(body, repo, state, str(exc), result)
        result.commit = next(iter(heads.values()))
        if tuple(missing) != state.missing and missing:
            kube.post_event(body, "Warning", "BranchNotFound",
                            f"spec.branches names {', '.join(missing)}: no such branch in the repository")
        state.missing = tuple(missing)
        if (
            heads == state.heads and repo.config_hash() == state.config_hash
            and generation == state.generation and state.source_error is None and not state.waiting
        ):
            refresh_status(body, state)
            metrics.LAST_SYNC.labels(repo.namespace, repo.name).set(time.time())
            return result
        return _full_sync(_Sync(body, repo, state, cache_dir(cache_root, repo), heads, creds, generation, result))
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
    existing = set(folders_from_children(deployments, repo)) | set(run.result.applied)
    for key in plan.services:
        if key in existing:
            named, name = split_key(key)
            kube.apply(render_service(repo, name, named))
    gone = f"{run.sha[:12]}" if len(run.heads) == 1 else "its branch"
    for child in plan.prune:
        kube.delete_child(repo.namespace, child)
        run.result.pruned.append(child)
        run.event("Normal", "Pruned", f"{child}: its folder is gone from {gone}, archived or not selected")
    if recovered:
        run.event("Normal", "FetchRecovered", f"fetched {run.sha[:12]}")
    state = run.state
    state.commit, state.config_hash, state.generation = run.sha, repo.config_hash(), run.generation
    state.heads = dict(run.heads)
    state.folders = {
        k: f for k, f in folders.items()
        if k not in plan.invalid and selected(f.name, spec.get("include"), spec.get("exclude"))
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
    """Fetch every followed branch's head (blobless); every folder's tree and version (counted
    on its branch), and the archived ones, all by Folder.key.

    None when a fetch failed (already reported): then nothing is applied or pruned."""
    repo = run.repo
    fetch_started = time.monotonic()
    folders: dict[str, Folder] = {}
    archived: set[str] = set()
    for branch, sha in run.heads.items():
        try:
            found, gone = _branch_folders(run, branch, sha)
        except (GitError, HistoryError) as exc:
            message = f"fetching {sha[:12]}: {run.creds.redact(str(exc)) if run.creds else exc}"
            _source_failed(run.body, repo, run.state, message, run.result)
            return None
        folders.update((f.key, f) for f in found)
        archived |= {f.key for f in found if f.name in gone}
    metrics.FETCH_SECONDS.labels(repo.namespace, repo.name).observe(time.monotonic() - fetch_started)
    run.result.fetched = True
    run.state.source_error = None
    run.state.failures = 0
    return folders, archived


def _branch_folders(run: _Sync, branch: str, sha: str) -> tuple[list[Folder], set[str]]:
    """One branch at `sha`: its folders (versions on its first-parent history) and the archived names."""
    repo = run.repo
    named = branch if (repo.branch or repo.branches) else ""  # "": a pinned revision
    gitsource.fetch(run.cache, repo.url, sha, run.creds, ref=named or None)
    trees = folder_trees(run.cache, sha)
    archived = archived_folders(run.cache, sha, set(trees))
    history = deployment_versions(run.cache, sha)
    in_name = branch != repo.first_branch
    folders: dict[str, Folder] = {}
    for name, tree in trees.items():
        versions = history.get(name) or []
        last = versions[-1] if versions else None
        folders[name] = Folder(name, tree, last.commit if last else sha, last.number if last else 1,
                               branch=named, branch_in_name=in_name)
    # with the commits of the datasets each folder reads and of the common/ files it links
    return list(inputs.with_inputs(run.cache, repo.url, sha, run.creds, folders).values()), archived


def _apply_changed(run: _Sync, changed: list[Folder]) -> dict[str, str]:
    """Export, check and apply each changed folder, branch by branch; the problems of those refused, by key."""
    invalid: dict[str, str] = {}
    for branch, sha in run.heads.items():
        group = [f for f in changed if run.branch_of(f) == branch]
        if group:
            invalid.update(_apply_group(run, sha, group))
    return invalid


def _label(folder: Folder) -> str:
    """A folder as Events name it: its name, and its branch when that is not the first."""
    return f"{folder.name} (branch {folder.branch})" if folder.named_branch else folder.name


def _apply_group(run: _Sync, sha: str, changed: list[Folder]) -> dict[str, str]:
    """Export, check and apply the changed folders of one branch at its head `sha`."""
    repo = run.repo
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
            key, label = folder.key, _label(folder)
            was_building = run.state.builds.get(key) == "building"
            problem = _check_and_apply(repo, run.cache, sha, run.creds, folder, Path(tmp), exported, run.state)
            if problem:
                invalid[key] = problem
                failed = problem.startswith("build failed")
                on = f" (branch {folder.branch})" if folder.named_branch else ""
                run.event("Warning", "BuildFailed" if failed else "InvalidDeployment",
                          f"{label}: {problem}" if failed else f"{problem}{on}")
                continue
            if key in run.state.waiting:
                if not was_building and run.state.builds.get(key) == "building":
                    run.event("Normal", "Building", f"{label}: building its environment image")
                continue
            run.result.applied.append(key)
            metrics.ROLLOUTS.labels(repo.namespace, repo.name).inc()
            run.event("Normal", "RollingOut", f"{label}: version {folder.version} (commit {folder.commit[:12]})")
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
    state.waiting.discard(folder.key)
    state.builds.pop(folder.key, None)
    if outcome.build:
        state.builds[folder.key] = outcome.build
    if outcome.problem:
        return outcome.problem
    if outcome.wait:
        state.waiting.add(folder.key)
        return None
    settings = FolderSettings(
        replicas=metadata.replicas, resources=metadata.resources, env=metadata.env,
        image=outcome.image, gpu=outcome.gpu_fields, pull_secrets=outcome.pull_secrets,
    )
    kube.apply(render_deployment(repo, folder, settings))
    return None


def _read_endpoints(run: _Sync, sha: str) -> tuple[Endpoints, list[tuple[str, str]]]:
    """One branch's endpoints/ at `sha`: what parsed, and (file name, problem) of the files that did not."""
    with tempfile.TemporaryDirectory(prefix="modelrepo-endpoints-") as tmp:
        with contextlib.suppress(GitError):  # no endpoints/ at this commit
            gitsource.export_folders(run.cache, run.repo.url, sha, [ENDPOINTS_DIR], Path(tmp), run.creds)
        return parse_files({p.name: p.read_text(errors="replace") for p in endpoint_files(tmp)})


def _branch_routes(run: _Sync, folders: dict[str, Folder]) -> list[Any]:
    """Every branch's routes for the gateway; each bad endpoint file an Event; status.endpoints kept in the state."""
    from modelrepo.operator.gateway import BranchRoutes
    from modelrepo.operator.versions import versions_url

    by_branch = {(run.branch_of(f), f.name): f for f in folders.values()}
    read = {branch: _read_endpoints(run, sha) for branch, sha in run.heads.items()}
    aliases = {branch: found.aliases for branch, (found, _problems) in read.items()}
    routes, entries = [], []
    for branch, (found, problems) in read.items():
        names = {name for (b, name) in by_branch if b == branch}
        on = "" if branch == run.repo.first_branch else f" on branch {branch}"
        for filename, problem in [*problems, *cross_problems(found, names)]:
            run.event("Warning", "InvalidEndpoint", f"{ENDPOINTS_DIR}/{filename}{on}: {problem}")
        entries += endpoint_entries(branch, found, problems, by_branch, aliases)
        mine = [f for (b, _name), f in by_branch.items() if b == branch]
        routes.append(BranchRoutes(branch, mine, found.to_json(), on_demand=versions_url(run.repo, branch)))
    run.state.endpoints = entries
    return routes


def _apply_gateway(run: _Sync, folders: dict[str, Folder]) -> None:
    """The gateway's routing table (deployed folders and endpoints/ of every branch), Deployment, Service.

    A failure here is reported and leaves the model deployments alone."""
    from modelrepo.operator import gateway, versions

    repo = run.repo
    try:
        table = gateway.routing_table(repo, _branch_routes(run, folders))
        keys_secret = (run.spec.get("apiKeysSecretRef") or {}).get("name")
        wanted = {"table": gateway.table_hash(table),
                  "pods": gateway.table_hash([repo.config_hash(), keys_secret, sorted(run.heads)])}
        applied = run.state.gateway
        if applied.get("table") != wanted["table"]:
            kube.apply(gateway.render_config_map(repo, table))
        if applied.get("pods") != wanted["pods"]:
            kube.apply(gateway.render_deployment(repo, keys_secret))
            kube.apply(gateway.render_service(repo))
            for branch in run.heads:  # each branch's onDemand runtime (every old version)
                for obj in versions.versions_objects(repo, branch):
                    kube.apply(obj)
            wanted["versions"] = sorted(versions.versions_name(repo, b) for b in run.heads)
            for gone in set(applied.get("versions", [])) - set(wanted["versions"]):  # a branch no longer followed
                kube.delete_child(repo.namespace, gone)
        else:
            wanted["versions"] = applied.get("versions", [])
        if applied.get("table") != wanted["table"]:
            kube.annotate_pods(repo.namespace, gateway.gateway_labels(repo), {gateway.ANN_TABLE: wanted["table"]})
        run.state.gateway = wanted
    except Exception as exc:  # noqa: BLE001 - the gateway must never block the model deployments
        log.exception("gateway of %s/%s not applied", repo.namespace, repo.name)
        run.event("Warning", "GatewayFailed", f"gateway not updated: {exc}")


def folders_from_children(deployments: list[dict[str, Any]], repo: RepoRef | None = None) -> dict[str, Folder]:
    """What is deployed, as folders by key: the status before this process's first successful fetch."""
    first = (repo.first_branch or "") if repo is not None and (repo.branch or repo.branches) else ""
    folders: dict[str, Folder] = {}
    for d in deployments:
        ann = d["metadata"].get("annotations") or {}
        name = ann.get(ANN_NAME)
        if name:
            branch = ann.get(ANN_BRANCH, "")
            folder = Folder(name, ann.get(ANN_TREE, ""), ann.get(ANN_COMMIT, ""), int(ann.get(ANN_VERSION, 0) or 0),
                            branch=branch or first, branch_in_name=bool(branch))
            folders[folder.key] = folder
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
        folders=state.folders or folders_from_children(deployments, repo),
        deployments=deployments, pods=pods, invalid=state.invalid, archived=state.archived,
        source_error=state.source_error, source_reason=state.source_reason, previous=previous,
        builds=state.builds, branches=list(state.heads.items()), endpoints=state.endpoints,
    ))
    if synced and status.get("commit") != previous.get("commit"):
        status["lastSyncTime"] = now_iso()
    if same_status(status, previous) and status.get("lastSyncTime") == previous.get("lastSyncTime"):
        return False
    kube.apply_status(repo.namespace, repo.name, status)
    body["status"] = status  # later refreshes compare against what was written
    return True
