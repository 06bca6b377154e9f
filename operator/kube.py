"""THE one module that talks to the Kubernetes API for the operator.

Writes are server-side apply with one field manager (`modelrepo-operator`), deletes, and
Events. API errors become kopf.TemporaryError (retry later: conflicts, throttling, server
trouble) or kopf.PermanentError (the request itself is wrong). Every write is counted, so
the benchmark and the metrics can show that a poll with no change writes nothing.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelrepo.operator import metrics
from modelrepo.operator.keys import GROUP, KIND, LABEL_REPO, MANAGED_BY, PLURAL, VERSION
from modelrepo.operator.naming import label_value

FIELD_MANAGER = "modelrepo-operator"
APPLY = "application/apply-patch+yaml"
log = logging.getLogger("modelrepo.operator.kube")

WRITES: collections.Counter[str] = collections.Counter()  # "<verb> <kind>" -> count
READS: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()
_api: client.ApiClient | None = None


def api_client() -> client.ApiClient:
    """One shared ApiClient, configured from the pod's service account or the kubeconfig."""
    global _api
    with _lock:
        if _api is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            _api = client.ApiClient()
        return _api


def reset_client() -> None:
    """Forget the configured client (tests switch kubeconfigs)."""
    global _api
    with _lock:
        _api = None


def _count(counter: collections.Counter[str], what: str) -> None:
    with _lock:
        counter[what] += 1
    if counter is WRITES:
        verb, _, kind = what.partition(" ")
        metrics.API_WRITES.labels(verb, kind).inc()


@contextlib.contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Map ApiException to kopf's retry semantics with a message fit for status."""
    try:
        yield
    except ApiException as exc:
        reason = f"{what}: {exc.status} {exc.reason}"
        if exc.status in (409, 429) or (exc.status or 0) >= 500 or exc.status == 0:
            raise kopf.TemporaryError(reason, delay=5 if exc.status == 409 else 15) from None
        raise kopf.PermanentError(f"{reason}: {_api_message(exc)}") from None


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", ""))[:300]
    except (ValueError, AttributeError):
        return ""


def _selector(repo_name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in {**MANAGED_BY, LABEL_REPO: label_value(repo_name)}.items())


# ----------------------------------------------------------------------------- reads

def get_modelrepo(namespace: str, name: str) -> dict[str, Any] | None:
    _count(READS, "get ModelRepo")
    api = client.CustomObjectsApi(api_client())
    try:
        return api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        with api_errors(f"reading ModelRepo {namespace}/{name}"):
            raise


def read_secret(namespace: str, name: str) -> dict[str, str]:
    """The Secret's base64 `.data`; a missing Secret is a clear, permanent problem."""
    _count(READS, "get Secret")
    try:
        secret = client.CoreV1Api(api_client()).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise kopf.PermanentError(f"Secret {namespace}/{name} (spec.secretRef) does not exist") from None
        with api_errors(f"reading Secret {namespace}/{name}"):
            raise
    return dict(secret.data or {})


def list_children(namespace: str, repo_name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Deployments, Services and Pods of one ModelRepo, as plain dicts (raw JSON: no model objects)."""
    sel = _selector(repo_name)
    api = api_client()
    with api_errors(f"listing children of {namespace}/{repo_name}"):
        _count(READS, "list Deployment")
        deps = _raw(client.AppsV1Api(api).list_namespaced_deployment(namespace, label_selector=sel, _preload_content=False))
        _count(READS, "list Service")
        svcs = _raw(client.CoreV1Api(api).list_namespaced_service(namespace, label_selector=sel, _preload_content=False))
        _count(READS, "list Pod")
        pods = _raw(client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=sel, _preload_content=False))
    return deps, svcs, pods


def _raw(response: Any) -> list[dict[str, Any]]:
    """Items of a list response read as JSON (10x faster than building client models)."""
    data = json.loads(response.data)
    kind = str(data.get("kind", "")).removesuffix("List")
    items = data.get("items") or []
    for item in items:
        item.setdefault("apiVersion", data.get("apiVersion", "v1"))
        item.setdefault("kind", kind)
    return items


# ----------------------------------------------------------------------------- writes

def apply(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Server-side apply of a Deployment or Service we own (force: we are its only manager)."""
    kind, meta = obj["kind"], obj["metadata"]
    api = api_client()
    with api_errors(f"applying {kind} {meta['namespace']}/{meta['name']}"):
        _count(WRITES, f"apply {kind}")
        if kind == "Deployment":
            result = client.AppsV1Api(api).patch_namespaced_deployment(
                meta["name"], meta["namespace"], obj, field_manager=FIELD_MANAGER, force=True,
                _content_type=APPLY,
            )
        elif kind == "Service":
            result = client.CoreV1Api(api).patch_namespaced_service(
                meta["name"], meta["namespace"], obj, field_manager=FIELD_MANAGER, force=True,
                _content_type=APPLY,
            )
        elif kind == "ConfigMap":
            result = client.CoreV1Api(api).patch_namespaced_config_map(
                meta["name"], meta["namespace"], obj, field_manager=FIELD_MANAGER, force=True,
                _content_type=APPLY,
            )
        else:
            raise kopf.PermanentError(f"kube.apply does not handle kind {kind}")
    return api.sanitize_for_serialization(result)


def annotate_pods(namespace: str, labels: Mapping[str, str], annotations: Mapping[str, str]) -> None:
    """Set annotations on the pods matching `labels` (the kubelet then refreshes their mounted
    ConfigMaps at once instead of at its next periodic sync; nothing restarts)."""
    api = client.CoreV1Api(api_client())
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    with api_errors(f"annotating pods {selector} in {namespace}"):
        _count(READS, "list Pod")
        pods = _raw(api.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False))
        for pod in pods:
            if (pod["metadata"].get("annotations") or {}).items() >= dict(annotations).items():
                continue
            _count(WRITES, "patch Pod")
            api.patch_namespaced_pod(pod["metadata"]["name"], namespace, {"metadata": {"annotations": dict(annotations)}})


