"""One loaded version of one deployment, ready to answer calls.

A `Served` wraps the function of a `LoadedDeployment` with what every request needs: the
two answer headers, the per-request timeout, a worker thread per call (so a slow model
never blocks the event loop and a timeout can answer 504) and, for batch functions, the
adaptive batching dispatcher. `answer()` turns a parsed request into (status, body).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from modelrepo.format import LoadedDeployment
from modelrepo.runtime import jsonify
from modelrepo.runtime.batching import BatchDispatcher, Outcome
from modelrepo.runtime.failures import FunctionFailed, Unavailable
from modelrepo.runtime.protocol import Call, describe_exception, error_body, frame_results

log = logging.getLogger("modelrepo.runtime")

DEFAULT_TIMEOUT_SECONDS = 60.0
# Worker threads per deployment version. One by default: for the usual CPU-bound model, threads
# of one model only contend for the GIL (measured: a pool of 6 answered ~30% fewer requests
# per second than one thread). Models that release the GIL may want more.
THREADS = int(os.environ.get("MODELREPO_THREADS", "1"))


# Calling a fast function directly on the event loop saves the handoff to its thread and back
# (measured: ~40% more requests/s for a scikit-learn LinearRegression). A function earns it
# with INLINE_AFTER calls in a row under INLINE_MAX_SECONDS each; its first slower call sends
# it back to its thread and doubles the streak it needs next time. MODELREPO_INLINE=0 turns
# this off (then a slow call can never hold up the event loop, even once). Only a process that
# serves one deployment (`modelrepo runtime`, the pod) may inline: in `modelrepo serve` one
# model's unexpectedly slow call must never hold up the other models.
INLINE = os.environ.get("MODELREPO_INLINE", "1") != "0"
INLINE_AFTER = 200
INLINE_MAX_SECONDS = 0.002


def new_executor(name: str) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix=f"modelrepo-{name}")


@dataclass
class Served:
    """A deployment version that passed loading and its docstring tests."""

    name: str
    number: int | None
    commit: str
    loaded: LoadedDeployment
    default_timeout: float = DEFAULT_TIMEOUT_SECONDS
    may_inline: bool = False
    headers: list[tuple[bytes, bytes]] = field(init=False)

    def __post_init__(self) -> None:
        meta = self.loaded.metadata
        self.function = self.loaded.function
        self.arg_names = [n for n, _ in meta.args]
        self.arg_types = [t for _, t in meta.args]
        self.dataframe_columns = meta.dataframe_columns
        self.timeout = float(meta.timeout_seconds or self.default_timeout)
        self.is_async = inspect.iscoroutinefunction(self.function)
        self.headers = answer_headers(self.commit, self.number)
        self.label = f"{self.name} v{self.number if self.number is not None else '?'} ({self.commit[:7]})"
        self.executor = new_executor(self.name)
        self.inline = False
        self._fast_streak = 0
        self._inline_after = INLINE_AFTER
        self.dispatcher = (
            BatchDispatcher(self.function, len(self.arg_names), meta.max_batch_size, self.executor, self.label)
            if meta.batch and not self.is_async
            else None
        )

    async def answer(self, call: Call) -> tuple[int, bytes]:
        """Run the request; (status, JSON body) per docs/runtime.md."""
        timeout = self.timeout if call.timeout is None else min(call.timeout, self.timeout)
        try:
            if call.frame:
                return await asyncio.wait_for(self._answer_frame(call), timeout)
            if call.ids is None:
                if self.inline:  # proven fast: no thread handoff
                    started = time.perf_counter()
                    ok, value = self._call_one(call.calls[0])
                    if time.perf_counter() - started > timeout:
                        raise asyncio.TimeoutError
                elif self.dispatcher is None and not self.is_async:  # the hot path: no extra task
                    future = asyncio.get_running_loop().run_in_executor(
                        self.executor, self._call_one, call.calls[0]
                    )
                    ok, value = await asyncio.wait_for(future, timeout)
                else:
                    ok, value = (await asyncio.wait_for(self._outcomes(call.calls), timeout))[0]
                if not ok:
                    return 500, error_body(value)
                return 200, _dump({"data": value}, self.label)
            outcomes = await asyncio.wait_for(self._outcomes(call.calls), timeout)
            return 200, _batch_body(call.ids, outcomes, self.label)
        except asyncio.TimeoutError:
            log.warning("%s: a request did not finish within %gs", self.label, timeout)
            timed_out = getattr(self.function, "timed_out", None)
            if timed_out is not None:  # a worker process: killing it frees the stuck call
                timed_out(timeout)
            else:
                self._abandon_stuck_thread()
            source = "the request's timeout_seconds" if timeout < self.timeout else "deployment.timeoutSeconds"
            return 504, error_body(f"{self.name} did not answer within {timeout:g}s ({source})")

    async def _answer_frame(self, call: Call) -> tuple[int, bytes]:
        """DataFrame mode: one call with the whole frame, one answer per row (or the one value)."""
        if self.is_async:
            ok, value = await self._call_async(call.calls[0])
        else:
            loop = asyncio.get_running_loop()
            ok, value = await loop.run_in_executor(self.executor, self._call_one, call.calls[0])
        if not ok:
            return 500, error_body(value)
        rows = len(call.ids) if call.ids is not None else 1
        try:
            values = frame_results(value, rows)
        except ValueError as exc:
            log.error("%s: %s", self.label, exc)
            return 500, error_body(f"ValueError: {exc}")
        if call.ids is None:
            return 200, _dump({"data": values[0]}, self.label)
        return 200, _batch_body(call.ids, [(True, v) for v in values], self.label)

    def _abandon_stuck_thread(self) -> None:
        """The timed-out call cannot be stopped: leave it its thread, give new calls a fresh one."""
        stuck = self.executor
        self.executor = new_executor(self.name)
        if self.dispatcher is not None:
            self.dispatcher.executor = self.executor
        stuck.shutdown(wait=False)

    async def _outcomes(self, calls: list[tuple[Any, ...]]) -> list[Outcome]:
        if self.dispatcher is not None:
            return await self.dispatcher.submit(calls)
        if self.is_async:
            return [await self._call_async(args) for args in calls]
        loop = asyncio.get_running_loop()
        if len(calls) == 1:
            return [await loop.run_in_executor(self.executor, self._call_one, calls[0])]
        return await loop.run_in_executor(self.executor, self._call_rows, calls)

    def _call_one(self, args: tuple[Any, ...]) -> Outcome:
        started = time.perf_counter()
        try:
            outcome: Outcome = (True, self.function(*args))
        except Unavailable:
            raise
        except FunctionFailed as exc:  # raised in a worker process, which logged it
            outcome = (False, str(exc))
        except ResultNotJSON as exc:
            outcome = (False, f"TypeError: {exc}")
        except (Exception, SystemExit) as exc:  # sys.exit() in a function is an error like any other
            log.error("%s raised", self.label, exc_info=exc)
            outcome = (False, describe_exception(exc))
        self._note_duration(time.perf_counter() - started)
        return outcome

    def _note_duration(self, seconds: float) -> None:
        """Switch between calling inline and in the thread (see INLINE)."""
        if seconds < INLINE_MAX_SECONDS:
            if not self.inline and self.dispatcher is None and not self.is_async:
                self._fast_streak += 1
                if INLINE and self.may_inline and self._fast_streak >= self._inline_after:
                    self.inline = True
        else:
            self._fast_streak = 0
            if self.inline:
                self.inline = False
                self._inline_after *= 2
                log.info("%s: a call took %.3fs; calling it in its thread again", self.label, seconds)

    def _call_rows(self, calls: list[tuple[Any, ...]]) -> list[Outcome]:
        return [self._call_one(args) for args in calls]

    async def _call_async(self, args: tuple[Any, ...]) -> Outcome:
        try:
            return True, await self.function(*args)
        except (Exception, SystemExit) as exc:
            log.error("%s raised", self.label, exc_info=exc)
            return False, describe_exception(exc)


def answer_headers(commit: str, number: int | None) -> list[tuple[bytes, bytes]]:
    """The two headers every answer carries."""
    return [
        (b"x-modelrepo-commit", (commit or "-").encode("ascii", "replace")),
        (b"x-modelrepo-version", str(number if number is not None else "-").encode("ascii")),
    ]


def _dump(document: Any, label: str) -> bytes:
    try:
        return jsonify.dumps(document)
    except jsonify.NotRepresentable as exc:
        log.error("%s: %s", label, exc)
        raise ResultNotJSON(str(exc)) from None


class ResultNotJSON(Exception):
    """The function returned something with no JSON form (answered as 500)."""


def _batch_body(ids: list[Any], outcomes: list[Outcome], label: str) -> bytes:
    errors: list[dict[str, Any]] = []
    if all(map(itemgetter(0), outcomes)):  # C-speed path for thousands of rows
        rows = list(map(list, zip(ids, map(itemgetter(1), outcomes))))
    else:
        rows = []
        for row_id, (ok, value) in zip(ids, outcomes):
            rows.append([row_id, value if ok else None])
            if not ok:
                errors.append({"id": row_id, "error": value})
    document: dict[str, Any] = {"data": rows}
    if errors:
        document["errors"] = errors
    try:
        return jsonify.dumps(document)
    except jsonify.NotRepresentable:
        # Find the rows that cannot be represented and report them as failed rows.
        for i, row in enumerate(rows):
            try:
                row[1] = jsonify.to_jsonable(row[1])
            except jsonify.NotRepresentable as exc:
                row[1] = None
                errors.append({"id": row[0], "error": f"TypeError: {exc}"})
                log.error("%s: row %s: %s", label, rows[i][0], exc)
        document["errors"] = errors
        return jsonify.dumps(document)
