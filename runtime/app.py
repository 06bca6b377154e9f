"""The ASGI app that answers `/v1/<Name>[/<branch>]/<version>` and `/readyz` (docs/runtime.md).

It is deliberately plain ASGI: a model call goes through one route match, one body read,
one JSON parse, a worker thread and one JSON dump. BentoML's per-request machinery
(IO descriptors, pydantic validation, tracing middleware) would cost several times the
model's own time for a fast model; bento_service.py puts this app in front of BentoML's, which
still answers /livez, /metrics and the OpenAPI docs.

Which versions exist and are loaded is the job of a `Catalog` (catalogs/folder.py for one folder,
catalogs/repository.py for the branches of a repository).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any, Protocol

from prometheus_client import Counter, Histogram

from modelrepo.runtime.failures import Unavailable
from modelrepo.runtime.gateway.keys import KeyRing, authorization
from modelrepo.runtime.gateway.routing import Hop, RouteError
from modelrepo.runtime.protocol import (
    BadRequest,
    batch_flag,
    error_body,
    parse_request,
    parse_route,
)
from modelrepo.runtime.served import ResultNotJSON, Served

log = logging.getLogger("modelrepo.runtime")

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

REQUESTS = Counter(
    "modelrepo_requests_total", "Model requests answered", ["deployment", "version", "status"]
)
LATENCY = Histogram(
    "modelrepo_request_duration_seconds", "Time to answer a model request", ["deployment"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
MIRRORED = Counter("modelrepo_mirrored_total", "Mirror copies of endpoint calls by outcome", ["outcome"])


class NotFound(Exception):
    """Unknown deployment or version (404)."""


class NotReady(Exception):
    """Known, but not loaded or refused (503); the message says why."""


class Catalog(Protocol):
    """What the app asks about deployments."""

    headers: list[tuple[bytes, bytes]]  # for answers not about one version

    async def resolve(self, name: str, ref: str, branch: str | None = None) -> Served:
        """The served version `ref` of `name` (on `branch`, when the route names one); raise
        NotFound (unknown name, branch or version) or NotReady."""
        ...

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, details for the /readyz body)."""
        ...