def delete_child(namespace: str, name: str) -> None:
    """Delete a Deployment and its Service (a missing one is already done)."""
    api = api_client()
    body = client.V1DeleteOptions(propagation_policy="Background")
    for kind, call in (
        ("Deployment", client.AppsV1Api(api).delete_namespaced_deployment),
        ("Service", client.CoreV1Api(api).delete_namespaced_service),
    ):
        _count(WRITES, f"delete {kind}")
        try:
            call(name, namespace, body=body)
        except ApiException as exc:
            if exc.status == 404:
                continue
            with api_errors(f"deleting {kind} {namespace}/{name}"):
                raise


def apply_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Server-side apply of the status subresource; fields we stop sending are removed."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
        "metadata": {"name": name, "namespace": namespace}, "status": dict(status),
    }
    _count(WRITES, "apply ModelRepo/status")
    try:
        client.CustomObjectsApi(api_client()).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, body, field_manager=FIELD_MANAGER, force=True,
            _content_type=APPLY,
        )
    except ApiException as exc:
        if exc.status == 404:  # deleted meanwhile: nothing to report on
            return
        with api_errors(f"writing status of ModelRepo {namespace}/{name}"):
            raise


def post_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Post an Event about the ModelRepo without blocking the sync.

    Inside kopf the event goes to kopf's posting queue (a background task); outside kopf (tests,
    benchmarks) it is written directly. A failure to post never fails a sync.
    """
    _count(WRITES, "create Event")
    try:
        kopf.event(dict(body), type=type_, reason=reason, message=message)
        return
    except LookupError:  # no kopf context: not running under the operator
        pass
    except Exception:  # noqa: BLE001 — events are best effort
        log.warning("could not queue event %s for %s", reason, body["metadata"].get("name"))
        return
    meta = body["metadata"]
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
        involved_object=client.V1ObjectReference(
            api_version=body.get("apiVersion", f"{GROUP}/{VERSION}"), kind=body.get("kind", KIND),
            name=meta["name"], namespace=meta["namespace"], uid=meta.get("uid"),
        ),
        reason=reason, message=message[:1000], type=type_, source=client.V1EventSource(component="modelrepo-operator"),
        first_timestamp=_now(), last_timestamp=_now(), count=1,
    )
    try:
        client.CoreV1Api(api_client()).create_namespaced_event(meta["namespace"], event)
    except ApiException as exc:
        log.warning("could not post event %s: %s", reason, exc.status)


def _now() -> Any:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


# ----------------------------------------------------------------------------- environment builds

def get_job(namespace: str, name: str) -> dict[str, Any] | None:
    """A build Job as a plain dict, or None when there is none."""
    _count(READS, "get Job")
    try:
        response = client.BatchV1Api(api_client()).read_namespaced_job(name, namespace, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return None
        with api_errors(f"reading Job {namespace}/{name}"):
            raise
    return json.loads(response.data)


def list_jobs(namespace: str, label_selector: str) -> list[dict[str, Any]]:
    _count(READS, "list Job")
    with api_errors(f"listing Jobs in {namespace}"):
        return _raw(client.BatchV1Api(api_client()).list_namespaced_job(
            namespace, label_selector=label_selector, _preload_content=False))


def list_pods(namespace: str, label_selector: str) -> list[dict[str, Any]]:
    _count(READS, "list Pod")
    with api_errors(f"listing Pods in {namespace}"):
        return _raw(client.CoreV1Api(api_client()).list_namespaced_pod(
            namespace, label_selector=label_selector, _preload_content=False))


def create_job(job: Mapping[str, Any]) -> None:
    """Create a build Job; one that exists already (another sync was first) is fine."""
    meta = job["metadata"]
    _count(WRITES, "create Job")
    try:
        client.BatchV1Api(api_client()).create_namespaced_job(meta["namespace"], job)
    except ApiException as exc:
        if exc.status == 409:
            return
        with api_errors(f"creating Job {meta['namespace']}/{meta['name']}"):
            raise
