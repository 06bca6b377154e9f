"""Serve a model repository in the foreground and show curl commands that work against it.

Used at the end of `make demo` (examples/demo.py): starts `modelrepo serve <repo>`, waits for
/readyz, runs each example request once to print its real answer next to the curl command,
then keeps serving until Ctrl-C or SIGTERM, with or without a terminal. `once=True` stops right
after the examples and says so, with the command that serves again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any


def serve_and_show(
    repo: str, examples: list[tuple[str, Any]], port: int = 3000, timeout: float = 180.0,
    once: bool = False,
) -> int:
    """`examples`: (deployment name, the `data` to send it) pairs. Returns the server's exit code."""
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "modelrepo.cli", "serve", repo, "--port", str(port)],
                              start_new_session=True)
    try:
        _wait_ready(base, server, timeout)
        print(f"\nmodelrepo serve {repo} is answering at {base}. Try:\n", flush=True)
        for name, data in examples:
            body = json.dumps({"data": data})
            print(f"  curl -s {base}/v1/{name}/latest -d '{body}'")
            print(f"  -> {_post(f'{base}/v1/{name}/latest', body)}\n", flush=True)
        print(f"  curl -s {base}/readyz\n  open {base}/ for the OpenAPI page\n", flush=True)
        again = f"modelrepo serve {repo} --port {port}"
        if once:
            print(f"Stopped the server (--once). Serve again with: {again}", flush=True)
            return 0
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
        print(f"Serving until Ctrl-C (or `kill {os.getpid()}`). Commit to the repository and watch "
              f"the new version roll out.", flush=True)
        code = server.wait()
        print(f"modelrepo serve exited with code {code}. Serve again with: {again}", flush=True)
        return code
    except KeyboardInterrupt:
        print(f"\nStopped. Serve again with: modelrepo serve {repo} --port {port}", flush=True)
        return 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"modelrepo serve exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"modelrepo serve was not ready after {timeout:.0f}s")


def _post(url: str, body: str) -> str:
    request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.read().decode()
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode()}"
