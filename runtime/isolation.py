"""A deployment version in its own worker process, seen from `modelrepo serve` as a function.

`IsolatedFunction` is what a `Served` calls: each call crosses a socket to the worker
(runtime/worker.py), which imports the folder with the folder as its working directory. When
the worker dies (crash, `os._exit`, segfault, memory limit) the call raises `Unavailable`
naming the cause ("Bad v3 (abc1234) crashed: exit code -11 (SIGSEGV) while answering"), the
log says the same, and a new worker is started after a backoff (1s, 2s, 4s ... 30s; back to
1s after a call succeeds). A call that times out gets its worker killed and restarted: a hung
thread cannot be freed any other way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from modelrepo import format as _format
from modelrepo.format import DeploymentError, LoadedDeployment, read_metadata
from modelrepo.runtime.failures import FunctionFailed, Unavailable
from modelrepo.runtime.served import ResultNotJSON
from modelrepo.runtime.worker import FRAME_KEY, read_frame, write_frame

log = logging.getLogger("modelrepo.runtime")

DEFAULT_LOAD_TIMEOUT = 120.0
MAX_BACKOFF = 30.0
# The directory that holds the `modelrepo` package: the worker is started with it on its path.
_PACKAGE_ROOT = str(Path(_format.__file__).resolve().parent.parent.parent)


def default_memory_limit() -> int:
    """Half of this machine's memory: one worker's blow-up leaves room for everything else."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError):
        return 0


class WorkerDied(Exception):
    """The worker process ended or stopped answering; the message names the cause."""


def exit_cause(returncode: int | None) -> str:
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        try:
            return f"exit code {returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"exit code {returncode}"
    return f"exit code {returncode}"


