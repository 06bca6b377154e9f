"""The kopf handlers: thin wiring from Kubernetes events to the plain functions in sync.py.

One async daemon per ModelRepo runs its poll loop (spec.interval, honouring suspend) and does
the git and API work on a bounded thread pool; webhooks, spec updates and changes of the
children only wake that loop (triggers.py), so at most one sync of a ModelRepo runs at a time.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import kopf

from modelrepo.operator import kube, metrics, triggers
from modelrepo.operator.keys import GROUP, LABEL_REPO, MANAGED_BY, PLURAL, VERSION
from modelrepo.operator.sync import RepoState, refresh_status, sync

PREFIX = "operator.modelrepo.dev"
FINALIZER = f"{PREFIX}/finalizer"
log = logging.getLogger("modelrepo.operator")
T = TypeVar("T")

# Set by `modelrepo operator` before kopf starts (module-level so kopf's handlers can see them).
CONFIG: dict[str, Any] = {
    "cache_dir": Path(os.environ.get("MODELREPO_CACHE_DIR", "/tmp/modelrepo-cache")),
    "workers": int(os.environ.get("MODELREPO_GIT_WORKERS", "8")),
    "webhook_port": None,  # int: serve /hooks/* on this port
    "webhook_host": "0.0.0.0",
}
_pool: ThreadPoolExecutor | None = None
_bodies: dict[tuple[str, str], dict[str, Any]] = {}  # last body seen per ModelRepo (webhooks)


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=CONFIG["workers"], thread_name_prefix="modelrepo-git")
    return _pool


async def _in_pool(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking git/API work on the git pool, keeping kopf's context (for kopf.event)."""
    ctx = contextvars.copy_context()
    call = functools.partial(ctx.run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor(), call)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Settings that avoid kopf's known failure modes (issue 5)."""
    # Watches silently stalling behind proxies/load balancers: bounded server and client timeouts.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 120
    # Progress and diff-base in annotations under our own prefix; our own finalizer name.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration",
    )
    settings.persistence.finalizer = FINALIZER
    # Sync handlers would share kopf's pool with git work: size it, and keep git on its own pool.
    settings.execution.max_workers = max(4, CONFIG["workers"])
    # Events go through kopf's background poster (a queue): a slow API never blocks a sync.
    settings.posting.enabled = True
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "modelrepo-operator"
    settings.posting.event_name_prefix = "modelrepo-"
    settings.peering.standalone = True
    # No scanning of CRDs/namespaces: the CRD exists before the operator starts, and the watched
    # namespaces are given by name; this keeps the RBAC to what docs/operator.md lists.
    settings.scanning.disabled = True
    if CONFIG.get("webhook_port"):
        await _start_webhooks()


async def _start_webhooks() -> None:
    try:
        from modelrepo.operator import webhooks
    except ImportError:
        log.warning("webhooks module unavailable; polling only")
        return

    def read_secret(namespace: str, name: str) -> dict[str, bytes]:
        try:
            return {k: base64.b64decode(v) for k, v in kube.read_secret(namespace, name).items()}
        except kopf.PermanentError:
            return {}

    async def list_targets() -> list[Any]:
        bodies = list(_bodies.values())
        return await _in_pool(webhooks.targets_from_modelrepos, bodies, read_secret)

    CONFIG["webhook_runner"] = await webhooks.start_server(
        list_targets, triggers.request_sync, host=CONFIG["webhook_host"], port=CONFIG["webhook_port"],
    )


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    runner = CONFIG.pop("webhook_runner", None)
    if runner is not None:
        await runner.cleanup()


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def spec_changed(namespace: str, name: str, **_: Any) -> None:
    """A spec change syncs now instead of at the next poll."""
    triggers.request_sync(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels={**MANAGED_BY, LABEL_REPO: kopf.PRESENT})
@kopf.on.event("", "v1", "pods", labels={**MANAGED_BY, LABEL_REPO: kopf.PRESENT})
def child_changed(namespace: str, labels: dict[str, str], **_: Any) -> None:
    """A child's rollout moved: refresh that ModelRepo's status (no git work)."""
    triggers.request_status(namespace, labels[LABEL_REPO])


@kopf.on.event("batch", "v1", "jobs", labels={**MANAGED_BY, LABEL_REPO: kopf.PRESENT})
def build_changed(namespace: str, labels: dict[str, str], **_: Any) -> None:
    """An environment build moved: sync, so that a built image is rolled out (or its failure shown)."""
    triggers.request_sync(namespace, labels[LABEL_REPO])


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)
async def repo_loop(namespace: str, name: str, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """The poll loop of one ModelRepo: sync every spec.interval or when woken."""
    loop = asyncio.get_running_loop()
    waker = triggers.register(namespace, name, loop)
    state = RepoState()
    due = 0.0  # sync at once on start/resume
    reported: str | None = None  # the spec.interval problem last reported
    try:
        while not stopped:
            wants = await waker.wait(max(0.0, due - loop.time()))
            body = await _in_pool(kube.get_modelrepo, namespace, name)
            if body is None:
                return
            _bodies[(namespace, name)] = body
            spec = body.get("spec") or {}
            interval, problem = triggers.poll_interval(spec.get("interval"))
            if problem and problem != reported:
                log.warning("ModelRepo %s/%s: %s", namespace, name, problem)
                await _in_pool(kube.post_event, body, "Warning", "InvalidInterval", problem)
            reported = problem
            step = triggers.next_step(wants, loop.time(), due, bool(spec.get("suspend")))
            if step == "suspended":
                due = loop.time() + interval
            elif step == "sync":
                due = loop.time() + await _sync_once(body, state, interval)
            elif step == "status":
                await asyncio.sleep(1)  # let a burst of pod/Deployment events settle
                if triggers.SYNC in waker.take():
                    due = 0.0
                    continue
                await _guard(namespace, name, refresh_status, body, state)
    finally:
        triggers.unregister(namespace, name, waker)
        _bodies.pop((namespace, name), None)


async def _sync_once(body: dict[str, Any], state: RepoState, interval: float) -> float:
    """One sync; returns the delay until the next one (backoff after failures)."""
    meta = body["metadata"]
    result = await _guard(meta["namespace"], meta["name"], sync, body, state, CONFIG["cache_dir"])
    if result is None or result.error:
        state.failures = max(state.failures, 1)
        return min(interval, 5.0 * 2 ** min(state.failures - 1, 6))
    if result.applied or result.pruned:
        log.info(
            "ModelRepo %s/%s at %s: applied %s, pruned %s, invalid %s", meta["namespace"], meta["name"],
            (result.commit or "")[:12], result.applied, result.pruned, sorted(result.invalid),
        )
    return interval


async def _guard(namespace: str, name: str, fn: Callable[..., T], *args: Any) -> T | None:
    """Run one step; API/git trouble is logged and retried by the loop, never kills it."""
    try:
        return await _in_pool(fn, *args)
    except (kopf.TemporaryError, kopf.PermanentError) as exc:
        metrics.SYNC_ERRORS.labels(namespace, name, "api").inc()
        log.warning("ModelRepo %s/%s: %s", namespace, name, exc)
    except Exception:
        metrics.SYNC_ERRORS.labels(namespace, name, "internal").inc()
        log.exception("ModelRepo %s/%s: sync failed", namespace, name)
    return None


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def deleted(namespace: str, name: str, **_: Any) -> None:
    """Children go with their owner (garbage collection); only our metrics need forgetting."""
    metrics.forget(namespace, name)
