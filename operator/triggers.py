"""When the per-ModelRepo sync loops act: webhooks and watches ask, the loop does the work.

Thread-safe and non-blocking: `request_sync` may be called from the event loop, a webhook
handler or any thread; it only sets a flag that the ModelRepo's daemon picks up at once.
Requests coalesce: ten pushes while a sync runs make one more sync. The loop's decisions
(`next_step`, `poll_interval`) are plain functions of its inputs, so they are tested alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Set
from dataclasses import dataclass, field
from typing import Literal

from modelrepo.duration import parse_duration

SYNC = "sync"  # resolve the head, fetch if new, apply
STATUS = "status"  # only recompute the status from the children (a Deployment or Pod changed)


@dataclass
class Waker:
    """The inbox of one ModelRepo's loop."""

    loop: asyncio.AbstractEventLoop
    kinds: set[str] = field(default_factory=set)
    # Made on `loop` when first used: Python 3.9 binds an Event to the loop current at creation.
    event: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self.event is None:
            self.event = asyncio.Event()
        return self.event

    def _set(self, kind: str) -> None:
        self.kinds.add(kind)
        self._event().set()

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
        self._event().clear()
        return kinds

    async def wait(self, timeout: float) -> set[str]:
        """Wait up to `timeout` seconds for a request; return what was asked (empty on timeout)."""
        if not self.kinds:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._event().wait(), timeout=max(timeout, 0))
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


# ---------------------------------------------------------------- the loop's decisions

DEFAULT_INTERVAL = 60.0  # the CRD's default for spec.interval
MIN_INTERVAL, MAX_INTERVAL = 5.0, 24 * 3600.0  # the CRD's bounds (crds/modelrepo.yaml)

Step = Literal["sync", "suspended", "status", "wait"]


def next_step(wants: Set[str], now: float, due: float, suspended: bool) -> Step:
    """What the loop does once woken: `wants` are the requests taken, `due` the next poll time.

    A sync request or a due poll syncs, unless the ModelRepo is suspended ("suspended": no git
    work, just wait another interval); a child's change alone only refreshes the status.
    """
    if SYNC in wants or now >= due:
        return "suspended" if suspended else "sync"
    if STATUS in wants:
        return "status"
    return "wait"


def poll_interval(value: object) -> tuple[float, str | None]:
    """Seconds between polls for `spec.interval`, and a problem to report (None when fine).

    The CRD rejects bad values, but a ModelRepo stored under an older CRD may still hold one:
    the loop must go on (at the default) and say so, never silently poll at some other rate.
    """
    if value is None or value == "":
        return DEFAULT_INTERVAL, None
    try:
        seconds = parse_duration(str(value))
    except ValueError as exc:
        return DEFAULT_INTERVAL, f"spec.interval: {exc}; polling every {DEFAULT_INTERVAL:g}s instead"
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        return DEFAULT_INTERVAL, (
            f"spec.interval: {value!r} is outside 5s..24h; polling every {DEFAULT_INTERVAL:g}s instead"
        )
    return seconds, None
