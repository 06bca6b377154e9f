"""Prometheus metrics of the operator (docs/operator.md): sync and fetch durations, last sync time."""

from __future__ import annotations

import contextlib

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

SYNC_SECONDS = Histogram(
    "modelrepo_sync_duration_seconds", "Duration of one sync of a ModelRepo (ls-remote to status).",
    ["namespace", "name"], buckets=_BUCKETS,
)
FETCH_SECONDS = Histogram(
    "modelrepo_fetch_duration_seconds", "Duration of one git fetch into the ModelRepo's cache.",
    ["namespace", "name"], buckets=_BUCKETS,
)
LAST_SYNC = Gauge(
    "modelrepo_last_sync_timestamp_seconds", "Unix time of the last successful sync (poll) of a ModelRepo.",
    ["namespace", "name"],
)
SYNC_ERRORS = Counter(
    "modelrepo_sync_errors_total", "Syncs that failed, by stage.", ["namespace", "name", "stage"],
)
LS_REMOTE = Counter("modelrepo_ls_remote_total", "git ls-remote calls.", ["namespace", "name"])
API_WRITES = Counter("modelrepo_api_writes_total", "Kubernetes API writes by the operator.", ["verb", "kind"])
ROLLOUTS = Counter("modelrepo_rollouts_total", "Deployments applied because their folder changed.", ["namespace", "name"])


def forget(namespace: str, name: str) -> None:
    """Drop the series of a deleted ModelRepo."""
    for metric in (SYNC_SECONDS, FETCH_SECONDS, LAST_SYNC, LS_REMOTE, ROLLOUTS):
        with contextlib.suppress(KeyError):
            metric.remove(namespace, name)


def serve(port: int, addr: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY) -> None:
    """Serve /metrics on a background thread."""
    start_http_server(port, addr=addr, registry=registry)