class WorkerProcess:
    """One live worker process with one deployment folder loaded (or loading)."""

    def __init__(
        self, folder: Path, label: str, python: str, memory_limit: int, extra_env: dict[str, str] | None = None,
        pythonpath: str | None = None, check_python: bool = True,
    ) -> None:
        self.folder = folder
        self.label = label
        self.check_python = check_python
        parent, child = socket.socketpair()
        env = {**os.environ, **(extra_env or {})}
        # A virtualenv's worker gets only modelrepo's code (`pythonpath`), never this process's path.
        env["PYTHONPATH"] = pythonpath if pythonpath is not None else os.pathsep.join(
            p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [python, "-m", "modelrepo.runtime.worker", "--fd", str(child.fileno()),
             "--memory-limit", str(memory_limit)],
            pass_fds=(child.fileno(),), env=env, cwd=folder, stdin=subprocess.DEVNULL,
        )
        child.close()
        self.sock = parent
        self.is_async = False

    def load(self, timeout: float, doctests: bool) -> None:
        """Import the folder (and run its docstring tests); DeploymentError saying why not."""
        source = self.folder / "source.py"
        stage = "at import"
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            write_frame(self.sock, orjson.dumps({"op": "load", "folder": str(self.folder), "doctests": doctests,
                                                 "check_python": self.check_python}))
            while True:
                self.sock.settimeout(max(0.001, deadline - time.monotonic()))
                frame = read_frame(self.sock)
                if frame is None:
                    raise DeploymentError(source, f"crashed {stage}: {exit_cause(self._reap())}")
                answer = orjson.loads(frame)
                if answer.get("stage") == "imported":
                    stage = "in its docstring tests"
                    continue
                break
        except (TimeoutError, socket.timeout):  # one class from Python 3.10 on, two on 3.9
            self.kill()
            what = "importing it" if stage == "at import" else "its docstring tests"
            raise DeploymentError(source, f"loading did not finish within {timeout:g}s ({what} hung)") from None
        except OSError as exc:
            raise DeploymentError(source, f"crashed {stage}: {exit_cause(self._reap())} ({exc})") from None
        finally:
            if self.sock.fileno() != -1:  # not closed by kill()
                self.sock.settimeout(None)
        if not answer["ok"]:
            self.kill()
            raise DeploymentError(Path(answer["path"]), answer["problem"])
        self.is_async = answer["is_async"]

    def call(self, args: tuple[Any, ...]) -> Any:
        payload = orjson.dumps({"op": "call", "args": [_encode_arg(a) for a in args]},
                               option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
        try:
            write_frame(self.sock, payload)
            frame = read_frame(self.sock)
        except OSError:
            frame = None
        if frame is None:
            raise WorkerDied(exit_cause(self._reap()))
        answer = orjson.loads(frame)
        if answer["ok"]:
            return answer["value"]
        if "unjson" in answer:
            raise ResultNotJSON(answer["unjson"])
        raise FunctionFailed(answer["error"])

    def _reap(self, timeout: float = 5.0) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        with contextlib.suppress(OSError):  # wakes a thread still waiting for an answer
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _encode_arg(value: Any) -> Any:
    if type(value).__name__ == "DataFrame":
        return {FRAME_KEY: value.to_dict(orient="split")}
    return value


class IsolatedFunction:
    """The callable a `Served` holds for a version served from a worker process."""

    def __init__(
        self, folder: Path, label: str, *, python: str = sys.executable,
        memory_limit: int | None = None, load_timeout: float = DEFAULT_LOAD_TIMEOUT,
        env: dict[str, str] | None = None, pythonpath: str | None = None, check_python: bool = True,
    ) -> None:
        self.folder = folder
        self.env = dict(env or {})  # on top of this process's environment, for this worker only
        self.label = label
        self.python = python
        self.pythonpath = pythonpath  # modelrepo's code for a virtualenv's worker (runtime/environments.py)
        self.check_python = check_python  # False when --python-fallback put another Python in
        self.memory_limit = default_memory_limit() if memory_limit is None else memory_limit
        self.load_timeout = load_timeout
        self.cause = ""           # why there is no worker (shown in the 503)
        self._worker: WorkerProcess | None = None
        self._lock = threading.Lock()
        self._failures = 0
        self._closed = False
        self._state = threading.Lock()  # guards replacing the worker (request, timeout, timer threads)

    def start(self) -> None:
        """Start the worker and load the folder with its docstring tests; DeploymentError if refused."""
        worker = self._new_worker()
        worker.load(self.load_timeout, doctests=True)
        self._worker = worker

    def _new_worker(self) -> WorkerProcess:
        return WorkerProcess(self.folder, self.label, self.python, self.memory_limit, self.env,
                             pythonpath=self.pythonpath, check_python=self.check_python)

    def __call__(self, *args: Any) -> Any:
        with self._lock:
            worker = self._worker
            if worker is None:
                raise Unavailable(self.cause or f"{self.label} is not running")
            try:
                value = worker.call(args)
            except WorkerDied as exc:
                self._lost(worker, f"{self.label} crashed: {exc} while answering")
                raise Unavailable(self.cause) from None
            self._failures = 0
            return value

    def timed_out(self, seconds: float) -> None:
        """A call did not return in time: kill the worker (freeing the stuck call) and restart it."""
        worker = self._worker
        if worker is not None:
            self._lost(worker, f"{self.label} did not answer within {seconds:g}s; its worker was killed")

    def _lost(self, worker: WorkerProcess, cause: str) -> None:
        with self._state:
            if self._worker is not worker or self._closed:
                return
            self._worker = None
        worker.kill()
        delay = min(MAX_BACKOFF, 2.0 ** self._failures)
        self._failures += 1
        self.cause = f"{cause}; restarting in {delay:g}s"
        print(self.cause, flush=True)
        log.error("%s", self.cause)
        timer = threading.Timer(delay, self._restart, args=(cause,))
        timer.daemon = True
        timer.start()

    def _restart(self, cause: str) -> None:
        if self._closed:
            return
        try:
            worker = self._new_worker()
            worker.load(self.load_timeout, doctests=False)
        except DeploymentError as exc:
            self._failures += 1
            delay = min(MAX_BACKOFF, 2.0 ** self._failures)
            self.cause = f"{cause}; restart failed: {exc.problem}; retrying in {delay:g}s"
            print(self.cause, flush=True)
            timer = threading.Timer(delay, self._restart, args=(cause,))
            timer.daemon = True
            timer.start()
            return
        with self._state:
            if not self._closed:
                self._worker = worker
                self.cause = ""
        if self._worker is not worker:
            worker.kill()
            return
        print(f"{self.label} restarted", flush=True)

    def close(self, grace: float = 0.0) -> None:
        """Stop the worker after `grace` seconds (calls already queued finish first)."""
        def stop() -> None:
            with self._lock, self._state:
                self._closed = True
                worker, self._worker = self._worker, None
                self.cause = f"{self.label} is no longer served"
            if worker is not None:
                worker.kill()

        if grace <= 0:
            stop()
        else:
            timer = threading.Timer(grace, stop)
            timer.daemon = True
            timer.start()


def isolated_deployment(folder: Path, function: IsolatedFunction) -> LoadedDeployment:
    """The LoadedDeployment a Served needs, with the metadata read here and the function remote."""
    return LoadedDeployment(folder=folder, metadata=read_metadata(folder), function=function, module=None)