class RuntimeApp:
    """ASGI callable for the model routes and /readyz.

    With `keys`, every `/v1/` route needs an API key (runtime/gateway/keys.py). When the catalog
    has `routes` (serve: endpoints and aliases), a route they name is decided by the gateway's
    rules; mirror copies are answered in background tasks after the caller's answer is sent
    (at most `max_mirrors_in_flight`, beyond that dropped) and their answers discarded."""

    def __init__(
        self, catalog: Catalog, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, keys: KeyRing | None = None,
        max_mirrors_in_flight: int = 64,
    ) -> None:
        self.catalog = catalog
        self.max_body_bytes = max_body_bytes
        self.keys = keys
        self.routes = getattr(catalog, "routes", None)
        self.mirror_slots = max_mirrors_in_flight
        self._mirrors: set[asyncio.Task[None]] = set()
        self._metrics: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[str, Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        if path == "/readyz":
            return await self.readyz(send)
        route = parse_route(path)
        if route is None:
            return await _send(send, 404, error_body(
                f"no route {path}; models answer at POST /v1/<Name>/<version> or /v1/<Name>/<branch>/<version>"
            ), self.catalog.headers)
        name, branch, ref = route
        if self.keys is not None:
            problem = self.keys.check(authorization(scope["headers"]), name)
            if problem:
                return await _send(send, 401, error_body(problem), [*self.catalog.headers, (b"www-authenticate", b"Bearer")])
        if scope["method"] != "POST":
            return await _send(send, 405, error_body(
                f"{scope['method']} {path}: use POST with a JSON body"
            ), [*self.catalog.headers, (b"allow", b"POST")])
        started = time.perf_counter()
        headers = self.catalog.headers
        decision = None
        body = b""
        # Metric labels only for what exists: unknown names must not grow the label set.
        known, version = "-", "-"
        try:
            if self.routes is not None:
                decision = self.routes.decide(name, branch, ref, random.random())
            if decision is None:
                served = await self.catalog.resolve(name, ref, branch)
                headers = served.headers
            else:
                hop = decision.primary
                served = await self.catalog.resolve(hop.name, hop.ref, hop.branch)
                headers = served.headers
                if hop.backend:
                    headers = [*headers, (b"x-modelrepo-backend", hop.backend.encode())]
            known, version = served.name, str(served.number)
            body = await read_body(scope, receive, self.max_body_bytes)
            call = parse_request(
                body, served.arg_names, batch_flag(scope["query_string"]), served.dataframe_columns
            )
            status, payload = await served.answer(call)
        except BadRequest as exc:
            status, payload = 400, error_body(str(exc))
        except (NotFound, RouteError) as exc:
            status, payload = 404, error_body(str(exc))
        except BodyTooLarge as exc:
            status, payload = 413, error_body(str(exc))
        except (NotReady, Unavailable) as exc:
            status, payload = 503, error_body(str(exc))
        except ResultNotJSON as exc:
            status, payload = 500, error_body(f"TypeError: {exc}")
        except Exception as exc:  # a bug of ours: answer, log the traceback, keep serving
            log.exception("internal error answering %s", path)
            status, payload = 500, error_body(f"internal error: {type(exc).__name__}")
        await _send(send, status, payload, headers)
        self._observe(known, version, status, time.perf_counter() - started)
        if decision is not None and decision.mirrors and body:
            self._mirror(decision.mirrors, body, scope["query_string"])

    def _mirror(self, hops: tuple[Hop, ...], body: bytes, query: bytes) -> None:
        for hop in hops:
            if len(self._mirrors) >= self.mirror_slots:
                MIRRORED.labels("dropped").inc()
                continue
            task = asyncio.get_running_loop().create_task(self._copy(hop, body, query))
            self._mirrors.add(task)
            task.add_done_callback(self._mirrors.discard)

    async def _copy(self, hop: Hop, body: bytes, query: bytes) -> None:
        """One mirror copy: answered like a call, the answer discarded, failures only counted."""
        try:
            served = await self.catalog.resolve(hop.name, hop.ref, hop.branch)
            call = parse_request(body, served.arg_names, batch_flag(query), served.dataframe_columns)
            status, _ = await served.answer(call)
            MIRRORED.labels("answered" if status < 500 else "failed").inc()
        except Exception as exc:  # a mirror never fails anyone: count it, say which kind
            MIRRORED.labels("failed").inc()
            log.info("mirror copy to %s on %s failed: %s", hop.name, hop.branch, type(exc).__name__)


    async def readyz(self, send: Any) -> None:
        ready, details = self.catalog.readiness()
        document = {"ready": ready, **details}
        if not ready and "error" not in document:
            document["error"] = "not ready"
        await _send(send, 200 if ready else 503, json.dumps(document).encode(), self.catalog.headers)

    def _observe(self, name: str, version: str, status: int, seconds: float) -> None:
        key = (name, version, status)
        counter = self._metrics.get(key)
        if counter is None:
            counter = self._metrics[key] = REQUESTS.labels(name, version, str(status))
        counter.inc()
        latency = self._latency.get(name)
        if latency is None:
            latency = self._latency[name] = LATENCY.labels(name)
        latency.observe(seconds)


class BodyTooLarge(Exception):
    """413."""


async def _send(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
    })
    await send({"type": "http.response.body", "body": body})


async def read_body(scope: dict[str, Any], receive: Any, limit: int) -> bytes:
    """The request body; BadRequest for a bad Content-Length, BodyTooLarge over `limit` bytes."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise BadRequest("Content-Length is not a number") from None
            if declared > limit:
                raise BodyTooLarge(f"request body of {declared} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
