"""The loop inbox (triggers) and the poll loop's decisions, without a cluster.

`request_sync` is what webhooks and spec changes call; `next_step` and `poll_interval` are
what `handlers.repo_loop` does with a wake-up. The last test runs the kopf daemon itself for
one turn with an in-memory API to show a bad `spec.interval` is reported, not swallowed.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from modelrepo.operator import handlers, kube, triggers
from modelrepo.operator.sync import SyncResult
from modelrepo.operator.triggers import STATUS, SYNC, next_step, poll_interval


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_requests_coalesce_into_one_wake_up(loop):
    waker = triggers.register("ml", "models", loop)
    try:

        async def burst() -> None:
            for _ in range(10):
                assert triggers.request_sync("ml", "models") is True
            assert triggers.request_status("ml", "models") is True

        loop.run_until_complete(burst())
        assert loop.run_until_complete(waker.wait(10)) == {SYNC, STATUS}
        assert loop.run_until_complete(waker.wait(0)) == set()  # ten pushes, one sync
    finally:
        triggers.unregister("ml", "models", waker)


def test_a_request_from_another_thread_wakes_a_waiting_loop(loop):
    waker = triggers.register("ml", "models", loop)
    try:

        async def wait_then_request_from_a_thread() -> set[str]:
            waiting = asyncio.ensure_future(waker.wait(30))  # the deadline: 30 s
            await asyncio.sleep(0)  # the loop is now waiting on its event
            answers: list[bool] = []
            thread = threading.Thread(target=lambda: answers.append(triggers.request_sync("ml", "models")))
            thread.start()
            kinds = await waiting
            thread.join()
            assert answers == [True]
            return kinds

        assert loop.run_until_complete(wait_then_request_from_a_thread()) == {SYNC}
    finally:
        triggers.unregister("ml", "models", waker)


def test_unregister_stops_requests_and_spares_a_newer_loop(loop):
    old = triggers.register("ml", "models", loop)
    assert triggers.register("ml", "models", loop) is old  # the same loop keeps its inbox
    other = asyncio.new_event_loop()
    try:
        new = triggers.register("ml", "models", other)  # the daemon restarted on another loop
        triggers.unregister("ml", "models", old)  # the old daemon's cleanup comes late
        assert triggers.request_sync("ml", "models") is True
        assert other.run_until_complete(new.wait(10)) == {SYNC}
        triggers.unregister("ml", "models", new)
        assert triggers.request_sync("ml", "models") is False
        assert triggers.request_status("ml", "models") is False
    finally:
        other.close()


@pytest.mark.parametrize(
    ("wants", "now", "due", "suspended", "step"),
    [
        (set(), 10.0, 10.0, False, "sync"),  # the poll is due
        (set(), 9.0, 10.0, False, "wait"),  # woken early with nothing asked
        ({SYNC}, 0.0, 10.0, False, "sync"),  # a webhook or spec change
        ({SYNC, STATUS}, 0.0, 10.0, False, "sync"),  # a sync also refreshes the status
        ({STATUS}, 0.0, 10.0, False, "status"),  # a child changed: no git work
        ({SYNC}, 0.0, 10.0, True, "suspended"),
        (set(), 10.0, 10.0, True, "suspended"),
        ({STATUS}, 0.0, 10.0, True, "status"),  # a suspended ModelRepo still reports its children
    ],
)
def test_next_step(wants, now, due, suspended, step):
    assert next_step(wants, now, due, suspended) == step


def test_poll_interval_takes_the_grammar_and_reports_what_it_cannot_use():
    assert poll_interval("1m30s") == (90, None)
    assert poll_interval("90") == (90, None)
    assert poll_interval(None) == (60, None)  # the CRD's default
    seconds, problem = poll_interval("soon")
    assert seconds == 60 and "'soon'" in problem and "polling every 60s" in problem
    seconds, problem = poll_interval("0s")  # under an older CRD: must not spin
    assert seconds == 60 and "'0s'" in problem and "5s..24h" in problem
    assert poll_interval("25h")[0] == 60


def test_the_daemon_reports_a_bad_interval_with_a_warning_event_and_a_log_line(monkeypatch, caplog):
    body = {
        "metadata": {"namespace": "ml", "name": "models", "generation": 1},
        "spec": {"url": "https://h/x.git", "branch": "main", "interval": "every minute"},
    }
    events: list[tuple[str, str, str]] = []
    syncs: list[str] = []

    class Stopped:  # stands for kopf.DaemonStopped: stop after one sync
        def __bool__(self) -> bool:
            return bool(syncs)

    def fake_sync(body, state, cache_root):
        syncs.append(body["metadata"]["name"])
        return SyncResult(commit="0" * 40)

    monkeypatch.setattr(kube, "get_modelrepo", lambda ns, name: body)
    monkeypatch.setattr(kube, "post_event", lambda b, t, reason, msg: events.append((t, reason, msg)))
    monkeypatch.setattr(handlers, "sync", fake_sync)
    asyncio.run(handlers.repo_loop(namespace="ml", name="models", stopped=Stopped()))
    assert syncs == ["models"]  # the loop goes on at the default
    ((type_, reason, message),) = events
    assert (type_, reason) == ("Warning", "InvalidInterval")
    assert "'every minute'" in message and "polling every 60s" in message
    assert "'every minute'" in caplog.text
    assert triggers.request_sync("ml", "models") is False  # the inbox went with the loop
