"""The gateway's HTTP/1.1 client: a keep-alive connection pool over asyncio protocols.

Why not aiohttp or httpx: for a fast model the gateway's own CPU per request is what limits
throughput on the machine, and a general client's per-request objects (request, response,
multidict headers, payload writers, timers) cost about as much as the rest of the gateway
(docs/benchmarks.md, "Gateway overhead"). Forwarding needs far less: one request head built
as bytes, the body written as it came, the answer parsed by httptools (the C parser uvicorn
uses) into status, headers and body bytes. Nothing is decoded or re-encoded.

A request reuses an idle connection to the same host and port when there is one, else opens
one. A reused connection that the upstream closed while idle (a keep-alive race: nothing of
the answer arrived) is retried once on a new connection; any other failure is the caller's
answer (UpstreamError, TimeoutError).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import httptools

MAX_IDLE_PER_ORIGIN = 256


class UpstreamError(Exception):
    """The upstream could not be reached or broke the exchange; the message names how."""


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]  # names lower-cased, as received
    body: bytes


@lru_cache(maxsize=4096)
def split_url(url: str) -> tuple[str, int, bytes, bytes]:
    """(host, port, path, Host header) of an http:// URL; parsed once per URL (routes repeat)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise UpstreamError(f"{url}: only http://host[:port] upstreams are supported")
    port = parts.port or 80
    return parts.hostname, port, (parts.path or "/").encode("latin-1"), parts.netloc.encode("latin-1")


class _Stale(Exception):
    """A reused connection closed before any byte of the answer: safe to retry once."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._started = False
        self._keep_alive = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"malformed HTTP answer ({exc.__class__.__name__})"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if not self._started:
            self._fail(_Stale() if self.reused else UpstreamError("connection closed before an answer"))
        elif self._status and not self._keep_alive:
            self._finish()  # an answer delimited by the end of the connection
        else:
            self._fail(UpstreamError("connection closed in the middle of the answer"))

    # httptools callbacks (the parser forgets the status and keep-alive once the message is complete)
    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._finish()

    # the exchange
    def exchange(self, data: bytes) -> asyncio.Future[Answer]:
        self._waiter = asyncio.get_running_loop().create_future()
        self._headers, self._body, self._started, self._status, self._keep_alive = [], [], False, 0, False
        assert self.transport is not None
        self.transport.write(data)
        return self._waiter

    def keep_alive(self) -> bool:
        return not self.closed and self._keep_alive

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _finish(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            self._waiter.set_result(Answer(self._status, self._headers, body))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)


class Pool:
    """Keep-alive connections per (host, port), shared by every request of one event loop."""

    def __init__(self, timeout: float, connect_timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def post(self, url: str, query: bytes, body: bytes, content_type: bytes) -> Answer:
        """POST `body` to `url` (plus `?query`); the answer, or UpstreamError / TimeoutError."""
        host, port, path, netloc = split_url(url)
        target = path + b"?" + query if query else path
        data = b"".join((b"POST ", target, b" HTTP/1.1\r\nHost: ", netloc, b"\r\nContent-Type: ", content_type,
                         b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n\r\n", body))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        for _ in range(2):
            connection = self._take((host, port)) or await self._open(host, port, deadline)
            try:
                answer = await asyncio.wait_for(connection.exchange(data), max(deadline - loop.time(), 0))
            except _Stale:
                continue
            except BaseException:
                connection.close()  # timed out or cancelled mid-exchange: never reused
                raise
            self._give((host, port), connection)
            return answer
        raise UpstreamError("connection closed before an answer")

    def _take(self, origin: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if not connection.closed:
                connection.reused = True
                return connection
        return None

    def _give(self, origin: tuple[str, int], connection: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if connection.keep_alive() and len(idle) < MAX_IDLE_PER_ORIGIN:
            idle.append(connection)
        else:
            connection.close()

    async def _open(self, host: str, port: int, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        wait = max(min(deadline - loop.time(), self.connect_timeout), 0)
        try:
            _, connection = await asyncio.wait_for(loop.create_connection(_Connection, host, port), wait)
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {host}:{port} ({type(exc).__name__})") from None
        return connection

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
