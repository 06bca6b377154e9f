"""The worker process of one deployment version: `python -m modelrepo.runtime.worker --fd N`.

`modelrepo serve` runs every version it serves in a worker of its own (runtime/isolation.py
starts it), so a crash, `os._exit`, segfault, hang or memory blow-up of one harms no other.
Only the function call crosses the process boundary: the serve process parses requests and
builds answers. The worker needs nothing but the modelrepo package and the deployment's own
requirements, so it can run under another interpreter (a per-environment virtualenv).

The protocol, over the socket inherited as file descriptor N: frames of a 4-byte big-endian
length and a JSON object.
  -> {"op": "load", "folder": str, "doctests": bool, "check_python": bool}
  <- {"stage": "imported"}   (then)   {"ok": true, "is_async": bool}
                                       {"ok": false, "path": str, "problem": str}
  -> {"op": "call", "args": [...]}
  <- {"ok": true, "value": ...} | {"ok": false, "error": "Type: message"} | {"ok": false, "unjson": str}
A DataFrame argument travels as {"__dataframe__": <pandas "split" dict>}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import os
import resource
import socket
import struct
import sys
import threading
import time
from typing import Any

import orjson

from modelrepo.format import (
    DeploymentError,
    enter_folder,
    find_stubs,
    first_failure_message,
    load_deployment,
    run_doctests,
)
from modelrepo.modelbit_compat import install as install_modelbit
from modelrepo.runtime import jsonify

_LENGTH = struct.Struct(">I")
FRAME_KEY = "__dataframe__"


def read_frame(sock: socket.socket) -> bytes | None:
    """One frame, or None when the other side closed the connection."""
    header = _read_exactly(sock, _LENGTH.size)
    if header is None:
        return None
    return _read_exactly(sock, _LENGTH.unpack(header)[0])


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def write_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_LENGTH.pack(len(payload)) + payload)


def decode_arg(value: Any) -> Any:
    if type(value) is dict and FRAME_KEY in value:
        import pandas as pd

        return pd.DataFrame(**value[FRAME_KEY])
    return value


def limit_memory(limit: int) -> None:
    """Cap this process's address space: a blow-up raises MemoryError or kills only this worker."""
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class Worker:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.function: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def serve(self) -> None:
        while (frame := read_frame(self.sock)) is not None:
            message = orjson.loads(frame)
            if message["op"] == "load":
                write_frame(self.sock, self.load(message))
            else:
                write_frame(self.sock, self.call([decode_arg(a) for a in message["args"]]))

    def load(self, message: dict[str, Any]) -> bytes:
        folder = message["folder"]
        enter_folder(folder)
        try:
            for path, problem in find_stubs(folder):  # a stub is named, never unpickled
                raise DeploymentError(path, problem)
            loaded = load_deployment(folder, check_python=message.get("check_python", True))
            write_frame(self.sock, b'{"stage":"imported"}')
            if message.get("doctests", True):
                failures = run_doctests(loaded)
                if failures:
                    raise DeploymentError(loaded.folder / "source.py", first_failure_message(failures))
        except DeploymentError as exc:
            return orjson.dumps({"ok": False, "path": str(exc.path), "problem": exc.problem})
        self.function = loaded.function
        is_async = inspect.iscoroutinefunction(self.function)
        if is_async:
            self.loop = asyncio.new_event_loop()
        return orjson.dumps({"ok": True, "is_async": is_async})

    def call(self, args: list[Any]) -> bytes:
        try:
            value = self.function(*args)
            if self.loop is not None:
                value = self.loop.run_until_complete(value)
        except (Exception, SystemExit) as exc:  # sys.exit() in a function is an error like any other
            return orjson.dumps({"ok": False, "error": _describe(exc)})
        try:
            return b'{"ok":true,"value":' + jsonify.dumps(value) + b"}"
        except jsonify.NotRepresentable as exc:
            return orjson.dumps({"ok": False, "unjson": str(exc)})


def _describe(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _exit_with_parent(parent: int) -> None:
    """A worker whose serve process died (even while the function hangs) ends too."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelrepo.runtime.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--memory-limit", type=int, default=0, help="bytes of address space (0: no limit)")
    args = parser.parse_args(argv)
    sys.dont_write_bytecode = True  # never write __pycache__ into a deployment folder
    limit_memory(args.memory_limit)
    install_modelbit()  # this process imports source.py: `import modelbit` must work
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    sock = socket.socket(fileno=args.fd)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the serve process went away
        Worker(sock).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
