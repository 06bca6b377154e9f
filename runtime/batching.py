"""Adaptive batching for functions that take a list of inputs (metadata `runtimeInfo.batch`).

Rows of concurrent requests are queued; one drain task hands the function as many queued
rows as it has (up to `maxBatchSize`) in one call, in a worker thread. While that call runs,
new rows queue up, so the batch size follows the load: 1 when idle (no added latency),
large under load. The drain never waits to fill a batch, so no request waits longer than
`maxLatencyMs` for batching reasons (it waits 0). A batch of 1,000 rows in one request is
one call of the function.

Calling convention: a function of one argument gets the list of that argument's values; a
function of several gets one list per argument (`f(xs, ys)`). It must return a list of the
same length. If a call raises, its rows are retried one by one so that only the failing
rows fail.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from itertools import repeat
from typing import Any

from modelrepo.runtime.failures import FunctionFailed, Unavailable
from modelrepo.runtime.protocol import describe_exception

log = logging.getLogger("modelrepo.runtime")

Outcome = tuple[bool, Any]  # (True, result) or (False, "<ExceptionType>: message")


class _Part:
    """The rows of one request, filled in as batches containing them finish."""

    __slots__ = ("calls", "future", "taken", "outcomes")

    def __init__(self, calls: Sequence[tuple[Any, ...]], future: asyncio.Future[list[Outcome]]) -> None:
        self.calls = calls
        self.future = future
        self.taken = 0
        self.outcomes: list[Outcome] = []


class BatchDispatcher:
    """Queues rows from many requests and calls a list-taking function with them."""

    def __init__(
        self, function: Callable[..., Any], arity: int, max_batch_size: int, executor: Executor, label: str
    ) -> None:
        self.function = function
        self.arity = arity
        self.max_batch_size = max(1, max_batch_size)
        self.executor = executor
        self.label = label
        self._queue: deque[_Part] = deque()
        self._draining = False

    async def submit(self, calls: Sequence[tuple[Any, ...]]) -> list[Outcome]:
        """Outcomes of `calls` (argument tuples), in order."""
        loop = asyncio.get_running_loop()
        part = _Part(calls, loop.create_future())
        self._queue.append(part)
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return await part.future

    def _next_batch(self) -> list[tuple[_Part, int, int]]:
        """Up to max_batch_size queued rows, as (part, start, end) slices, oldest first."""
        batch: list[tuple[_Part, int, int]] = []
        room = self.max_batch_size
        while self._queue and room:
            part = self._queue[0]
            if part.future.done():  # the caller timed out: skip its rows
                self._queue.popleft()
                continue
            take = min(room, len(part.calls) - part.taken)
            batch.append((part, part.taken, part.taken + take))
            part.taken += take
            room -= take
            if part.taken == len(part.calls):
                self._queue.popleft()
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while batch := self._next_batch():
                calls = [c for part, start, end in batch for c in part.calls[start:end]]
                try:
                    outcomes = await loop.run_in_executor(self.executor, self.call_batch, calls)
                except Exception as exc:  # the worker crashed: every request of the batch hears why
                    for part, _, _ in batch:
                        if not part.future.done():
                            part.future.set_exception(exc)
                    continue
                offset = 0
                for part, start, end in batch:
                    part.outcomes.extend(outcomes[offset:offset + end - start])
                    offset += end - start
                    if len(part.outcomes) == len(part.calls) and not part.future.done():
                        part.future.set_result(part.outcomes)
        finally:
            self._draining = False

    def call_batch(self, calls: list[tuple[Any, ...]]) -> list[Outcome]:
        """One call of the function for `calls`; on failure, each row alone (runs in a thread)."""
        try:
            results = self._call(calls)
        except Unavailable:  # the worker process is gone: no row can answer
            raise
        except (Exception, SystemExit) as exc:
            if len(calls) == 1:
                log.error("%s raised on a batch of 1", self.label, exc_info=exc)
                described = str(exc) if isinstance(exc, FunctionFailed) else describe_exception(exc)
                return [(False, described)]
            return [outcome for args in calls for outcome in self.call_batch([args])]
        return list(zip(repeat(True), results))

    def _call(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        if self.arity == 1:
            results = self.function([args[0] for args in calls])
        else:
            columns = [list(col) for col in zip(*calls)] if calls else [[] for _ in range(self.arity)]
            results = self.function(*columns)
        results = results.tolist() if hasattr(results, "tolist") and not isinstance(results, list) else results
        if not isinstance(results, (list, tuple)) or len(results) != len(calls):
            got = len(results) if hasattr(results, "__len__") else type(results).__name__
            raise ValueError(f"a batch function must return a list of {len(calls)} results, got {got}")
        return list(results)
