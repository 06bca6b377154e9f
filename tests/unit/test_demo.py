"""`make demo` (examples/demo.py) without a terminal, as CI and `make demo | tee` run it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(DEMO), *args], cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def read_until(proc: subprocess.Popen[str], marker: str, lines: list[str], deadline: float = 300) -> str:
    """Lines of the demo's output up to the one containing `marker` (fails at the deadline)."""
    found: list[str] = []

    def reader() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if marker in line:
                found.append(line)
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(deadline)
    assert found, "".join(lines)
    return found[0]


def test_demo_without_a_terminal_keeps_serving_until_stopped(tmp_path, git_identity):
    port = free_port()
    proc = start(tmp_path, "--port", str(port))
    lines: list[str] = []
    try:
        read_until(proc, "Serving until Ctrl-C", lines)
        assert proc.poll() is None  # still serving with stdin not a terminal
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as answer:
            assert answer.status == 200
        os.kill(proc.pid, signal.SIGTERM)
        stopped = read_until(proc, "Stopped.", lines, deadline=60)
        assert f"Serve again with: modelrepo serve demo-repo --port {port}" in stopped
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_demo_once_says_plainly_that_it_stopped(tmp_path, git_identity):
    port = free_port()
    proc = start(tmp_path, "--port", str(port), "--once")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert f"Stopped the server (--once). Serve again with: modelrepo serve demo-repo --port {port}" in out
