"""The gateway's connection pool against a real asyncio server on loopback (runtime/gateway/upstream.py)."""

from __future__ import annotations

import asyncio

import pytest

from modelrepo.runtime.gateway.upstream import Pool, UpstreamError


async def serve(answers_per_connection: int, body: bytes = b"ok") -> tuple[asyncio.Server, list[bytes]]:
    """A server answering `answers_per_connection` requests per connection, then dropping the next one
    unanswered (as a keep-alive timeout races a new request)."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(answers_per_connection):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
            seen.append(head + await reader.readexactly(length))
            writer.write(b"HTTP/1.1 200 OK\r\nX-Modelrepo-Version: 3\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


def test_connections_are_reused_and_a_stale_one_is_retried_on_a_new_connection():
    async def main() -> None:
        server, seen = await serve(answers_per_connection=2)
        port = server.sockets[0].getsockname()[1]
        pool = Pool(timeout=10)
        answers = [await pool.post(f"http://127.0.0.1:{port}/v1/M/latest", b"a=1", b'{"data": %d}' % i, b"application/json")
                   for i in range(3)]
        assert [(a.status, a.body) for a in answers] == [(200, b"ok")] * 3
        assert (b"x-modelrepo-version", b"3") in answers[0].headers
        # two answers on the first connection; the third request found it closed and went again on a new one
        assert seen[0].startswith(b"POST /v1/M/latest?a=1 HTTP/1.1\r\n") and seen[2].endswith(b'{"data": 2}')
        assert len(seen) == 3
        pool.close()
        server.close()

    asyncio.run(main())


def test_nothing_listening_is_an_upstream_error_naming_the_address():
    async def main() -> None:
        server, _ = await serve(1)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(UpstreamError, match=f"cannot connect to 127.0.0.1:{port} \\(ConnectionRefusedError\\)"):
            await Pool(timeout=10).post(f"http://127.0.0.1:{port}/v1/M/latest", b"", b"{}", b"application/json")

    asyncio.run(main())
