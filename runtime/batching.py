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
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from modelrepo.runtime.protocol import describe_exception

log = logging.getLogger("modelrepo.runtime")

Outcome = tuple[bool, Any]  # (True, result) or (False, "<ExceptionType>: message")


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
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Outcome]]] = []
        self._draining = False

    async def submit(self, calls: Sequence[tuple[Any, ...]]) -> list[Outcome]:
        """Outcomes of `calls` (argument tuples), in order."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in calls]
        self._queue.extend(zip(calls, futures, strict=True))
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return list(await asyncio.gather(*futures))

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch = self._queue[: self.max_batch_size]
                del self._queue[: self.max_batch_size]
                batch = [(args, fut) for args, fut in batch if not fut.done()]  # timed-out callers
                if not batch:
                    continue
                outcomes = await loop.run_in_executor(
                    self.executor, self.call_batch, [args for args, _ in batch]
                )
                for (_, fut), outcome in zip(batch, outcomes, strict=True):
                    if not fut.done():
                        fut.set_result(outcome)
        finally:
            self._draining = False

    def call_batch(self, calls: list[tuple[Any, ...]]) -> list[Outcome]:
        """One call of the function for `calls`; on failure, each row alone (runs in a thread)."""
        try:
            results = self._call(calls)
        except Exception as exc:
            if len(calls) == 1:
                log.error("%s raised on a batch of 1", self.label, exc_info=exc)
                return [(False, describe_exception(exc))]
            return [outcome for args in calls for outcome in self.call_batch([args])]
        return [(True, r) for r in results]

    def _call(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        if self.arity == 1:
            results = self.function([args[0] for args in calls])
        else:
            columns = [list(col) for col in zip(*calls, strict=True)] if calls else [[] for _ in range(self.arity)]
            results = self.function(*columns)
        results = results.tolist() if hasattr(results, "tolist") and not isinstance(results, list) else results
        if not isinstance(results, (list, tuple)) or len(results) != len(calls):
            got = len(results) if hasattr(results, "__len__") else type(results).__name__
            raise ValueError(f"a batch function must return a list of {len(calls)} results, got {got}")
        return list(results)
