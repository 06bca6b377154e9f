"""Wake-ups for the per-ModelRepo sync loops: webhooks and watches ask, the loop does the work.

Thread-safe and non-blocking: `request_sync` may be called from the event loop, a webhook
handler or any thread; it only sets a flag that the ModelRepo's daemon picks up at once.
Requests coalesce: ten pushes while a sync runs make one more sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field

SYNC = "sync"  # resolve the head, fetch if new, apply
STATUS = "status"  # only recompute the status from the children (a Deployment or Pod changed)


@dataclass
class Waker:
    """The inbox of one ModelRepo's loop."""

    loop: asyncio.AbstractEventLoop
    url: str = ""
    branch: str | None = None
    secret_name: str | None = None
    event: asyncio.Event = field(default_factory=asyncio.Event)
    kinds: set[str] = field(default_factory=set)

    def _set(self, kind: str) -> None:
        self.kinds.add(kind)
        self.event.set()

    def request(self, kind: str) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self._set(kind)
        else:
            self.loop.call_soon_threadsafe(self._set, kind)

    def take(self) -> set[str]:
        kinds, self.kinds = self.kinds, set()
        self.event.clear()
        return kinds

    async def wait(self, timeout: float) -> set[str]:
        """Wait up to `timeout` seconds for a request; return what was asked (empty on timeout)."""
        if not self.kinds:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.event.wait(), timeout=max(timeout, 0))
        return self.take()


_wakers: dict[tuple[str, str], Waker] = {}
_lock = threading.Lock()


def register(namespace: str, name: str, loop: asyncio.AbstractEventLoop) -> Waker:
    with _lock:
        waker = _wakers.get((namespace, name))
        if waker is None or waker.loop is not loop:
            waker = _wakers[(namespace, name)] = Waker(loop)
        return waker


def unregister(namespace: str, name: str, waker: Waker) -> None:
    with _lock:
        if _wakers.get((namespace, name)) is waker:
            del _wakers[(namespace, name)]


def request_sync(namespace: str, name: str) -> bool:
    """Sync ModelRepo namespace/name now (webhooks call this); False if it is not being watched."""
    return _request(namespace, name, SYNC)


def request_status(namespace: str, name: str) -> bool:
    """Recompute the status of namespace/name soon (a child changed); no git work."""
    return _request(namespace, name, STATUS)


def _request(namespace: str, name: str, what: str) -> bool:
    with _lock:
        waker = _wakers.get((namespace, name))
    if waker is None:
        return False
    waker.request(what)
    return True


def watched() -> list[tuple[str, str, Waker]]:
    """Every ModelRepo with a running loop, with the url/branch/secret it last synced."""
    with _lock:
        return [(ns, n, w) for (ns, n), w in _wakers.items()]
