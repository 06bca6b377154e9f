"""The gateway's ASGI app: check the key, decide the route, forward, copy to mirrors.

Forwarding uses one keep-alive connection pool (upstream.py); bodies pass through as bytes.
The caller gets the primary's status, body and X-Modelrepo-* headers unchanged, plus
`X-Modelrepo-Backend` when an endpoint chose the backend. Mirror copies are sent after the
primary's answer is on its way, in background tasks bounded by `max_mirrors_in_flight`
(beyond it copies are dropped, never queued); their answers and failures are discarded and
only counted, so a mirror can never slow or fail the caller.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from modelrepo.runtime.app import BodyTooLarge, read_body
from modelrepo.runtime.gateway.keys import KeyRing, authorization
from modelrepo.runtime.gateway.routing import Decision, Hop, RouteError, Table, decide
from modelrepo.runtime.gateway.upstream import Pool, UpstreamError
from modelrepo.runtime.protocol import BadRequest, error_body, parse_route

log = logging.getLogger("modelrepo.gateway")

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
PASSED_HEADERS = (b"x-modelrepo-commit", b"x-modelrepo-version")

REQUESTS = Counter("modelrepo_gateway_requests_total", "Requests answered by the gateway", ["status"])
MIRRORED = Counter("modelrepo_gateway_mirrored_total", "Mirror copies by outcome", ["outcome"])


class GatewayApp:
    """ASGI callable; `table()` and `keys()` give the current routing table and key ring.

    Both are callables so that a reload (config.Watcher) takes effect on the next request.
    `keys()` returning None means no API keys are configured (no check)."""

    def __init__(
        self, table: Callable[[], Table | None], keys: Callable[[], KeyRing | None] = lambda: None, *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, timeout: float = 600.0, max_mirrors_in_flight: int = 64,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.table = table
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.timeout = timeout
        self.draw = draw
        self.mirror_slots = max_mirrors_in_flight
        self._pool: Pool | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_startup: list[Callable[[], Any]] = []

    def pool(self) -> Pool:
        if self._pool is None:
            self._pool = Pool(self.timeout)
        return self._pool

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path in ("/livez", "/healthz"):
            await _send(send, 200, b'{"live": true}')
        elif path == "/readyz":
            ready = self.table() is not None
            await _send(send, 200 if ready else 503, json.dumps(
                {"ready": ready} if ready else {"ready": False, "error": "no routing table loaded yet"}).encode())
        elif path == "/metrics":
            await _send(send, 200, generate_latest(), content_type=CONTENT_TYPE_LATEST.encode())
        else:
            status = await self._model_call(scope, receive, send, path)
            REQUESTS.labels(str(status)).inc()

    async def _model_call(self, scope: dict[str, Any], receive: Any, send: Any, path: str) -> int:
        route = parse_route(path)
        if route is None:
            return await _send(send, 404, error_body(
                f"no route {path}; models answer at POST /v1/<Name>/<version> or /v1/<Name>/<branch>/<version>"))
        name, branch, ref = route
        keys = self.keys()
        if keys is not None:
            problem = keys.check(authorization(scope["headers"]), name)
            if problem:
                return await _send(send, 401, error_body(problem), [(b"www-authenticate", b"Bearer")])
        if scope["method"] != "POST":
            return await _send(send, 405, error_body(f"{scope['method']} {path}: use POST with a JSON body"),
                               [(b"allow", b"POST")])
        table = self.table()
        if table is None:
            return await _send(send, 503, error_body("the gateway has no routing table yet"))
        try:
            decision = decide(table, name, branch, ref, self.draw())
        except RouteError as exc:
            return await _send(send, exc.status, error_body(str(exc)))
        try:
            body = await read_body(scope, receive, self.max_body_bytes)
        except BodyTooLarge as exc:
            return await _send(send, 413, error_body(str(exc)))
        except BadRequest as exc:
            return await _send(send, 400, error_body(str(exc)))
        query = scope.get("query_string") or b""
        status = await self._forward(decision.primary, body, query, scope["headers"], send)
        self._mirror(decision, body, query, scope["headers"])
        return status

    async def _forward(self, hop: Hop, body: bytes, query: bytes, headers: list[tuple[bytes, bytes]], send: Any) -> int:
        extra = [(b"x-modelrepo-backend", hop.backend.encode())] if hop.backend else []
        try:
            answer = await self.pool().post(hop.url, query, body, _content_type(headers))
        except asyncio.TimeoutError:
            return await _send(send, 504, error_body(f"{hop.name} on {hop.branch} did not answer in {self.timeout:g}s"), extra)
        except UpstreamError as exc:
            log.warning("upstream of %s on %s failed: %s", hop.name, hop.branch, exc)
            return await _send(send, 503, error_body(f"{hop.name} on {hop.branch} is not reachable: {exc}"), extra)
        content_type = b"application/json"
        passed = []
        for key, value in answer.headers:
            if key in PASSED_HEADERS:
                passed.append((key, value))
            elif key == b"content-type":
                content_type = value
        return await _send(send, answer.status, answer.body, passed + extra, content_type=content_type)

    def _mirror(self, decision: Decision, body: bytes, query: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        for hop in decision.mirrors:
            if len(self._tasks) >= self.mirror_slots:
                MIRRORED.labels("dropped").inc()
                continue
            task = asyncio.get_running_loop().create_task(self._copy(hop, body, query, _content_type(headers)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _copy(self, hop: Hop, body: bytes, query: bytes, content_type: bytes) -> None:
        try:
            answer = await self.pool().post(hop.url, query, body, content_type)
            MIRRORED.labels("answered" if answer.status < 500 else "failed").inc()
        except (UpstreamError, asyncio.TimeoutError):
            MIRRORED.labels("failed").inc()

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for hook in self.on_startup:
                    hook()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in list(self._tasks):
                    task.cancel()
                if self._pool is not None:
                    self._pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _content_type(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Only the content type goes on: never the caller's Authorization (keys stay at the gateway)."""
    for key, value in headers:
        if key == b"content-type":
            return value
    return b"application/json"


async def _send(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = b"application/json",
) -> int:
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})
    return status
